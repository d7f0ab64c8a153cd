/** Formatting shared by the bench's console output and docs/benchmarks.md. */

export function fmtBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${units[unit]}`;
}

export function fmtSeconds(seconds: number): string {
  if (seconds < 1) return `${(seconds * 1000).toFixed(0)} ms`;
  if (seconds < 120) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

export function fmtMiB(kib: number): string {
  return `${(kib / 1024).toFixed(0)} MiB`;
}

export function fmtRatio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : 'n/a';
}

export type Cell = string | number;

/** A GitHub-flavoured markdown table; also readable as plain text on a console. */
export function markdownTable(header: string[], rows: Cell[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(3, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 3)).join(' | ')} |`;
  return [line(cells[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.slice(1).map(line)].join('\n');
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * docs/benchmarks.md holds sections written by different bench runs (`npm run bench`, `npm run bench:scale`).
 * Each such section sits between `<!-- NAME:begin -->` and `<!-- NAME:end -->`; a run replaces only its own.
 */
function markers(name: string): { begin: string; end: string } {
  return { begin: `<!-- ${name}:begin -->`, end: `<!-- ${name}:end -->` };
}

/** `doc` with the section `name` replaced by `content`, or with it appended when the doc has none yet. */
export function replaceSection(doc: string, name: string, content: string): string {
  const { begin, end } = markers(name);
  const block = `${begin}\n${content.endsWith('\n') ? content : `${content}\n`}${end}\n`;
  const from = doc.indexOf(begin);
  const to = doc.indexOf(end);
  if (from >= 0 && to > from) return doc.slice(0, from) + block + doc.slice(to + end.length).replace(/^\n/, '');
  if (doc.trim() === '') return block;
  return `${doc.replace(/\n*$/, '\n')}\n${block}`;
}

/** The section `name` of `oldDoc` (markers included), carried over to the end of `newDoc`; `newDoc` when it has none. */
export function carrySection(newDoc: string, oldDoc: string, name: string): string {
  const { begin, end } = markers(name);
  const from = oldDoc.indexOf(begin);
  const to = oldDoc.indexOf(end);
  if (from < 0 || to < from) return newDoc;
  return replaceSection(newDoc, name, oldDoc.slice(from + begin.length + 1, to));
}

/**
 * `doc` with rows of the first table after the line `heading` replaced: a new row takes the place of the old row whose
 * first cell starts with the same key (one of `keys`), or is added at the end. The table is re-rendered, so columns
 * stay aligned.
 */
export function replaceTableRows(doc: string, heading: string, header: string[], rows: Cell[][], keys: readonly string[]): string {
  const lines = doc.split('\n');
  const at = lines.indexOf(heading);
  if (at < 0) return doc;
  let from = at + 1;
  while (from < lines.length && !lines[from]!.startsWith('|')) {
    if (lines[from]!.startsWith('#')) return doc;
    from++;
  }
  let to = from;
  while (to < lines.length && lines[to]!.startsWith('|')) to++;
  const cellsOf = (line: string) => line.replace(/^\|\s?|\s?\|$/g, '').split(' | ').map((c) => c.trim());
  const existing = lines.slice(from + 2, to).map(cellsOf);
  const keyOf = (cells: Cell[]) => keys.find((k) => String(cells[0] ?? '').startsWith(k));
  const merged: Cell[][] = existing.map((old) => rows.find((row) => keyOf(row) !== undefined && keyOf(row) === keyOf(old)) ?? old);
  for (const row of rows) if (!merged.includes(row)) merged.push(row);
  const table = from < to ? markdownTable(header, merged) : `${markdownTable(header, merged)}\n`;
  return [...lines.slice(0, from), table, ...lines.slice(to)].join('\n');
}
