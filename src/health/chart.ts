import { formatBytes } from '../stream/progress.js';

/**
 * A small, dependency-free SVG chart of base backups over time: sizes (before compression and as stored) in the
 * upper panel, durations in the lower one. Pure: the same points give the same bytes, so `pgdr report` output can
 * be diffed and tested. Every text that reaches the SVG is escaped.
 */

export interface BackupChartPoint {
  backupId: string;
  startTime: Date;
  bytes: number;
  storedBytes: number;
  durationSeconds: number;
}

export interface ChartOptions {
  width?: number;
  height?: number;
}

const MARGIN = { left: 78, right: 16, top: 28, bottom: 34 };
const GAP = 36;
const COLORS = { bytes: '#1f77b4', stored: '#ff7f0e', duration: '#2ca02c', axis: '#555', grid: '#ddd' };

export function renderBackupChart(points: readonly BackupChartPoint[], options: ChartOptions = {}): string {
  const width = options.width ?? 720;
  const height = options.height ?? 360;
  const sorted = [...points].sort((a, b) => a.startTime.getTime() - b.startTime.getTime());
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="Backup sizes and durations over time" font-family="sans-serif" font-size="11">`,
    `<title>Backup sizes and durations over time</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#fff"/>`,
  ];
  if (sorted.length === 0) {
    parts.push(`<text x="${width / 2}" y="${height / 2}" text-anchor="middle" fill="${COLORS.axis}">no complete backups to chart</text>`, '</svg>');
    return `${parts.join('\n')}\n`;
  }

  const plotWidth = width - MARGIN.left - MARGIN.right;
  const panelHeight = (height - MARGIN.top - MARGIN.bottom - GAP) / 2;
  const t0 = sorted[0]!.startTime.getTime();
  const t1 = sorted[sorted.length - 1]!.startTime.getTime();
  // One backup (or all at one moment) sits in the middle instead of dividing by zero.
  const x = (t: number): number => MARGIN.left + (t1 === t0 ? plotWidth / 2 : ((t - t0) / (t1 - t0)) * plotWidth);

  const sizeTop = MARGIN.top;
  const durationTop = MARGIN.top + panelHeight + GAP;
  const maxBytes = niceMax(Math.max(...sorted.map((p) => Math.max(p.bytes, p.storedBytes))));
  const maxSeconds = niceMax(Math.max(...sorted.map((p) => p.durationSeconds)));

  parts.push(...panel(sizeTop, panelHeight, plotWidth, 'Size', maxBytes, (v) => formatBytes(v)));
  parts.push(...panel(durationTop, panelHeight, plotWidth, 'Duration', maxSeconds, formatSeconds));

  const ySize = (v: number): number => sizeTop + panelHeight - (v / maxBytes) * panelHeight;
  const yDuration = (v: number): number => durationTop + panelHeight - (v / maxSeconds) * panelHeight;
  parts.push(series(sorted, (p) => x(p.startTime.getTime()), (p) => ySize(p.bytes), COLORS.bytes, (p) => `${p.backupId}: ${formatBytes(p.bytes)} before compression`));
  parts.push(series(sorted, (p) => x(p.startTime.getTime()), (p) => ySize(p.storedBytes), COLORS.stored, (p) => `${p.backupId}: ${formatBytes(p.storedBytes)} stored`));
  parts.push(
    series(sorted, (p) => x(p.startTime.getTime()), (p) => yDuration(p.durationSeconds), COLORS.duration, (p) => `${p.backupId}: ${formatSeconds(p.durationSeconds)}`),
  );

  // Legend and the time axis: first and last backup dates (and the middle one when there is room).
  const legend: Array<[string, string]> = [
    ['size before compression', COLORS.bytes],
    ['stored size', COLORS.stored],
    ['duration', COLORS.duration],
  ];
  let lx = MARGIN.left;
  for (const [label, color] of legend) {
    parts.push(`<rect x="${lx}" y="8" width="10" height="10" fill="${color}"/>`, `<text x="${lx + 14}" y="17">${escapeXml(label)}</text>`);
    lx += 24 + label.length * 6;
  }
  const axisY = height - MARGIN.bottom + 16;
  const dates = t1 === t0 ? [t0] : [t0, t0 + (t1 - t0) / 2, t1];
  dates.forEach((t, i) => {
    const anchor = dates.length === 1 ? 'middle' : i === 0 ? 'start' : i === dates.length - 1 ? 'end' : 'middle';
    parts.push(`<text x="${fmt(x(t))}" y="${axisY}" text-anchor="${anchor}" fill="${COLORS.axis}">${escapeXml(new Date(t).toISOString().slice(0, 10))}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function panel(top: number, height: number, width: number, label: string, max: number, format: (v: number) => string): string[] {
  const left = MARGIN.left;
  const out = [
    `<text x="${left - 8}" y="${fmt(top - 6)}" text-anchor="end" font-weight="bold">${escapeXml(label)}</text>`,
    `<line x1="${left}" y1="${fmt(top + height)}" x2="${left + width}" y2="${fmt(top + height)}" stroke="${COLORS.axis}"/>`,
    `<line x1="${left}" y1="${fmt(top)}" x2="${left}" y2="${fmt(top + height)}" stroke="${COLORS.axis}"/>`,
  ];
  for (const fraction of [0.5, 1]) {
    const y = top + height - fraction * height;
    out.push(
      `<line x1="${left}" y1="${fmt(y)}" x2="${left + width}" y2="${fmt(y)}" stroke="${COLORS.grid}"/>`,
      `<text x="${left - 6}" y="${fmt(y + 4)}" text-anchor="end" fill="${COLORS.axis}">${escapeXml(format(max * fraction))}</text>`,
    );
  }
  out.push(`<text x="${left - 6}" y="${fmt(top + height + 4)}" text-anchor="end" fill="${COLORS.axis}">0</text>`);
  return out;
}

function series(
  points: readonly BackupChartPoint[],
  x: (p: BackupChartPoint) => number,
  y: (p: BackupChartPoint) => number,
  color: string,
  title: (p: BackupChartPoint) => string,
): string {
  const path = points.map((p, i) => `${i === 0 ? 'M' : 'L'}${fmt(x(p))},${fmt(y(p))}`).join(' ');
  const dots = points.map((p) => `<circle cx="${fmt(x(p))}" cy="${fmt(y(p))}" r="3" fill="${color}"><title>${escapeXml(title(p))}</title></circle>`);
  return [`<path d="${path}" fill="none" stroke="${color}" stroke-width="1.5"/>`, ...dots].join('\n');
}

/** A round axis maximum at or above `value` (1, 2 or 5 times a power of ten); 1 for nothing to show. */
export function niceMax(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

export function formatSeconds(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function fmt(n: number): string {
  return (Math.round(n * 10) / 10).toString();
}

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}
