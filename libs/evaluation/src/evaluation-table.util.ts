import type { EvaluationResult, MetricValue } from './evaluation.types';

/** Plain-text rendering of an evaluation: one row per method, then the conventions in force. */

function cell(column: string, v: MetricValue): string {
  if (v === null || v === undefined) return '—';
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) && /^(hits|noBox|skipped)$/.test(column)) return String(v);
  return v.toFixed(4);
}

function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]): string => cells.map((s, c) => (c === 0 ? s.padEnd(widths[c]) : s.padStart(widths[c]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function formatEvaluationTable(r: EvaluationResult): string {
  const header = ['method', ...r.columns, 'images', 'img/s'];
  const rows = r.rows.map((row) => [
    row.label,
    ...r.columns.map((c) => cell(c, row.metrics[c])),
    String(row.images),
    row.imagesPerSecond.toFixed(1),
  ]);
  return renderTable(header, rows);
}

export function formatEvaluationReport(r: EvaluationResult): string {
  const lines = [
    `${r.protocol} on ${r.dataset.name}/${r.dataset.split} (${r.dataset.images} images)`,
    '',
    formatEvaluationTable(r),
    '',
    'conventions:',
    ...r.conventions.map((c) => `  - ${c}`),
  ];
  if (r.savedMaps) lines.push('', `maps: ${r.savedMaps.files.length} overlays and ${r.savedMaps.contactSheet}`);
  return lines.join('\n');
}
