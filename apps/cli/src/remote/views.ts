/**
 * The API's JSON as `ice` reads it (the fields it uses), what an id names, and the one-line and
 * multi-line texts of `ice status` and `ice ls`.
 */
import type { RunProgressSnapshot, RunStatus } from '@ice/experiments';
import { formatDuration, isTerminalSweepStatus, type SweepStatus, type TrackedRunInit } from '@ice/orchestration';
import type { IceApiClient } from './api-client';

export interface RunView {
  id: string;
  sweepId: string | null;
  cellKey: string | null;
  seed: number;
  status: RunStatus;
  statusChangedAt: string;
  attempts: number;
  config: { run: { steps?: number; mode?: string; model?: { preset?: string } } };
  progress: RunProgressSnapshot | null;
  metrics: Record<string, number> | null;
  checkpoint: string | null;
  error: string | null;
  createdAt: string;
  finishedAt: string | null;
  durationMs: number | null;
}

export interface SweepView {
  id: string;
  name: string | null;
  status: SweepStatus;
  statusChangedAt: string;
  axes: string[];
  runCount: number;
  counts: Record<RunStatus, number>;
  createdAt: string;
  finishedAt: string | null;
  runs?: RunView[];
  runIds?: string[];
}

export interface EvaluationView {
  id: string;
  status: RunStatus;
  statusChangedAt: string;
  protocol: string;
  runId: string | null;
  progress: { done: number; total: number } | null;
  result: { rows?: { method: string; metrics: Record<string, number>; images: number }[]; metrics?: Record<string, number> } | null;
  error: string | null;
  createdAt: string;
  finishedAt: string | null;
}

export type Subject = { kind: 'sweep'; view: SweepView } | { kind: 'run'; view: RunView } | { kind: 'evaluation'; view: EvaluationView };

/** What an id names: a sweep, a run or an evaluation (ids are UUIDs, unique across the three). */
export async function resolveSubject(api: IceApiClient, id: string): Promise<Subject | null> {
  const sweep = await api.find<SweepView>(`/sweeps/${encodeURIComponent(id)}`);
  if (sweep) return { kind: 'sweep', view: sweep };
  const run = await api.find<RunView>(`/runs/${encodeURIComponent(id)}`);
  if (run) return { kind: 'run', view: run };
  const ev = await api.find<EvaluationView>(`/evaluations/${encodeURIComponent(id)}`);
  return ev ? { kind: 'evaluation', view: ev } : null;
}

/** Whether the subject has finished, and whether it did not go well (failed, partial, cancelled). */
export function outcomeOf(s: Subject): { finished: boolean; bad: boolean } {
  const status = s.view.status;
  const finished = s.kind === 'sweep' ? isTerminalSweepStatus(s.view.status) : ['succeeded', 'failed', 'cancelled'].includes(status);
  return { finished, bad: finished && status !== 'succeeded' };
}

/** How a run is named on screen: its grid cell and seed, or its id for a single experiment. */
export function runLabel(r: RunView): string {
  return r.cellKey ? `${r.cellKey} seed ${r.seed}` : `run ${r.id.slice(0, 8)}`;
}

export function trackedRun(r: RunView): TrackedRunInit {
  return {
    id: r.id,
    label: runLabel(r),
    status: r.status,
    totalSteps: r.config.run.steps ?? r.progress?.totalSteps ?? 0,
    progress: r.progress,
  };
}

const num = (v: number): string => (Number.isInteger(v) ? String(v) : v.toFixed(4));

function metricsText(m: Record<string, number> | null | undefined, names = ['top1', 'ice_top1', 'miou', 'iou_fg', 'fg_fraction']): string {
  if (!m) return '';
  return names
    .filter((n) => typeof m[n] === 'number')
    .map((n) => `${n} ${num(m[n])}`)
    .join(', ');
}

function runLine(r: RunView): string {
  const parts: string[] = [r.status];
  if (r.status === 'running' && r.progress)
    parts.push(`step ${r.progress.step}/${r.progress.totalSteps}, loss ${r.progress.loss.toFixed(4)}`);
  if (r.status === 'succeeded') parts.push(metricsText(r.metrics));
  if (r.error && r.status !== 'succeeded') parts.push(r.error);
  return parts.filter(Boolean).join(' · ');
}

/** `ice status`: what a person wants to know about the subject, a few lines. */
export function statusText(s: Subject): string {
  switch (s.kind) {
    case 'sweep': {
      const v = s.view;
      const c = v.counts;
      const lines = [
        `sweep ${v.id}${v.name ? ` (${v.name})` : ''}: ${v.status} since ${v.statusChangedAt}`,
        `  runs: ${c.succeeded + c.failed + c.cancelled} of ${v.runCount} finished (${c.succeeded} succeeded, ${c.failed} failed, ${c.cancelled} cancelled), ${c.running} running, ${c.queued} queued`,
        `  axes: ${v.axes.join(', ')}`,
      ];
      for (const r of v.runs ?? []) lines.push(`  ${r.id.slice(0, 8)} ${runLabel(r)}: ${runLine(r)}`);
      return lines.join('\n');
    }
    case 'run': {
      const r = s.view;
      const lines = [`run ${r.id}${r.cellKey ? ` (${runLabel(r)} of sweep ${r.sweepId})` : ''}: ${r.status} since ${r.statusChangedAt}`];
      lines.push(`  ${runLine(r)}`);
      if (r.progress && r.status === 'running' && r.progress.etaSeconds !== null)
        lines.push(`  worker's ETA ${formatDuration(r.progress.etaSeconds)}`);
      if (r.durationMs !== null) lines.push(`  took ${formatDuration(r.durationMs / 1000)} (attempts: ${r.attempts})`);
      if (r.checkpoint) lines.push(`  checkpoint: ${r.checkpoint}`);
      return lines.join('\n');
    }
    case 'evaluation': {
      const e = s.view;
      const lines = [`evaluation ${e.id} (${e.protocol}${e.runId ? ` of run ${e.runId}` : ''}): ${e.status} since ${e.statusChangedAt}`];
      if (e.status === 'running' && e.progress) lines.push(`  ${e.progress.done}/${e.progress.total} images`);
      for (const row of e.result?.rows ?? [])
        lines.push(
          `  ${row.method}: ${Object.entries(row.metrics)
            .map(([k, v]) => `${k} ${num(v)}`)
            .join(', ')}`,
        );
      if (e.result?.metrics) lines.push(`  ${metricsText(e.result.metrics, Object.keys(e.result.metrics))}`);
      if (e.error) lines.push(`  ${e.error}`);
      return lines.join('\n');
    }
  }
}
