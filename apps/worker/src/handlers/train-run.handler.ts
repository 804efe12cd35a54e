import * as fs from 'node:fs';
import * as path from 'node:path';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { DelayedError, UnrecoverableError } from 'bullmq';
import { IceError } from '@ice/core';
import { LAST_CHECKPOINT, parseRunConfig, type RunConfig, type RunResult } from '@ice/experiments';
import {
  ArtifactStore,
  EventBus,
  HandlesJob,
  isTerminalRunStatus,
  ORCHESTRATION_CONFIG,
  OrchestrationStore,
  runInThread,
  type JobContext,
  type JobHandler,
  type JobPayload,
  type OrchestrationConfig,
  type RunProgressSnapshot,
  type RunStatus,
} from '@ice/orchestration';
import { TRAIN_RUN_TASK } from '../training/task-files';
import type { TrainRunInput, TrainRunMessage } from '../training/train-run.task';
import { CANCEL_REASON_GROUP_FAILED, CANCEL_REASON_SHUTDOWN, CANCEL_REASON_USER } from './cancel-reasons';
import { isRetryable } from './retry-policy';

export type TrainRunOutcome = { status: RunStatus; metrics?: Record<string, number>; duplicate?: boolean };

/**
 * Trains one run. The loop runs in a worker thread (this thread keeps renewing the job's lock);
 * the run's directory holds its checkpoints, so a redelivered job — after a crash or a stall —
 * resumes where the last checkpoint left off, and the guarded updates of the store make sure
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
    private readonly store: OrchestrationStore,
    private readonly bus: EventBus,
    private readonly artifacts: ArtifactStore,
  ) {}

  async handle(payload: JobPayload<'run.train'>, ctx: JobContext): Promise<TrainRunOutcome> {
    const { runId, rank } = payload;
    let config: RunConfig;
    try {
      config = parseRunConfig(payload.config); // the payload is untrusted JSON again by now
    } catch (e) {
      await this.store.failRun(runId, (e as Error).message, true);
      await this.publishStatus(runId);
      throw new UnrecoverableError((e as Error).message);
    }

    const W = config.worldSize;
    if (rank >= W) {
      const message = `job for rank ${rank} of a run with worldSize ${W}`;
      await this.store.failRun(runId, message, true);
      await this.publishStatus(runId);
      throw new UnrecoverableError(message);
    }
    const lead = rank === 0;
    const name = W > 1 ? `run ${runId} rank ${rank}/${W}` : `run ${runId}`;

    let sweepId: string | null;
    if (lead) {
      const run = await this.store.startRun(runId, this.config.worker.id);
      if (!run) {
        const existing = await this.store.getRun(runId);
        if (!existing) throw new UnrecoverableError(`run ${runId} does not exist`);
        // Finished already (a redelivered job) or cancelled while queued: nothing to do, nothing to write.
        return { status: existing.status, metrics: existing.metrics ?? undefined, duplicate: true };
      }
      sweepId = run.sweepId;
      await this.publishStatus(runId);
    } else {
      // Rank 0 owns the row; this rank only makes sure the run is still to be trained.
      const existing = await this.store.getRun(runId);
      if (!existing) throw new UnrecoverableError(`run ${runId} does not exist`);
      if (isTerminalRunStatus(existing.status) || existing.cancelRequested) return { status: existing.status, duplicate: true };
      sweepId = existing.sweepId;
    }

    const runDir = this.artifacts.runDir(runId, rank);
    // Aborted by BullMQ (a cancel or a shutdown) or by the cancel flag seen on a progress write.
    const abort = new AbortController();
    const onJobAbort = (): void => abort.abort(ctx.signal?.reason);
    if (ctx.signal?.aborted) onJobAbort();
    else ctx.signal?.addEventListener('abort', onJobAbort, { once: true });
    // Ranks wait for one another without reporting progress: watch the row on a timer instead.
    const watch =
      W > 1 ? setInterval(() => void this.watchGroup(runId, abort), Math.max(500, this.config.worker.progressIntervalMs)) : undefined;

    try {
      const result = await runInThread<TrainRunInput, RunResult, TrainRunMessage>(
        TRAIN_RUN_TASK,
        {
          config,
          runDir,
          progressIntervalMs: this.config.worker.progressIntervalMs,
          rank,
          allReduce:
            W > 1
              ? {
                  redisUrl: this.config.redisUrl,
                  keyPrefix: `${this.config.queuePrefix}:allreduce`,
                  runId,
                  timeoutMs: this.config.worker.allReduceTimeoutMs,
                  heartbeatTimeoutMs: this.config.worker.allReduceHeartbeatTimeoutMs,
                  host: this.config.worker.allReduceHost,
                  advertiseHost: this.config.worker.allReduceAdvertiseHost ?? undefined,
                  ports: this.config.worker.allReducePorts,
                  attempt: { number: ctx.job.attemptsMade + 1, of: ctx.job.opts.attempts ?? 1 },
                }
              : undefined,
        },
        {
          signal: abort.signal,
          cancelGraceMs: this.config.worker.cancelGraceMs,
          onMessage: (m) => this.onMessage(m, { runId, name, lead, sweepId, config, runDir, ctx, abort }),
        },
      );
      if (!lead) {
        this.log.log(`${name} finished its ${result.steps} steps; rank 0 records the result`);
        return { status: 'succeeded' };
      }
      const first = await this.store.finishRun(runId, {
        metrics: result.metrics,
        checkpoint: result.checkpoint,
        lastCheckpoint: path.join(runDir, LAST_CHECKPOINT),
        resumedFromStep: result.resumedFromStep,
        backend: result.backend,
        durationMs: result.durationMs,
        steps: result.steps,
      });
      if (!first) this.log.warn(`run ${runId} had already finished; this attempt's result is discarded`);
      else
        this.log.log(
          `run ${runId} succeeded in ${result.durationMs} ms${result.resumedFromStep !== null ? ` (resumed from step ${result.resumedFromStep})` : ''}: ${JSON.stringify(result.metrics)}`,
        );
      await this.publishStatus(runId);
      return { status: 'succeeded', metrics: result.metrics };
    } catch (e) {
      if (e instanceof IceError && e.code === 'CANCELLED') {
        if (abort.signal.reason === CANCEL_REASON_SHUTDOWN) return this.handBack(runId, name, lead, ctx);
        if (abort.signal.reason === CANCEL_REASON_GROUP_FAILED) {
          // The rank that failed wrote the run's outcome; retrying this one cannot help.
          this.log.log(`${name} stopped: another rank failed the run`);
          throw new UnrecoverableError(`another rank of run ${runId} failed`);
        }
        await this.store.markCancelled(runId);
        await this.publishStatus(runId);
        this.log.log(`${name} cancelled`);
        return { status: 'cancelled' };
      }
      const message = (e as Error).message;
      const retryable = isRetryable(e);
      const final = !retryable || ctx.job.attemptsMade + 1 >= (ctx.job.opts.attempts ?? 1);
      this.log.error(`${name} attempt ${ctx.job.attemptsMade + 1} failed${final ? '' : ' (will be retried)'}: ${message}`);
      // The row shows rank 0's attempts; any rank's final failure fails the run (and so stops the other ranks).
      if (lead || final) {
        await this.store.failRun(runId, lead ? message : `rank ${rank}: ${message}`, final);
        await this.publishStatus(runId);
      }
      throw retryable ? e : new UnrecoverableError(message);
    } finally {
      clearInterval(watch);
      ctx.signal?.removeEventListener('abort', onJobAbort);
    }
  }

  /** Stops this rank when the run was cancelled or another rank failed it for good. */
  private async watchGroup(runId: string, abort: AbortController): Promise<void> {
    if (abort.signal.aborted) return;
    const row = await this.store.getRun(runId).catch(() => null);
    if (!row || abort.signal.aborted) return;
    if (row.cancelRequested || row.status === 'cancelled') abort.abort(CANCEL_REASON_USER);
    else if (row.status === 'failed') abort.abort(CANCEL_REASON_GROUP_FAILED);
  }

  private async onMessage(
    m: TrainRunMessage,
    s: {
      runId: string;
      name: string;
      lead: boolean;
      sweepId: string | null;
      config: RunConfig;
      runDir: string;
      ctx: JobContext;
      abort: AbortController;
    },
  ): Promise<void> {
    switch (m.kind) {
      case 'log':
        this.log.log(`${s.name}: ${m.message}`);
        await s.ctx.job.log(m.message).catch(() => undefined);
        return;
      case 'progress': {
        const p = m.progress;
        // The other ranks train the same weights in step with rank 0, whose progress stands for the run's.
        if (!s.lead) {
          await s.ctx.job.updateProgress({ step: p.step, totalSteps: p.totalSteps, loss: p.loss }).catch(() => undefined);
          return;
        }
        const samplesPerStep = s.config.data.batchSize * s.config.optimizer.accumSteps * s.config.worldSize;
        const snapshot: RunProgressSnapshot = {
          step: p.step,
          totalSteps: p.totalSteps,
          // Digits' training split is 60,000 images; other formats report epochs once their pipelines are wired in.
          epoch: s.config.data.format === 'digits' ? (p.step * samplesPerStep) / 60_000 : 0,
          loss: p.loss,
          imgPerSec: p.imgPerSec,
          etaSeconds: p.etaSeconds,
          lr: p.lr,
          at: new Date().toISOString(),
        };
        const last = path.join(s.runDir, LAST_CHECKPOINT);
        const points: Record<string, number> = { loss: p.loss, lr: p.lr, img_per_sec: p.imgPerSec };
        if (p.lIce !== undefined) points.l_ice = p.lIce;
        if (p.lBg !== undefined) points.l_bg = p.lBg;
        if (p.clsPer !== undefined) points.cls_per = p.clsPer;
        await this.store.recordProgress(s.runId, snapshot, points, fs.existsSync(last) ? last : null);
        await s.ctx.job.updateProgress({ step: p.step, totalSteps: p.totalSteps, loss: p.loss }).catch(() => undefined);
        await this.bus.publish({ type: 'run.progress', runId: s.runId, sweepId: s.sweepId, progress: snapshot });
        // The cancel broadcast can miss a worker (it reconnected); the row's flag cannot.
        const row = await this.store.getRun(s.runId);
        if (row?.cancelRequested && !s.abort.signal.aborted) s.abort.abort('user-cancel');
        return;
      }
    }
  }

  /** The worker is shutting down: put the job back (without using up an attempt) to resume elsewhere. */
  private async handBack(runId: string, name: string, lead: boolean, ctx: JobContext): Promise<never> {
    this.log.log(`${name}: worker shutting down; handing the job back (it resumes from its last checkpoint)`);
    if (lead) {
      await this.store.failRun(runId, 'worker shut down; the run resumes from its last checkpoint', false);
      await this.publishStatus(runId);
    }
    await ctx.job.moveToDelayed(Date.now() + 1000, ctx.token);
    throw new DelayedError();
  }

  private async publishStatus(runId: string): Promise<void> {
    const r = await this.store.getRun(runId);
    if (r)
      await this.bus.publish({
        type: 'run.status',
        runId,
        sweepId: r.sweepId,
        status: r.status,
        error: r.error,
        metrics: r.metrics,
        at: new Date().toISOString(),
      });
  }
}
