/**
 * `ice watch`: follows a sweep or a run over its SSE stream (an evaluation by polling, it has no
 * stream) until it finishes. On a terminal: live bars (cli-progress), one for the whole job
 * ("k/n runs", ETA) and one per running run; elsewhere (a pipe, a log file, CI): plain lines, a
 * line per finished run and a progress summary every few seconds. ETAs come from SweepProgress:
 * none until a rate is measured, never from a run's first report.
 */
import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import {
  formatDuration,
  isTerminalSweepStatus,
  runProgressLine,
  SweepProgress,
  type OrchestrationEvent,
  type TrackedRun,
} from '@ice/orchestration';
import type { IceApiClient } from './api-client';
import { outcomeOf, trackedRun, type EvaluationView, type RunView, type Subject, type SweepView } from './views';

/** How often plain output repeats the progress summary. */
const PLAIN_EVERY_MS = 10_000;
/** How often bars re-render with no event (the ETA moves with the clock). */
const TICK_MS = 1000;

/** What the watcher shows; either bars on a terminal or plain lines. */
interface ProgressView {
  render(p: SweepProgress, e?: OrchestrationEvent): void;
  note(line: string): void;
  stop(): void;
}

class PlainView implements ProgressView {
  private lastSummary = 0;
  private readonly started = new Set<string>();

  constructor(private readonly out: NodeJS.WritableStream) {}

  render(p: SweepProgress, e?: OrchestrationEvent): void {
    if (e?.type === 'run.status') {
      const run = p.all().find((r) => r.id === e.runId);
      if (run && ['succeeded', 'failed', 'cancelled'].includes(run.status)) this.note(p.finishedLine(run));
      else if (run?.status === 'running' && !this.started.has(run.id)) {
        this.started.add(run.id);
        this.note(`started: ${run.label}`);
      } else if (run?.status === 'queued') this.note(`back in the queue: ${run.label}${run.error ? ` (${run.error})` : ''}`);
    }
    const now = Date.now();
    if (e?.type === 'run.progress' && now - this.lastSummary >= PLAIN_EVERY_MS) {
      this.lastSummary = now;
      this.note(p.summaryLine(now));
      for (const r of p.running()) this.note(`  ${runProgressLine(r)}`);
    }
  }

  note(line: string): void {
    this.out.write(`${line}\n`);
  }

  stop(): void {}
}

class BarsView implements ProgressView {
  private readonly multi: MultiBar;
  private readonly overall: SingleBar;
  private readonly bars = new Map<string, SingleBar>();
  private readonly timer: NodeJS.Timeout;
  private last: SweepProgress | null = null;

  constructor(out: NodeJS.WritableStream, total: number) {
    this.multi = new MultiBar(
      {
        stream: out,
        format: '{label} {bar} {value}/{total} {info}',
        barsize: 24,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        autopadding: true,
        forceRedraw: true,
      },
      Presets.shades_classic,
    );
    this.overall = this.multi.create(total, 0, { label: 'runs finished'.padEnd(28), info: '' });
    this.timer = setInterval(() => this.last && this.render(this.last), TICK_MS);
  }

  render(p: SweepProgress, e?: OrchestrationEvent): void {
    this.last = p;
    if (e?.type === 'run.status') {
      const run = p.all().find((r) => r.id === e.runId);
      if (run && ['succeeded', 'failed', 'cancelled'].includes(run.status)) this.note(p.finishedLine(run));
    }
    const c = p.counts();
    const bad = c.failed + c.cancelled ? ` · ${c.failed + c.cancelled} failed/cancelled` : '';
    this.overall.update(c.finished, { info: `· ${c.running} running${bad} · ETA ${p.etaText()}` });
    const running = new Map(p.running().map((r) => [r.id, r]));
    for (const [id, bar] of this.bars) {
      if (!running.has(id)) {
        this.multi.remove(bar);
        this.bars.delete(id);
      }
    }
    for (const r of running.values()) this.updateRun(r);
  }

  private updateRun(r: TrackedRun): void {
    const payload = {
      label: r.label.length > 28 ? `${r.label.slice(0, 27)}…` : r.label.padEnd(28),
      info: `${r.loss === null ? '' : `· loss ${r.loss.toFixed(4)} `}· ETA ${r.step >= r.totalSteps ? 'scoring…' : formatDuration(r.etaSeconds)}`,
    };
    let bar = this.bars.get(r.id);
    if (!bar) {
      bar = this.multi.create(r.totalSteps, r.step, payload);
      this.bars.set(r.id, bar);
    }
    bar.setTotal(r.totalSteps);
    bar.update(r.step, payload);
  }

  note(line: string): void {
    this.multi.log(`${line}\n`);
  }

  stop(): void {
    clearInterval(this.timer);
    if (this.last) this.render(this.last);
    this.multi.stop();
  }
}

export interface WatchIo {
  /** Where progress goes (stderr: stdout keeps the result for scripts). */
  err: NodeJS.WritableStream & { isTTY?: boolean };
  /** Bars (a terminal) or lines. */
  bars: boolean;
  signal: AbortSignal;
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

/** Follows an SSE stream into the tracker until `done` says so; a dropped stream is re-opened after re-reading the state. */
async function follow(
  api: IceApiClient,
  path: string,
  progress: SweepProgress,
  view: ProgressView,
  io: WatchIo,
  done: (e: OrchestrationEvent) => boolean,
  reread: () => Promise<{ finished: boolean; runs: RunView[] }>,
): Promise<void> {
  while (!io.signal.aborted) {
    const ac = new AbortController();
    const onAbort = (): void => ac.abort();
    io.signal.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const e of api.events(path, ac.signal)) {
        progress.apply(e);
        view.render(progress, e);
        if (done(e)) return;
      }
    } finally {
      io.signal.removeEventListener('abort', onAbort);
      ac.abort();
    }
    if (io.signal.aborted) return;
    // The stream ended without the end (an API restart, a proxy timeout): catch up from the database and follow again.
    const state = await reread();
    for (const r of state.runs) {
      progress.apply({
        type: 'run.status',
        runId: r.id,
        sweepId: r.sweepId,
        status: r.status,
        metrics: r.metrics,
        error: r.error,
        at: r.statusChangedAt,
      });
    }
    view.render(progress);
    if (state.finished) return;
    await sleep(1000, io.signal);
  }
}

async function watchSweep(api: IceApiClient, sweep: SweepView, io: WatchIo): Promise<void> {
  const full = sweep.runs ? sweep : await api.get<SweepView>(`/sweeps/${sweep.id}`);
  const progress = new SweepProgress((full.runs ?? []).map(trackedRun));
  const view: ProgressView = io.bars ? new BarsView(io.err, full.runCount) : new PlainView(io.err);
  view.note(`sweep ${full.id}${full.name ? ` (${full.name})` : ''}: ${full.runCount} runs over ${full.axes.join(' × ')}`);
  view.render(progress);
  try {
    await follow(
      api,
      `/sweeps/${full.id}/events`,
      progress,
      view,
      io,
      (e) => e.type === 'sweep.status' && isTerminalSweepStatus(e.status),
      async () => {
        const s = await api.get<SweepView>(`/sweeps/${full.id}`);
        return { finished: isTerminalSweepStatus(s.status), runs: s.runs ?? [] };
      },
    );
  } finally {
    view.stop();
  }
}

async function watchRun(api: IceApiClient, run: RunView, io: WatchIo): Promise<void> {
  const progress = new SweepProgress([trackedRun(run)]);
  const view: ProgressView = io.bars ? new BarsView(io.err, 1) : new PlainView(io.err);
  view.render(progress);
  try {
    await follow(
      api,
      `/runs/${run.id}/events`,
      progress,
      view,
      io,
      (e) => e.type === 'run.status' && ['succeeded', 'failed', 'cancelled'].includes(e.status),
      async () => {
        const r = await api.get<RunView>(`/runs/${run.id}`);
        return { finished: ['succeeded', 'failed', 'cancelled'].includes(r.status), runs: [r] };
      },
    );
  } finally {
    view.stop();
  }
}

async function watchEvaluation(api: IceApiClient, ev: EvaluationView, io: WatchIo): Promise<void> {
  let last = '';
  while (!io.signal.aborted) {
    const e = await api.get<EvaluationView>(`/evaluations/${ev.id}`);
    const line = `evaluation ${e.id.slice(0, 8)} ${e.status}${e.progress ? ` ${e.progress.done}/${e.progress.total} images` : ''}`;
    if (line !== last) io.err.write(`${line}\n`);
    last = line;
    if (['succeeded', 'failed', 'cancelled'].includes(e.status)) return;
    await sleep(1000, io.signal);
  }
}

/** Watches until the subject finishes (or the signal aborts), then returns its final state as the API has it. */
export async function watchSubject(api: IceApiClient, s: Subject, io: WatchIo): Promise<Subject> {
  if (!outcomeOf(s).finished) {
    switch (s.kind) {
      case 'sweep':
        await watchSweep(api, s.view, io);
        break;
      case 'run':
        await watchRun(api, s.view, io);
        break;
      case 'evaluation':
        await watchEvaluation(api, s.view, io);
        break;
    }
  }
  switch (s.kind) {
    case 'sweep':
      return { kind: 'sweep', view: await api.get<SweepView>(`/sweeps/${s.view.id}`) };
    case 'run':
      return { kind: 'run', view: await api.get<RunView>(`/runs/${s.view.id}`) };
    case 'evaluation':
      return { kind: 'evaluation', view: await api.get<EvaluationView>(`/evaluations/${s.view.id}`) };
  }
}
