/**
 * The ablation table of a sweep, like the paper's Table 6: one row per grid cell, one column per
 * metric, mean ± sample standard deviation over the cell's seeds. A table never hides a collapse:
 * for ICE runs it always shows the foreground IoU and fraction, flags every cell with a degenerate
 * run (an all-foreground, empty or otherwise constant map: its mIoU is then background IoU alone
 * and its mAP 0.5, so such a cell can look like a win) and every metric that is exactly constant
 * across seeds, in every format.
 */
import { IceError } from '@ice/core';
import { isRunMetric, RUN_METRICS } from './run-evaluation';
import type { RunStatus } from './run.contract';

export interface RunOutcome {
  values: Record<string, number | string | boolean>;
  seed: number;
  status: RunStatus;
  metrics: Record<string, number> | null;
}

export interface TableCell {
  mean: number | null;
  std: number | null;
  n: number;
  /** Two or more seeds with exactly the same value: a metric that does not respond to the run. */
  constant?: true;
}

/** Why a finished ICE run's maps say nothing about localisation. */
export type DegeneracyReason = 'all-foreground' | 'empty' | 'constant maps';

/** How many of a cell's finished runs are degenerate, and why. */
export interface CellDegeneracy {
  runs: number;
  of: number;
  reasons: DegeneracyReason[];
}

export interface TableLine {
  key: Record<string, number | string | boolean>;
  runs: number;
  finished: number;
  cells: Record<string, TableCell>;
  /** Present when the runs report ICE maps (fg_fraction): null when no finished run is degenerate. */
  degenerate?: CellDegeneracy | null;
}

export interface AblationTable {
  rows: string[];
  metrics: string[];
  lines: TableLine[];
}

/** Metrics every ICE table shows, asked for or not: the foreground IoU and fraction. */
export const ALWAYS_SHOWN_METRICS = ['iou_fg', 'fg_fraction'] as const;

/**
 * A finished run's maps are degenerate when every evaluated image's map is constant: all
 * foreground (fg_fraction 1), empty (0), or a mix of both (ice_const_maps 1). Null when the run is
 * not degenerate, or reports no ICE maps.
 */
export function runDegeneracy(metrics: Readonly<Record<string, number>> | null): DegeneracyReason | null {
  const fg = metrics?.fg_fraction;
  if (typeof fg !== 'number') return null;
  if (fg >= 1) return 'all-foreground';
  if (fg <= 0) return 'empty';
  return metrics?.ice_const_maps === 1 ? 'constant maps' : null;
}

/**
 * Refuses metric names a run never reports (INPUT_INVALID, a 400 at the API), listing the known
 * ones, so that a typo is an error rather than a column of empty cells.
 */
export function checkTableMetrics(metrics: readonly string[]): void {
  const unknown = metrics.filter((m) => !isRunMetric(m));
  if (unknown.length)
    throw new IceError(
      'INPUT_INVALID',
      `metrics: ${unknown.join(', ')} ${unknown.length === 1 ? 'is not a metric' : 'are not metrics'}; known: ${RUN_METRICS.join(', ')}`,
    );
}

/** Columns are run metrics only (RUN_METRICS): counts such as eval_images never become a column. */
export function buildAblationTable(outcomes: readonly RunOutcome[], rows: readonly string[], metrics?: readonly string[]): AblationTable {
  if (metrics?.length) checkTableMetrics(metrics);
  const reported = new Set(outcomes.flatMap((o) => Object.keys(o.metrics ?? {}).filter(isRunMetric)));
  const asked = metrics?.length ? [...metrics] : [...reported].sort();
  const metricNames = [...asked, ...ALWAYS_SHOWN_METRICS.filter((m) => reported.has(m) && !asked.includes(m))];
  const hasMaps = outcomes.some((o) => typeof o.metrics?.fg_fraction === 'number');
  const groups = new Map<string, RunOutcome[]>();
  for (const o of outcomes) {
    const key = JSON.stringify(rows.map((r) => o.values[r] ?? null));
    groups.set(key, [...(groups.get(key) ?? []), o]);
  }
  const lines = [...groups.values()].map((runs) => {
    // Metric names come from the request: fromEntries defines them as own fields, so no name reaches a prototype.
    const cellList: [string, TableCell][] = [];
    for (const m of metricNames) {
      const xs = runs.map((r) => r.metrics?.[m]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
      const mean = xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
      const std =
        xs.length > 1 && mean !== null
          ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1))
          : xs.length === 1
            ? 0
            : null;
      const cell: TableCell = { mean, std, n: xs.length };
      if (xs.length > 1 && xs.every((x) => x === xs[0])) cell.constant = true;
      cellList.push([m, cell]);
    }
    const cells: Record<string, TableCell> = Object.fromEntries(cellList);
    const key = Object.fromEntries(rows.map((r) => [r, runs[0].values[r]]));
    const finished = runs.filter((r) => r.metrics);
    const line: TableLine = { key, runs: runs.length, finished: finished.length, cells };
    if (hasMaps) {
      const reasons = finished.map((r) => runDegeneracy(r.metrics)).filter((r): r is DegeneracyReason => r !== null);
      line.degenerate = reasons.length ? { runs: reasons.length, of: finished.length, reasons: [...new Set(reasons)] } : null;
    }
    return line;
  });
  const cmp = (a: unknown, b: unknown): number =>
    typeof a === 'number' && typeof b === 'number' ? a - b : String(a).localeCompare(String(b));
  lines.sort((a, b) => {
    for (const r of rows) {
      const c = cmp(a.key[r], b.key[r]);
      if (c !== 0) return c;
    }
    return 0;
  });
  return { rows: [...rows], metrics: metricNames, lines };
}

/** The marks the text formats put on a constant metric and on a degenerate cell. */
export const CONSTANT_MARK = '‡';
export const DEGENERATE_MARK = '⚠';

function fmt(c: TableCell, digits: number): string {
  if (c.mean === null) return '–';
  const v = c.n > 1 && c.std !== null ? `${c.mean.toFixed(digits)} ± ${c.std.toFixed(digits)}` : c.mean.toFixed(digits);
  return c.constant ? `${v} ${CONSTANT_MARK}` : v;
}

/** "⚠ all-foreground 2/2", or '' for a sound cell. */
export function degeneracyText(d: CellDegeneracy | null | undefined): string {
  return d ? `${DEGENERATE_MARK} ${d.reasons.join(', ')} ${d.runs}/${d.of}` : '';
}

function hasFlags(t: AblationTable): boolean {
  return t.lines.some((l) => l.degenerate !== undefined);
}

/** The lines under a text table that say what its marks mean (none when nothing is marked). */
export function tableNotes(t: AblationTable): string[] {
  const notes: string[] = [];
  const bad = t.lines.filter((l) => l.degenerate);
  if (bad.length) {
    const cells = bad.map((l) => t.rows.map((r) => `${r}=${String(l.key[r])}`).join(' '));
    notes.push(
      `${DEGENERATE_MARK} degenerate: ${bad.length} of ${t.lines.length} cells have runs whose every map is constant (${cells.join('; ')}); ` +
        'an all-foreground or empty map localises nothing (its mIoU is background IoU alone, its mAP 0.5): these cells are not results.',
    );
  }
  if (t.lines.some((l) => Object.values(l.cells).some((c) => c.constant)))
    notes.push(`${CONSTANT_MARK} exactly the same value for every seed of the cell: the metric does not respond to the run.`);
  return notes;
}

export function tableToMarkdown(t: AblationTable, digits = 4): string {
  const flags = hasFlags(t);
  const head = [...t.rows, ...t.metrics, 'runs', ...(flags ? ['flag'] : [])];
  const out = [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`];
  for (const l of t.lines) {
    const cols = [...t.rows.map((r) => String(l.key[r])), ...t.metrics.map((m) => fmt(l.cells[m], digits)), `${l.finished}/${l.runs}`];
    if (flags) cols.push(degeneracyText(l.degenerate));
    out.push(`| ${cols.join(' | ')} |`);
  }
  const notes = tableNotes(t);
  return [...out, ...(notes.length ? ['', ...notes] : [])].join('\n');
}

export function tableToCsv(t: AblationTable): string {
  const esc = (v: string): string => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  const flags = hasFlags(t);
  const constant = t.lines.some((l) => Object.values(l.cells).some((c) => c.constant));
  const head = [
    ...t.rows,
    ...t.metrics.flatMap((m) => [`${m}_mean`, `${m}_std`, `${m}_n`, ...(constant ? [`${m}_constant`] : [])]),
    'finished',
    'runs',
    ...(flags ? ['degenerate_runs', 'degenerate'] : []),
  ];
  const lines = t.lines.map((l) =>
    [
      ...t.rows.map((r) => String(l.key[r])),
      ...t.metrics.flatMap((m) => [
        ...[l.cells[m].mean ?? '', l.cells[m].std ?? '', l.cells[m].n].map(String),
        ...(constant ? [l.cells[m].constant ? 'true' : 'false'] : []),
      ]),
      String(l.finished),
      String(l.runs),
      ...(flags ? [String(l.degenerate?.runs ?? 0), l.degenerate?.reasons.join(';') ?? ''] : []),
    ]
      .map(esc)
      .join(','),
  );
  return [head.map(esc).join(','), ...lines].join('\n') + '\n';
}
