/**
 * Brings the rows into the truth when the path that normally updates them was cut: the database
 * was away when a run finished (its outcome waits on disk), Redis lost the jobs (restart without
 * persistence), or a worker died with nobody left to notice. The rows are the source of truth: a
 * queued row gets its job back (idempotent job ids), a running row is finished from its stored
 * outcome, or queued again when nobody runs it, or failed with the reason when it cannot be
 * recovered; a sweep whose runs have all ended is finalized. Every change is announced, so SSE
 * streams end however the run ended.
 *
 * It runs at start-up of the API and of every worker, then every RECONCILE_INTERVAL_MS, one
 * process at a time (a Redis lease with expiry: a process that dies holding it blocks nobody).
 */
import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { parseEvaluationSpec } from '@ice/evaluation';
import { parseRunConfig, type RunConfig } from '@ice/experiments';
import { ORCHESTRATION_CONFIG, type OrchestrationConfig } from '../config/orchestration.config';
import { sweepOutcome, type EvaluationEntity, type RunEntity } from '../db/entities';
import { isTransientDbError } from '../db/retry-write';
import { EvaluationRepository, RunRepository, SweepRepository } from '../db/repositories';
import { EventBus } from '../events/event-bus';
import { runStatusEvent, sweepStatusEvent } from '../events/orchestration.events';
import { OutcomeStore } from '../outcomes/outcome.store';
import { ClusterState } from '../queue/cluster-state';
import { JobQueue, type RunJob } from '../queue/job-queue';
import { jobIds } from '../queue/jobs';
import { WorkerRegistry } from '../workers/worker-registry';
import { reconcileAction, sweepNeedsFinalizing, type ReconcileAction, type RowFacts } from './reconcile.rules';

const LEASE = 'reconcile';
/** Evaluations are queued with two attempts (JobQueue.enqueueEvaluation). */
const EVALUATION_ATTEMPTS = 2;

/** What one pass did, by action (for logs and tests). */
export interface ReconcileReport {
  skipped?: string;
  finished: string[];
  enqueued: string[];
  requeued: string[];
  failed: string[];
  sweepsRequeued: string[];
  sweepsFinalized: string[];
}

const emptyReport = (): ReconcileReport => ({
  finished: [],
  enqueued: [],
  requeued: [],
  failed: [],
  sweepsRequeued: [],
  sweepsFinalized: [],
});

@Injectable()
export class Reconciler implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = new Logger('reconciler');
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<ReconcileReport> | null = null;
  private stopped = false;
  private dbAway = false;

  constructor(
    @Inject(ORCHESTRATION_CONFIG) private readonly config: OrchestrationConfig,
    private readonly runs: RunRepository,
    private readonly sweeps: SweepRepository,
    private readonly evaluations: EvaluationRepository,
    private readonly queue: JobQueue,
    private readonly cluster: ClusterState,
    private readonly workers: WorkerRegistry,
    private readonly outcomes: OutcomeStore,
    private readonly bus: EventBus,
  ) {}

  /** A first pass at start-up (not awaited: start-up does not wait for Redis), then one every interval. */
  onApplicationBootstrap(): void {
    void this.tick();
    const every = this.config.reconcileIntervalMs;
    if (every > 0) {
      this.timer = setInterval(() => void this.tick(), every);
      this.timer.unref();
    }
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  private async tick(): Promise<void> {
    if (this.running || this.stopped) return;
    try {
      await this.reconcile();
      if (this.dbAway) this.log.log('the database is back; passes resumed');
      this.dbAway = false;
    } catch (e) {
      // The database away: the next pass tries again (said once per outage, not per pass).
      const why = (e as Error).message;
      if (!isTransientDbError(e)) this.log.error(`pass failed: ${why}`);
      else if (!this.dbAway) this.log.warn(`passes skipped while the database is unreachable (${why})`);
      this.dbAway = isTransientDbError(e);
    }
  }

  /** One pass under the lease; skipped (with the reason) when another process holds it or Redis is away. */
  reconcile(): Promise<ReconcileReport> {
    this.running ??= this.pass().finally(() => (this.running = null));
    return this.running;
  }

  private async pass(): Promise<ReconcileReport> {
    if (!this.cluster.connected) return { ...emptyReport(), skipped: 'Redis is unreachable' };
    const leaseMs = Math.max(60_000, 2 * this.config.reconcileIntervalMs);
    const token = await this.cluster.acquire(LEASE, leaseMs);
    if (!token) return { ...emptyReport(), skipped: 'another process is reconciling' };
    try {
      const report = emptyReport();
      const { live } = await this.workers.entries();
      const held = new Set(live.flatMap((w) => w.jobs.map((j) => j.id)));
      const registryComplete = await this.cluster.registryComplete();
      const facts = { held, registryComplete };
      const toQueue = new Map<string, RunJob[]>();
      for (const run of await this.runs.unfinished()) await this.reconcileRun(run, facts, report, toQueue);
      await this.queueRuns(toQueue, report);
      for (const ev of await this.evaluations.unfinished()) await this.reconcileEvaluation(ev, facts, report);
      await this.finalizeSweeps(report);
      const changed = Object.entries(report).filter(([, v]) => Array.isArray(v) && v.length);
      if (changed.length)
        this.log.log(`reconciled: ${changed.map(([k, v]) => `${k} ${(v as string[]).length}`).join(', ')} (${live.length} live worker(s))`);
      return report;
    } finally {
      await this.cluster.release(LEASE, token).catch(() => undefined);
    }
  }

  private async reconcileRun(
    run: RunEntity,
    facts: { held: Set<string>; registryComplete: boolean },
    report: ReconcileReport,
    toQueue: Map<string, RunJob[]>,
  ): Promise<void> {
    let action: ReconcileAction;
    try {
      const hasOutcome = this.outcomes.read(run.id) !== null;
      action = reconcileAction(this.facts(run, 'run', hasOutcome, await this.queue.runJob(run.id), facts, this.config.worker.attempts));
    } catch (e) {
      // An outcome file that does not parse: the run cannot be finished from it, nor trained again over it.
      action = { kind: 'fail', why: `its stored outcome is unreadable: ${(e as Error).message}` };
    }
    switch (action.kind) {
      case 'keep':
        return;
      case 'finish': {
        const stored = this.outcomes.read(run.id)!;
        if (await this.runs.finish(run.id, this.outcomes.toFinish(stored))) {
          this.log.log(`run ${run.id} finished from its stored outcome (${action.why})`);
          report.finished.push(run.id);
          await this.announceRun(run.id);
        }
        return;
      }
      case 'enqueue':
      case 'requeue': {
        const config = this.runConfig(run);
        if (typeof config === 'string')
          return this.failRun(run.id, `cannot be queued again: its stored config is invalid (${config})`, report);
        if (action.kind === 'requeue') {
          await this.runs.fail(run.id, `requeued by the reconciler: ${action.why}`, false);
          report.requeued.push(run.id);
          await this.announceRun(run.id);
        } else report.enqueued.push(run.id);
        this.log.log(`run ${run.id}: ${action.why}`);
        const key = run.sweepId ?? '';
        toQueue.set(key, [...(toQueue.get(key) ?? []), { runId: run.id, config }]);
        return;
      }
      case 'fail':
        return this.failRun(run.id, `failed by the reconciler: ${action.why}`, report);
    }
  }

  /** Standalone runs get their jobs back one by one; a sweep whose flow is gone gets a flow of its missing runs (same ids). */
  private async queueRuns(toQueue: Map<string, RunJob[]>, report: ReconcileReport): Promise<void> {
    for (const [sweepId, jobs] of toQueue) {
      if (sweepId && !(await this.queue.sweepJob(sweepId))) {
        await this.queue.enqueueSweep(sweepId, jobs);
        report.sweepsRequeued.push(sweepId);
        this.log.log(`sweep ${sweepId}: its flow was missing; re-created for ${jobs.length} run(s)`);
        continue;
      }
      // The sweep's flow exists (its parent waits on the children it still has): these runs go alone; the reconciler finalizes the sweep.
      for (const job of jobs) await this.queue.enqueueRun(job);
    }
  }

  private async reconcileEvaluation(
    ev: EvaluationEntity,
    facts: { held: Set<string>; registryComplete: boolean },
    report: ReconcileReport,
  ): Promise<void> {
    const action = reconcileAction(this.facts(ev, 'evaluation', false, await this.queue.evaluationJob(ev.id), facts, EVALUATION_ATTEMPTS));
    switch (action.kind) {
      case 'keep':
      case 'finish': // evaluations store no outcome file
        return;
      case 'enqueue':
      case 'requeue': {
        let spec;
        try {
          spec = parseEvaluationSpec(ev.spec);
        } catch (e) {
          await this.failEvaluation(ev.id, `cannot be queued again: its stored spec is invalid (${(e as Error).message})`, report);
          return;
        }
        if (action.kind === 'requeue') {
          await this.evaluations.fail(ev.id, `requeued by the reconciler: ${action.why}`, false);
          report.requeued.push(ev.id);
        } else report.enqueued.push(ev.id);
        this.log.log(`evaluation ${ev.id}: ${action.why}`);
        await this.queue.enqueueEvaluation(ev.id, spec);
        return;
      }
      case 'fail':
        return this.failEvaluation(ev.id, `failed by the reconciler: ${action.why}`, report);
    }
  }

  private facts(
    row: RunEntity | EvaluationEntity,
    kind: RowFacts['kind'],
    hasOutcome: boolean,
    job: RowFacts['job'],
    f: { held: Set<string>; registryComplete: boolean },
    maxAttempts: number,
  ): RowFacts {
    const jobId = kind === 'run' ? jobIds.run(row.id) : jobIds.evaluation(row.id);
    return {
      kind,
      status: row.status as RowFacts['status'],
      hasOutcome,
      job,
      heldByLiveWorker: f.held.has(jobId),
      registryComplete: f.registryComplete,
      attempts: row.attempts,
      maxAttempts,
      ageMs: Date.now() - row.updatedAt.getTime(),
    };
  }

  /** Sweeps whose runs have all ended but that nobody finalized (their flow lost, or waiting on children that are gone). */
  private async finalizeSweeps(report: ReconcileReport): Promise<void> {
    for (const sweep of await this.sweeps.unfinished()) {
      const counts = await this.sweeps.countsOf(sweep.id);
      const job = await this.queue.sweepJob(sweep.id);
      if (!sweepNeedsFinalizing(counts.queued + counts.running, job)) continue;
      const status = sweepOutcome(counts);
      if (!(await this.sweeps.setStatus(sweep.id, status))) continue;
      // A parent still waiting for children that no longer exist would wait forever.
      if (job?.state === 'waiting-children') await this.queue.queues.sweeps.remove(jobIds.sweep(sweep.id)).catch(() => undefined);
      report.sweepsFinalized.push(sweep.id);
      this.log.log(`sweep ${sweep.id} finalized by the reconciler: ${status} ${JSON.stringify(counts)}`);
      const finalized = await this.sweeps.get(sweep.id);
      if (finalized) await this.bus.publish(sweepStatusEvent(finalized, counts));
    }
  }

  private runConfig(run: RunEntity): RunConfig | string {
    try {
      return parseRunConfig(run.config.run);
    } catch (e) {
      return (e as Error).message;
    }
  }

  private async failRun(id: string, why: string, report: ReconcileReport): Promise<void> {
    await this.runs.fail(id, why, true);
    report.failed.push(id);
    this.log.warn(`run ${id} ${why}`);
    await this.announceRun(id);
  }

  private async failEvaluation(id: string, why: string, report: ReconcileReport): Promise<void> {
    await this.evaluations.fail(id, why, true);
    report.failed.push(id);
    this.log.warn(`evaluation ${id} ${why}`);
  }

  /** The row's status as an event (the SSE streams of the run and of its sweep end on a terminal one). */
  private async announceRun(id: string): Promise<void> {
    const row = await this.runs.get(id);
    if (row) await this.bus.publish(runStatusEvent(row));
  }
}
