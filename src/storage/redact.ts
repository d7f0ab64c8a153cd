/**
 * Anything pgdr prints that may hold a URL goes through here first: a repository URL, an endpoint or a presigned
 * link can carry user:password@ or signed query parameters, and logs outlive the credentials' secrecy.
 */

/** Query parameter names (lower-cased) whose values are secrets or enough to forge/replay a request. */
const CREDENTIAL_PARAMS = new Set([
  'x-amz-signature',
  'x-amz-credential',
  'x-amz-security-token',
  'x-amz-date',
  'x-amz-signedheaders',
  'x-amz-expires',
  'x-amz-algorithm',
  'awsaccesskeyid',
  'signature',
  'sig',
  'token',
  'access_token',
  'access_key',
  'accesskey',
  'secret',
  'secret_key',
  'secretkey',
  'password',
  'passwd',
  'pwd',
  'apikey',
  'api_key',
  'key',
  'credential',
  'credentials',
]);

function isCredentialParam(name: string): boolean {
  const lower = safeDecode(name).toLowerCase();
  return CREDENTIAL_PARAMS.has(lower) || /(secret|password|token|signature|credential)/.test(lower);
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}

/**
 * Removes userinfo (`user:pass@`) and credential-like query parameters from a URL, leaving everything else
 * byte for byte as written (no normalisation: the user should recognise what they typed).
 * Works on strings that are not valid URLs too, so it is safe to call on anything.
 */
export function redactUrl(url: string): string {
  let text = url;
  // Userinfo sits between "scheme://" and the first '@' before any '/', '?' or '#'.
  text = text.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/?#@]*@/, '$1');

  const hashAt = text.indexOf('#');
  const fragment = hashAt >= 0 ? text.slice(hashAt) : '';
  const withoutFragment = hashAt >= 0 ? text.slice(0, hashAt) : text;
  const queryAt = withoutFragment.indexOf('?');
  if (queryAt < 0) return withoutFragment + fragment;

  const base = withoutFragment.slice(0, queryAt);
  const kept = withoutFragment
    .slice(queryAt + 1)
    .split('&')
    .filter((pair) => pair.length > 0 && !isCredentialParam(pair.split('=', 1)[0] ?? ''));
  return (kept.length > 0 ? `${base}?${kept.join('&')}` : base) + fragment;
}

/** Redacts every URL found inside free text, e.g. an error message from a library. */
export function redactUrlsIn(text: string): string {
  return text.replace(/\b[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"'<>]+/g, (match) => redactUrl(match));
}
