/**
 * The ablation table of a sweep, like the paper's Table 6: one row per grid cell, one column per
 * metric, mean ± sample standard deviation over the cell's seeds.
 */
export interface RunOutcome {
  values: Record<string, number | string | boolean>;
  seed: number;
  status: string;
  metrics: Record<string, number> | null;
}

export interface TableCell {
  mean: number | null;
  std: number | null;
  n: number;
}

export interface AblationTable {
  rows: string[];
  metrics: string[];
  lines: { key: Record<string, number | string | boolean>; runs: number; finished: number; cells: Record<string, TableCell> }[];
}

export function buildAblationTable(outcomes: readonly RunOutcome[], rows: readonly string[], metrics?: readonly string[]): AblationTable {
  const metricNames = metrics?.length ? [...metrics] : [...new Set(outcomes.flatMap((o) => Object.keys(o.metrics ?? {})))].sort();
  const groups = new Map<string, RunOutcome[]>();
  for (const o of outcomes) {
    const key = JSON.stringify(rows.map((r) => o.values[r] ?? null));
    groups.set(key, [...(groups.get(key) ?? []), o]);
  }
  const lines = [...groups.values()].map((runs) => {
    const cells: Record<string, TableCell> = {};
    for (const m of metricNames) {
      const xs = runs.map((r) => r.metrics?.[m]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
      const mean = xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
      const std =
        xs.length > 1 && mean !== null
          ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1))
          : xs.length === 1
            ? 0
            : null;
      cells[m] = { mean, std, n: xs.length };
    }
    const key = Object.fromEntries(rows.map((r) => [r, runs[0].values[r]]));
    return { key, runs: runs.length, finished: runs.filter((r) => r.metrics).length, cells };
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

function fmt(c: TableCell, digits: number): string {
  if (c.mean === null) return '–';
  return c.n > 1 && c.std !== null ? `${c.mean.toFixed(digits)} ± ${c.std.toFixed(digits)}` : c.mean.toFixed(digits);
}

export function tableToMarkdown(t: AblationTable, digits = 4): string {
  const head = [...t.rows, ...t.metrics, 'runs'];
  const out = [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`];
  for (const l of t.lines)
    out.push(
      `| ${[...t.rows.map((r) => String(l.key[r])), ...t.metrics.map((m) => fmt(l.cells[m], digits)), `${l.finished}/${l.runs}`].join(' | ')} |`,
    );
  return out.join('\n');
}

export function tableToCsv(t: AblationTable): string {
  const esc = (v: string): string => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  const head = [...t.rows, ...t.metrics.flatMap((m) => [`${m}_mean`, `${m}_std`, `${m}_n`]), 'finished', 'runs'];
  const lines = t.lines.map((l) =>
    [
      ...t.rows.map((r) => String(l.key[r])),
      ...t.metrics.flatMap((m) => [l.cells[m].mean ?? '', l.cells[m].std ?? '', l.cells[m].n].map(String)),
      String(l.finished),
      String(l.runs),
    ]
      .map(esc)
      .join(','),
  );
  return [head.map(esc).join(','), ...lines].join('\n') + '\n';
}
