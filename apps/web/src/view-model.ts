/**
 * What the page shows, computed from the API's answers: pure functions (no DOM), so the rules of
 * the table marks, the α / λ_class plots and the gallery layout are unit-tested on their own.
 */
import type { AblationTable, Scalar, TableCell, TableLine } from './types';

export const CONSTANT_MARK = '‡';
export const DEGENERATE_MARK = '⚠';

export function fmt(v: number | null | undefined, digits = 4): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  if (v !== 0 && Math.abs(v) < 10 ** -digits) return v.toExponential(2);
  return Number.isInteger(v) ? String(v) : v.toFixed(digits);
}

/** "0.8123 ± 0.0100 ‡": mean ± std over seeds, marked when exactly constant across seeds. */
export function cellText(c: TableCell | undefined, digits = 4): string {
  if (!c || c.mean === null) return '–';
  const v = c.n > 1 && c.std !== null ? `${fmt(c.mean, digits)} ± ${fmt(c.std, digits)}` : fmt(c.mean, digits);
  return c.constant ? `${v} ${CONSTANT_MARK}` : v;
}

/** "⚠ all-foreground 2/2" for a degenerate line, '' otherwise. */
export function degeneracyText(line: TableLine): string {
  const d = line.degenerate;
  return d ? `${DEGENERATE_MARK} ${d.reasons.join(', ')} ${d.runs}/${d.of}` : '';
}

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** The table's row axes that can be an x axis: every line's value a number, at least two distinct. */
export function numericAxes(t: Pick<AblationTable, 'rows' | 'lines'>): string[] {
  return t.rows.filter((r) => {
    const vs = t.lines.map((l) => l.key[r]);
    return vs.every((v) => typeof v === 'number') && new Set(vs).size > 1;
  });
}

/** α first, then λ_class, then the other numeric axes (whatever the axes are called: alpha, loss.alpha, lambda_class, loss.lambdaClass…). */
export function plotAxes(t: Pick<AblationTable, 'rows' | 'lines'>): string[] {
  const rank = (a: string): number => (/alpha/i.test(a) ? 0 : /lambda/i.test(a) ? 1 : 2);
  return numericAxes(t).sort((a, b) => rank(a) - rank(b));
}

export interface AxisPlot {
  x: number[];
  /** One series per combination of the other axes' values; y aligned with x (null where no cell). */
  series: { label: string; y: (number | null)[]; std: (number | null)[] }[];
}

/** Orders two row keys as the API's table does: numbers by value, the rest as text. */
function compareKeys(a: readonly Scalar[], b: readonly Scalar[]): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
    if (c !== 0) return c;
  }
  return 0;
}

/** A metric's mean over seeds against one axis, one line per value of the other axes. */
export function axisPlot(t: Pick<AblationTable, 'rows' | 'lines'>, xAxis: string, metric: string): AxisPlot {
  const others = t.rows.filter((r) => r !== xAxis);
  const x = [...new Set(t.lines.map((l) => l.key[xAxis]).filter((v): v is number => typeof v === 'number'))].sort((a, b) => a - b);
  const groups = new Map<string, { key: Scalar[]; label: string; y: (number | null)[]; std: (number | null)[] }>();
  for (const line of t.lines) {
    const xv = line.key[xAxis];
    if (typeof xv !== 'number') continue;
    const key = others.map((o) => line.key[o]);
    const label = others.length ? others.map((o, i) => `${o}=${String(key[i])}`).join(' ') : metric;
    let g = groups.get(label);
    if (!g) {
      g = { key, label, y: x.map(() => null), std: x.map(() => null) };
      groups.set(label, g);
    }
    const c = line.cells[metric];
    g.y[x.indexOf(xv)] = c?.mean ?? null;
    g.std[x.indexOf(xv)] = c?.std ?? null;
  }
  const series = [...groups.values()].sort((a, b) => compareKeys(a.key, b.key)).map(({ label, y, std }) => ({ label, y, std }));
  return { x, series };
}

/**
 * A run's series split into the charts the run page draws, each on its own scale: the loss terms,
 * the learning rate, the throughput, and any other series with at least two points. The final
 * scores (`final.*`, one point at the last step) are not curves: the page lists them as a table.
 */
export function seriesGroups(series: Readonly<Record<string, readonly unknown[]>>): {
  loss: string[];
  lr: string[];
  throughput: string[];
  metrics: string[];
} {
  const names = Object.keys(series).sort();
  const isLoss = (n: string): boolean => n === 'loss' || /^l_|_loss$|^loss_|^cls_per$/.test(n);
  const special = (n: string): boolean => isLoss(n) || n === 'lr' || n === 'img_per_sec';
  return {
    loss: names.filter(isLoss),
    lr: names.filter((n) => n === 'lr'),
    throughput: names.filter((n) => n === 'img_per_sec'),
    metrics: names.filter((n) => !special(n) && series[n].length > 1),
  };
}

/** The metric a sweep's plot starts on: a localisation or accuracy score when the table has one. */
export function defaultPlotMetric(metrics: readonly string[]): string | undefined {
  return (
    ['miou', 'iou_fg', 'map', 'top1', 'pix_acc'].find((m) => metrics.includes(m)) ?? metrics.find((m) => m !== 'eval_images') ?? metrics[0]
  );
}

/** The name the maps endpoint takes, from whatever the result stores (a path, a relative name or a URL). */
export function mapFileName(stored: string): string {
  const clean = stored.split(/[?#]/)[0];
  return decodeURIComponent(clean.slice(Math.max(clean.lastIndexOf('/'), clean.lastIndexOf('\\')) + 1));
}

export interface Gallery {
  /** Image indices (rows), in order. */
  images: number[];
  /** Methods (columns), in the evaluation's order. */
  methods: string[];
  /** File name of an image's overlay for a method, when saved. */
  file(image: number, method: string): string | undefined;
}

/**
 * Saved overlays laid out image × method. Files are named `<image index, 4 digits>-<method>.png`
 * by @ice/evaluation's writeSavedMaps; files that do not follow that name are left out.
 */
export function gallery(files: readonly string[], methods: readonly string[]): Gallery {
  const byKey = new Map<string, string>();
  const images = new Set<number>();
  for (const f of files) {
    const name = mapFileName(f);
    const m = /^(\d+)-(.+)\.png$/.exec(name);
    if (!m) continue;
    const method = methods.find((x) => x.replace(/[^\w.-]+/g, '_').slice(0, 60) === m[2]);
    if (!method) continue;
    images.add(Number(m[1]));
    byKey.set(`${Number(m[1])}\u0000${method}`, name);
  }
  const used = methods.filter((m) => [...byKey.keys()].some((k) => k.endsWith(`\u0000${m}`)));
  return { images: [...images].sort((a, b) => a - b), methods: used, file: (image, method) => byKey.get(`${image}\u0000${method}`) };
}

/** Statuses that will not change any more. */
export function isFinished(status: string): boolean {
  return ['succeeded', 'partial', 'failed', 'cancelled'].includes(status);
}

export interface ChartSeries {
  label: string;
  y: (number | null)[];
}

/** Step-indexed series (a run's metric_points) aligned onto one x of every step any of them has. */
export function alignSteps(series: { label: string; points: { step: number; value: number }[] }[]): { x: number[]; series: ChartSeries[] } {
  const x = [...new Set(series.flatMap((s) => s.points.map((p) => p.step)))].sort((a, b) => a - b);
  const at = new Map(x.map((s, i) => [s, i]));
  return {
    x,
    series: series.map((s) => {
      const y: (number | null)[] = x.map(() => null);
      for (const p of s.points) y[at.get(p.step)!] = p.value;
      return { label: s.label, y };
    }),
  };
}
