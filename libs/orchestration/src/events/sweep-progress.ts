/**
 * What a client of the event streams (`ice watch`, the demo) shows while a sweep or a run goes:
 * "run k of n", each running run's step, loss and ETA, and the whole job's ETA. An ETA is only
 * given once a rate has been measured, and never from a first report: a run's first report
 * follows its start-up (kernel compilation, data loading, resuming), which on a small model can
 * take as long as hundreds of steps and would read as an ETA of hours.
 *
 * - a run's rate: steps between two of its progress reports over the time between them (the
 *   worker's clock), smoothed; none until its second report after it (re)started;
 * - the overall rate: steps done by all runs (a finished run counts all its steps) per second of
 *   wall time since the first progress report was seen, so later runs' start-up and scoring are
 *   in it; none until OVERALL_MIN_SECONDS have passed and some steps were done in them.
 */
import type { RunProgressSnapshot } from '@ice/experiments';
import { isTerminalRunStatus, type RunStatus } from '../db/entities/status';
import type { OrchestrationEvent } from './orchestration.events';

/** A run as the tracker starts from (GET /sweeps/:id's runs, or GET /runs/:id). */
export interface TrackedRunInit {
  id: string;
  /** What names the run on screen, e.g. its grid cell and seed. */
  label: string;
  status: RunStatus;
  totalSteps: number;
  progress?: RunProgressSnapshot | null;
}

export interface TrackedRun {
  id: string;
  label: string;
  status: RunStatus;
  step: number;
  totalSteps: number;
  loss: number | null;
  /** Optimizer steps per second between its latest reports; null until measured. */
  stepsPerSecond: number | null;
  etaSeconds: number | null;
  metrics: Record<string, number> | null;
  error: string | null;
}

/** Less than this many seconds of reports gives no overall rate (one report interval is 2 s by default). */
export const OVERALL_MIN_SECONDS = 5;
/** Weight of the newest interval in a run's smoothed rate. */
const SMOOTHING = 0.5;

interface LastReport {
  step: number;
  at: number;
}

export class SweepProgress {
  private readonly runs = new Map<string, TrackedRun>();
  private readonly last = new Map<string, LastReport>();
  private anchor: { at: number; done: number } | null = null;
  private latest: { at: number; done: number } | null = null;

  constructor(runs: readonly TrackedRunInit[]) {
    for (const r of runs) {
      const step = r.status === 'succeeded' ? r.totalSteps : (r.progress?.step ?? 0);
      this.runs.set(r.id, {
        id: r.id,
        label: r.label,
        status: r.status,
        step,
        totalSteps: r.totalSteps,
        loss: r.progress?.loss ?? null,
        stepsPerSecond: null,
        etaSeconds: null,
        metrics: null,
        error: null,
      });
    }
  }

  /** Applies one event of the stream, received at `now` (ms). Events of unknown runs are ignored. */
  apply(e: OrchestrationEvent, now: number = Date.now()): void {
    switch (e.type) {
      case 'run.progress': {
        const run = this.runs.get(e.runId);
        if (!run || isTerminalRunStatus(run.status)) return;
        const p = e.progress;
        const at = Date.parse(p.at);
        const prev = this.last.get(run.id);
        if (prev && p.step > prev.step && at > prev.at) {
          const rate = (p.step - prev.step) / ((at - prev.at) / 1000);
          run.stepsPerSecond = run.stepsPerSecond === null ? rate : SMOOTHING * rate + (1 - SMOOTHING) * run.stepsPerSecond;
        }
        if (!prev || p.step !== prev.step) this.last.set(run.id, { step: p.step, at });
        run.status = 'running';
        run.step = Math.max(run.step, p.step);
        run.totalSteps = p.totalSteps;
        run.loss = p.loss;
        run.etaSeconds = run.stepsPerSecond ? (run.totalSteps - run.step) / run.stepsPerSecond : null;
        this.sample(now);
        return;
      }
      case 'run.status': {
        const run = this.runs.get(e.runId);
        if (!run) return;
        run.status = e.status;
        run.error = e.error ?? null;
        if (e.metrics) run.metrics = e.metrics;
        if (e.status === 'succeeded') run.step = run.totalSteps;
        if (e.status !== 'running') {
          // Back in the queue (a retry, a hand-back) or finished: its next report follows a new start-up.
          this.last.delete(run.id);
          run.stepsPerSecond = null;
          run.etaSeconds = isTerminalRunStatus(e.status) ? 0 : null;
        }
        if (this.anchor) this.sample(now);
        return;
      }
      case 'sweep.status':
        return;
    }
  }

  private done(): number {
    let d = 0;
    // A failed or cancelled run's steps were done too (they cost the time), though none remain.
    for (const r of this.runs.values()) d += r.status === 'succeeded' ? r.totalSteps : r.step;
    return d;
  }

  private remaining(): number {
    let left = 0;
    for (const r of this.runs.values()) if (!isTerminalRunStatus(r.status)) left += Math.max(0, r.totalSteps - r.step);
    return left;
  }

  private sample(now: number): void {
    const done = this.done();
    this.anchor ??= { at: now, done };
    this.latest = { at: now, done };
  }

  /** Every run, in the order given. */
  all(): TrackedRun[] {
    return [...this.runs.values()];
  }

  /** The runs training now. */
  running(): TrackedRun[] {
    return this.all().filter((r) => r.status === 'running');
  }

  /** Finished runs (k) of all runs (n), and how many of them failed or were cancelled. */
  counts(): { finished: number; total: number; succeeded: number; failed: number; cancelled: number; running: number } {
    const all = this.all();
    const n = (s: RunStatus): number => all.filter((r) => r.status === s).length;
    return {
      finished: all.filter((r) => isTerminalRunStatus(r.status)).length,
      total: all.length,
      succeeded: n('succeeded'),
      failed: n('failed'),
      cancelled: n('cancelled'),
      running: n('running'),
    };
  }

  /** Steps per second of the whole job over the wall time since the first report; null until measured. */
  overallStepsPerSecond(now: number = Date.now()): number | null {
    if (!this.anchor || !this.latest) return null;
    const seconds = (now - this.anchor.at) / 1000;
    const steps = this.latest.done - this.anchor.done;
    if (seconds < OVERALL_MIN_SECONDS || steps <= 0) return null;
    return steps / seconds;
  }

  /** Seconds until every run has finished at the measured rate; 0 when nothing is left; null until measured. */
  etaSeconds(now: number = Date.now()): number | null {
    const left = this.remaining();
    if (left === 0) return 0;
    const rate = this.overallStepsPerSecond(now);
    return rate ? left / rate : null;
  }
  /** "3 of 12 runs finished (1 failed), 2 running · ETA 4m10s"; the ETA reads "measuring…" until there is a rate. */
  summaryLine(now: number = Date.now()): string {
    const c = this.counts();
    const bad = [c.failed ? `${c.failed} failed` : '', c.cancelled ? `${c.cancelled} cancelled` : ''].filter(Boolean).join(', ');
    return `${c.finished} of ${c.total} runs finished${bad ? ` (${bad})` : ''}, ${c.running} running · ETA ${this.etaText(now)}`;
  }

  /** The ETA as shown: "measuring…" until there is a rate, "scoring…" once every step is done but runs are still being scored. */
  etaText(now: number = Date.now()): string {
    const eta = this.etaSeconds(now);
    if (eta === 0 && this.all().some((r) => !isTerminalRunStatus(r.status))) return 'scoring…';
    return eta === null ? 'measuring…' : formatDuration(eta);
  }

  /** The line a finished run gets: "run 3 of 12 finished: alpha=0.5 seed 0 succeeded · top1 0.91". */
  finishedLine(run: TrackedRun): string {
    const c = this.counts();
    const m = run.metrics;
    const scores = m ? ['top1', 'ice_top1', 'miou'].filter((k) => typeof m[k] === 'number').map((k) => `${k} ${m[k].toFixed(3)}`) : [];
    const tail = [...scores, run.status !== 'succeeded' && run.error ? run.error : ''].filter(Boolean).join(', ');
    return `run ${c.finished} of ${c.total} finished: ${run.label} ${run.status}${tail ? ` · ${tail}` : ''}`;
  }
}

/** "alpha=0.5 seed 0: step 120/500, loss 0.1234 · ETA 1m33s" (ETA "–" until the run's rate is measured, "scoring…" after its last step). */
export function runProgressLine(run: TrackedRun): string {
  const loss = run.loss === null ? '' : `, loss ${run.loss.toFixed(4)}`;
  const eta = run.step >= run.totalSteps && !isTerminalRunStatus(run.status) ? 'scoring…' : formatDuration(run.etaSeconds);
  return `${run.label}: step ${run.step}/${run.totalSteps}${loss} · ETA ${eta}`;
}

/** "1h02m", "3m05s", "42s"; "–" when unknown. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '–';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
