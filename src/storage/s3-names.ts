/** Bucket names as S3 accepts them today (lower case; dots allowed but not adjacent; not an IP address). */
export function isValidBucketName(name: string): boolean {
  return (
    /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name) &&
    !name.includes('..') &&
    !/^\d{1,3}(\.\d{1,3}){3}$/.test(name) &&
    !name.startsWith('xn--')
  );
}
