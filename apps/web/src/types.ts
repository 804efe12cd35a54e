/** The API's JSON shapes as the page reads them (only the fields it uses). */
export type Scalar = number | string | boolean;

export interface Progress {
  step?: number;
  totalSteps?: number;
  epoch?: number;
  loss?: number;
  imgPerSec?: number;
  etaSeconds?: number | null;
  lr?: number;
  at?: string;
}

export interface Run {
  id: string;
  sweepId: string | null;
  cell: Record<string, Scalar> | null;
  seed: number;
  status: string;
  attempts: number;
  progress: Progress | null;
  metrics: Record<string, number> | null;
  error: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
}

export interface Sweep {
  id: string;
  name: string | null;
  status: string;
  axes: string[];
  runCount: number;
  counts: Record<string, number>;
  createdAt: string;
  finishedAt: string | null;
}

export interface SweepDetail extends Sweep {
  runs: Run[];
}

export interface Page<T> {
  items: T[];
  total: number;
}

export interface TableCell {
  mean: number | null;
  std: number | null;
  n: number;
  constant?: true;
}

export interface TableLine {
  key: Record<string, Scalar>;
  runs: number;
  finished: number;
  cells: Record<string, TableCell>;
  degenerate?: { runs: number; of: number; reasons: string[] } | null;
}

export interface AblationTable {
  sweepId: string;
  status: string;
  rows: string[];
  metrics: string[];
  lines: TableLine[];
  notes: string[];
}

export type MetricSeries = Record<string, { step: number; value: number }[]>;

export interface EvaluationRow {
  method: string;
  label: string;
  metrics: Record<string, number>;
  images: number;
  imagesPerSecond: number | null;
  seconds: number;
}

export interface Evaluation {
  id: string;
  status: string;
  protocol: string;
  runId: string | null;
  progress: { done?: number; total?: number } | null;
  error: string | null;
  createdAt: string;
  result: {
    columns?: string[];
    conventions?: string[];
    rows: EvaluationRow[];
    /** Saved overlays: server paths, artifact-relative names or URLs; the file name is what the maps endpoint takes. */
    savedMaps?: { files: string[]; contactSheet: string } | null;
  } | null;
}

/** One event of /runs/:id/events or /sweeps/:id/events. */
export type StreamEvent =
  | {
      type: 'run.status';
      runId: string;
      sweepId: string | null;
      status: string;
      error?: string | null;
      metrics?: Record<string, number> | null;
    }
  | { type: 'run.progress'; runId: string; sweepId: string | null; progress: Progress }
  | { type: 'sweep.status'; sweepId: string; status: string; counts: Record<string, number> };
