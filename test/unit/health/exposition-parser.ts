/**
 * A strict parser of the Prometheus text exposition format (0.0.4), enough to prove that `pgdr health --format
 * prometheus` output is what node_exporter's textfile collector and Prometheus accept: HELP and TYPE before the
 * samples of their family, families not interleaved, valid metric and label names, escaped label values, float
 * values, no duplicate series, and a final newline.
 */

export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface ParsedFamily {
  name: string;
  help?: string;
  type?: string;
  samples: ParsedSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parseExposition(text: string): Map<string, ParsedFamily> {
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('exposition text must end with a newline');
  const families = new Map<string, ParsedFamily>();
  const closed = new Set<string>();
  let current: string | undefined;
  const seriesSeen = new Set<string>();
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((line, index) => {
    const where = `line ${index + 1}: ${JSON.stringify(line)}`;
    if (line.trim() === '') return;
    const family = (name: string): ParsedFamily => {
      if (current !== name) {
        if (current !== undefined) closed.add(current);
        if (closed.has(name)) throw new Error(`${where}: family ${name} appears in two places`);
        current = name;
      }
      let f = families.get(name);
      if (!f) {
        f = { name, samples: [] };
        families.set(name, f);
      }
      return f;
    };
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name = '', rest = ''] = m;
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name`);
      const f = family(name);
      if (kind === 'HELP') {
        if (f.help !== undefined) throw new Error(`${where}: second HELP`);
        f.help = rest.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
      } else {
        if (f.type !== undefined) throw new Error(`${where}: second TYPE`);
        if (f.samples.length > 0) throw new Error(`${where}: TYPE after samples`);
        if (!TYPES.has(rest)) throw new Error(`${where}: unknown type ${rest}`);
        f.type = rest;
      }
      return;
    }
    const sample = parseSampleLine(line, where);
    const f = family(sample.name);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seriesSeen.has(key)) throw new Error(`${where}: duplicate series`);
    seriesSeen.add(key);
    f.samples.push(sample);
  });
  return families;
}

function parseSampleLine(line: string, where: string): ParsedSample {
  let i = 0;
  while (i < line.length && /[a-zA-Z0-9_:]/.test(line[i]!)) i++;
  const name = line.slice(0, i);
  if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name`);
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    while (line[i] !== '}') {
      const start = i;
      while (i < line.length && line[i] !== '=') i++;
      const label = line.slice(start, i);
      if (!LABEL_NAME.test(label)) throw new Error(`${where}: bad label name ${JSON.stringify(label)}`);
      if (line[i + 1] !== '"') throw new Error(`${where}: label value must be quoted`);
      i += 2;
      let value = '';
      for (;;) {
        const c = line[i];
        if (c === undefined) throw new Error(`${where}: unterminated label value`);
        if (c === '"') break;
        if (c === '\\') {
          const next = line[i + 1];
          if (next === 'n') value += '\n';
          else if (next === '\\' || next === '"') value += next;
          else throw new Error(`${where}: bad escape \\${next}`);
          i += 2;
          continue;
        }
        value += c;
        i++;
      }
      i++;
      if (label in labels) throw new Error(`${where}: label ${label} twice`);
      labels[label] = value;
      if (line[i] === ',') i++;
      else if (line[i] !== '}') throw new Error(`${where}: expected , or }`);
    }
    i++;
  }
  if (line[i] !== ' ') throw new Error(`${where}: expected a space before the value`);
  const parts = line.slice(i + 1).split(' ');
  if (parts.length > 2) throw new Error(`${where}: trailing text`);
  const valueText = parts[0] ?? '';
  const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : valueText === 'NaN' ? NaN : Number(valueText);
  if (valueText === '' || (Number.isNaN(value) && valueText !== 'NaN')) throw new Error(`${where}: bad value`);
  if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw new Error(`${where}: bad timestamp`);
  return { name, labels, value };
}

/** The value of one series, or undefined. */
export function sampleValue(families: Map<string, ParsedFamily>, name: string, labels: Record<string, string> = {}): number | undefined {
  const family = families.get(name);
  const sample = family?.samples.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return sample?.value;
}
