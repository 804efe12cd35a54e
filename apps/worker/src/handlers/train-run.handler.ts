import * as fs from 'node:fs';
import * as path from 'node:path';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { UnrecoverableError } from 'bullmq';
import { IceError } from '@ice/core';
import { LAST_CHECKPOINT, progressSeries, progressSnapshot, type RunConfig, type RunResult } from '@ice/experiments';
import {
  ArtifactStore,
  CANCEL_REASON_GROUP_FAILED,
  CANCEL_REASON_SHUTDOWN,
  CANCEL_REASON_USER,
  EventBus,
  HandlesJob,
  isTerminalRunStatus,
  isTransientDbError,
  ORCHESTRATION_CONFIG,
  OutcomeStore,
  retryWrite,
  RunRepository,
  runInThread,
  runProgressEvent,
  runStatusEvent,
  type JobContext,
  type JobHandler,
  type JobPayload,
  type OrchestrationConfig,
  type RunFinish,
  type RunStatus,
  workersKey,
} from '@ice/orchestration';
import { TRAIN_RUN_TASK } from '../training/task-files';
import type { TrainRunInput, TrainRunMessage } from '../training/train-run.task';
import { attemptAbort, attemptFailure, handBackJob } from './job-attempt';

/** `recorded: false`: the database stayed away past the horizon; the outcome waits on disk for the reconciler. */
export type TrainRunOutcome = { status: RunStatus; metrics?: Record<string, number>; duplicate?: boolean; recorded?: boolean };

/** One attempt at one rank of a run, as the handler's steps share it. */
interface RunAttempt {
  runId: string;
  rank: number;
  config: RunConfig;
  /** Rank 0: owns the run's row. */
  lead: boolean;
  /** "run <id>" or "run <id> rank r/W", for logs. */
  name: string;
  sweepId: string | null;
  runDir: string;
  ctx: JobContext;
  abort: AbortController;
}

/**
 * Trains one run. The loop runs in a worker thread (this thread keeps renewing the job's lock);
 * the run's directory holds its checkpoints, so a redelivered job — after a crash or a stall —
 * resumes where the last checkpoint left off, and the guarded updates of the repository make sure
 * only the first finished attempt writes the result.
 *
 * A data-parallel run (worldSize W) is W jobs, one per rank, averaging gradients over a TCP ring
 * (Redis only for the rendezvous).
 * Rank 0 owns the run's row (status, progress, result); the other ranks write nothing but a final
 * failure, which fails the run. Every rank watches the row, so a cancel or another rank's final
 * failure stops it even while it waits for the others. A rank whose ring neighbour dies or
 * stalls (seconds), or that waits longer than the all-reduce timeout, fails its attempt
 * (RANK_TIMEOUT, retried like any other failure) and BullMQ retries it from its last checkpoint;
 * since all ranks checkpoint at the same steps, the retried ranks meet again at the common
 * checkpoint, in a new group that forms as soon as the last rank is back.
 */
@Injectable()
@HandlesJob('run.train')
export class TrainRunHandler implements JobHandler<'run.train'> {
  private readonly log = new Logger('run.train');

  constructor(
    @Inject(ORCHESTRATION_CONFIG) private readonly config: OrchestrationConfig,
    private readonly runs: RunRepository,
    private readonly bus: EventBus,
    private readonly artifacts: ArtifactStore,
    private readonly outcomes: OutcomeStore,
  ) {}

  /** The payload (its RunConfig included) was parsed by the job registry; rank < worldSize is part of its schema. */
  async handle({ runId, rank, config }: JobPayload<'run.train'>, ctx: JobContext): Promise<TrainRunOutcome> {
    const W = config.worldSize;
    const lead = rank === 0;
    const name = W > 1 ? `run ${runId} rank ${rank}/${W}` : `run ${runId}`;
    // A database that is away holds the job (its lock renewed) instead of failing an attempt.
    const claim = await this.whileDbAway(`claiming ${name}`, () => this.claim(runId, lead));
    if ('outcome' in claim) return claim.outcome;

    const { abort, release } = attemptAbort(ctx);
    const a: RunAttempt = {
      runId,
      rank,
      config,
      lead,
      name,
      sweepId: claim.sweepId,
      runDir: this.artifacts.runDir(runId, rank),
      ctx,
      abort,
    };
    // Ranks wait for one another without reporting progress: watch the row on a timer instead.
    const every = Math.max(500, this.config.worker.progressIntervalMs);
    const watch = W > 1 ? setInterval(() => void this.watchGroup(runId, abort), every) : undefined;
    try {
      // An earlier attempt finished training but its outcome never reached the row: record it, do not train again.
      const stored = lead ? this.outcomes.read(runId) : null;
      if (stored) {
        this.log.log(`${name}: recording the outcome an earlier attempt stored at ${this.outcomes.file(runId)}`);
        return await this.record(a, this.outcomes.toFinish(stored));
      }
      return await this.succeed(a, await this.train(a));
    } catch (e) {
      return await this.settle(a, e);
    } finally {
      clearInterval(watch);
      release();
    }
  }

  /** A payload that does not parse fails the run it names (if it names one) for good. */
  async rejectPayload(raw: unknown, error: IceError): Promise<void> {
    const runId = (raw as { runId?: unknown } | null)?.runId;
    if (typeof runId !== 'string' || !/^[0-9a-f-]{36}$/.test(runId)) return;
    await this.runs.fail(runId, error.message, true);
    await this.publishStatus(runId);
  }

  /**
   * Rank 0 claims the row for this attempt; the other ranks only check the run is still to be
   * trained. A finished run (a redelivered job) or one cancelled while queued ends here, writing nothing.
   */
  private async claim(runId: string, lead: boolean): Promise<{ sweepId: string | null } | { outcome: TrainRunOutcome }> {
    if (lead) {
      const run = await this.runs.start(runId, this.config.worker.id);
      if (run) {
        await this.publishStatus(runId);
        return { sweepId: run.sweepId };
      }
    }
    const existing = await this.runs.get(runId);
    if (!existing) throw new UnrecoverableError(`run ${runId} does not exist`);
    if (lead) return { outcome: { status: existing.status, metrics: existing.metrics ?? undefined, duplicate: true } };
    if (isTerminalRunStatus(existing.status) || existing.cancelRequested) return { outcome: { status: existing.status, duplicate: true } };
    return { sweepId: existing.sweepId };
  }

  private train(a: RunAttempt): Promise<RunResult> {
    const w = this.config.worker;
    const input: TrainRunInput = {
      config: a.config,
      runDir: a.runDir,
      progressIntervalMs: w.progressIntervalMs,
      rank: a.rank,
      allReduce:
        a.config.worldSize > 1
          ? {
              redisUrl: this.config.redisUrl,
              keyPrefix: `${this.config.queuePrefix}:allreduce`,
              runId: a.runId,
              timeoutMs: w.allReduceTimeoutMs,
              heartbeatTimeoutMs: w.allReduceHeartbeatTimeoutMs,
              host: w.allReduceHost,
              advertiseHost: w.allReduceAdvertiseHost ?? undefined,
              ports: w.allReducePorts,
              transport: w.allReduceTransport,
              attempt: { number: a.ctx.job.attemptsMade + 1, of: a.ctx.job.opts.attempts ?? 1 },
              workersKey: workersKey(this.config.queuePrefix),
            }
          : undefined,
    };
    return runInThread<TrainRunInput, RunResult, TrainRunMessage>(TRAIN_RUN_TASK, input, {
      signal: a.abort.signal,
      cancelGraceMs: w.cancelGraceMs,
      onMessage: (m) => this.onMessage(a, m),
    });
  }

  /**
   * Rank 0 records the result once (a second finished attempt's result is discarded); the other
   * ranks record nothing. The outcome goes to disk first, then to the row.
   */
  private async succeed(a: RunAttempt, result: RunResult): Promise<TrainRunOutcome> {
    if (!a.lead) {
      this.log.log(`${a.name} finished its ${result.steps} steps; rank 0 records the result`);
      return { status: 'succeeded' };
    }
    const finish: RunFinish = { ...result, lastCheckpoint: path.join(a.runDir, LAST_CHECKPOINT) };
    this.outcomes.write(a.runId, finish);
    return this.record(a, finish);
  }

  /**
   * Writes the outcome to the row, retrying while the database is away (up to the configured
   * horizon, the job held so that no attempt is spent and the run is not trained again). Past the
   * horizon the job completes anyway: the outcome file stays, and the reconciler records it.
   */
  private async record(a: RunAttempt, finish: RunFinish): Promise<TrainRunOutcome> {
    let first: boolean;
    try {
      first = await this.whileDbAway(`recording the outcome of ${a.name}`, () => this.runs.finish(a.runId, finish));
    } catch (e) {
      if (!isTransientDbError(e)) throw e;
      this.log.error(
        `${a.name} succeeded but the database stayed away for ${this.config.worker.outcomeWriteHorizonMs} ms: ` +
          `its outcome stays in ${this.outcomes.file(a.runId)}; the reconciler records it once the database is back (${(e as Error).message})`,
      );
      return { status: 'succeeded', metrics: finish.metrics, recorded: false };
    }
    if (!first) this.log.warn(`run ${a.runId} had already finished; this attempt's result is discarded`);
    else {
      const resumed = finish.resumedFromStep !== null ? ` (resumed from step ${finish.resumedFromStep})` : '';
      this.log.log(`run ${a.runId} succeeded in ${finish.durationMs} ms${resumed}: ${JSON.stringify(finish.metrics)}`);
    }
    await this.publishStatus(a.runId).catch((e: unknown) =>
      this.log.warn(`run ${a.runId}: status event not sent: ${(e as Error).message}`),
    );
    return { status: 'succeeded', metrics: finish.metrics };
  }

  /** Runs a database step, waiting for a database that is away (one log line when it goes, one when it is back). */
  private async whileDbAway<T>(what: string, step: () => Promise<T>): Promise<T> {
    let waited = false;
    const out = await retryWrite(step, {
      horizonMs: this.config.worker.outcomeWriteHorizonMs,
      onRetry: ({ attempt, error }) => {
        if (attempt > 1) return;
        waited = true;
        this.log.warn(`${what}: the database is unreachable (${error.message}); retrying with backoff`);
      },
    });
    if (waited) this.log.log(`${what}: the database is back`);
    return out;
  }

  /** The attempt's error: a cancel (by the user, a shutdown or the group), or a failure retried by BullMQ or final. */
  private async settle(a: RunAttempt, e: unknown): Promise<TrainRunOutcome> {
    if (e instanceof IceError && e.code === 'CANCELLED') {
      if (a.abort.signal.reason === CANCEL_REASON_SHUTDOWN) return this.handBack(a);
      if (a.abort.signal.reason === CANCEL_REASON_GROUP_FAILED) {
        // The rank that failed wrote the run's outcome; retrying this one cannot help.
        this.log.log(`${a.name} stopped: another rank failed the run`);
        throw new UnrecoverableError(`another rank of run ${a.runId} failed`);
      }
      await this.runs.markCancelled(a.runId);
      await this.publishStatus(a.runId);
      this.log.log(`${a.name} cancelled`);
      return { status: 'cancelled' };
    }
    const f = attemptFailure(e, a.ctx);
    this.log.error(`${a.name} attempt ${f.attempt} failed${f.final ? '' : ' (will be retried)'}: ${f.message}`);
    // The row shows rank 0's attempts; any rank's final failure fails the run (and so stops the other ranks).
    if (a.lead || f.final) {
      await this.runs.fail(a.runId, a.lead ? f.message : `rank ${a.rank}: ${f.message}`, f.final);
      await this.publishStatus(a.runId);
    }
    throw f.retryable ? e : new UnrecoverableError(f.message);
  }

  /** Stops this rank when the run was cancelled or another rank failed it for good. */
  private async watchGroup(runId: string, abort: AbortController): Promise<void> {
    if (abort.signal.aborted) return;
    const row = await this.runs.get(runId).catch(() => null);
    if (!row || abort.signal.aborted) return;
    if (row.cancelRequested || row.status === 'cancelled') abort.abort(CANCEL_REASON_USER);
    else if (row.status === 'failed') abort.abort(CANCEL_REASON_GROUP_FAILED);
  }

  private async onMessage(a: RunAttempt, m: TrainRunMessage): Promise<void> {
    switch (m.kind) {
      case 'log':
        this.log.log(`${a.name}: ${m.message}`);
        await a.ctx.job.log(m.message).catch(() => undefined);
        return;
      case 'progress': {
        const p = m.progress;
        const jobProgress = { step: p.step, totalSteps: p.totalSteps, loss: p.loss };
        // The other ranks train the same weights in step with rank 0, whose progress stands for the run's.
        if (!a.lead) {
          await a.ctx.job.updateProgress(jobProgress).catch(() => undefined);
          return;
        }
        const last = path.join(a.runDir, LAST_CHECKPOINT);
        const snapshot = progressSnapshot(p);
        await this.runs.recordProgress(a.runId, snapshot, progressSeries(p), fs.existsSync(last) ? last : null);
        await a.ctx.job.updateProgress(jobProgress).catch(() => undefined);
        await this.bus.publish(runProgressEvent({ id: a.runId, sweepId: a.sweepId }, snapshot));
        // The cancel broadcast can miss a worker (it reconnected); the row's flag cannot.
        const row = await this.runs.get(a.runId);
        if (row?.cancelRequested && !a.abort.signal.aborted) a.abort.abort(CANCEL_REASON_USER);
        return;
      }
    }
  }

  /** The worker is shutting down: put the job back (without using up an attempt) to resume elsewhere. */
  private async handBack(a: RunAttempt): Promise<never> {
    this.log.log(`${a.name}: worker shutting down; handing the job back (it resumes from its last checkpoint)`);
    if (a.lead) {
      await this.runs.fail(a.runId, 'worker shut down; the run resumes from its last checkpoint', false);
      await this.publishStatus(a.runId);
    }
    return handBackJob(a.ctx);
  }

  private async publishStatus(runId: string): Promise<void> {
    const r = await this.runs.get(runId);
    if (r) await this.bus.publish(runStatusEvent(r));
  }
}
