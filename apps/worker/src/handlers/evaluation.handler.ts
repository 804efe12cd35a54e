import * as path from 'node:path';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { DelayedError, UnrecoverableError } from 'bullmq';
import { IceError } from '@ice/core';
import {
  ArtifactStore,
  HandlesJob,
  ORCHESTRATION_CONFIG,
  OrchestrationStore,
  parseEvaluationSpec,
  runInThread,
  type EvaluationSpec,
  type JobContext,
  type JobHandler,
  type JobPayload,
  type OrchestrationConfig,
  type RunStatus,
} from '@ice/orchestration';
import { EVALUATE_TASK } from '../training/task-files';
import type { EvaluateInput, EvaluateMessage, EvaluateResult } from '../training/evaluate.task';
import { CANCEL_REASON_SHUTDOWN, CANCEL_REASON_USER } from './cancel-reasons';
import { isRetryable } from './retry-policy';

export type EvaluationOutcome = { status: RunStatus; duplicate?: boolean };

/**
 * Runs one evaluation in a worker thread (the event loop keeps renewing the job's lock while the
 * explainers run), writes progress to the row, and stores the summary and one row per method.
 * Cancels are seen by polling the row's flag: the pub/sub cancel channel addresses run jobs.
 */
@Injectable()
@HandlesJob('evaluation.run')
export class EvaluationHandler implements JobHandler<'evaluation.run'> {
  private readonly log = new Logger('evaluation.run');

  constructor(
    @Inject(ORCHESTRATION_CONFIG) private readonly config: OrchestrationConfig,
    private readonly store: OrchestrationStore,
    private readonly artifacts: ArtifactStore,
  ) {}

  async handle({ evaluationId, spec: payloadSpec }: JobPayload<'evaluation.run'>, ctx: JobContext): Promise<EvaluationOutcome> {
    const evaluation = await this.store.getEvaluation(evaluationId);
    if (!evaluation) throw new UnrecoverableError(`evaluation ${evaluationId} does not exist`);
    let spec: EvaluationSpec;
    try {
      spec = parseEvaluationSpec(payloadSpec ?? evaluation.spec); // untrusted JSON again by now
    } catch (e) {
      await this.store.finishEvaluation(evaluationId, { error: (e as Error).message, final: true });
      throw new UnrecoverableError((e as Error).message);
    }
    if (!(await this.store.startEvaluation(evaluationId, this.config.worker.id))) {
      // Finished already (a redelivered job) or cancelled while queued: nothing to do, nothing to write.
      const now = await this.store.getEvaluation(evaluationId);
      return { status: now?.status ?? evaluation.status, duplicate: true };
    }

    const abort = new AbortController();
    const onJobAbort = (): void => abort.abort(ctx.signal?.reason);
    if (ctx.signal?.aborted) onJobAbort();
    else ctx.signal?.addEventListener('abort', onJobAbort, { once: true });
    const poll = setInterval(() => {
      this.store
        .getEvaluation(evaluationId)
        .then((row) => {
          if (row?.cancelRequested && !abort.signal.aborted) abort.abort(CANCEL_REASON_USER);
        })
        .catch(() => undefined); // a missed poll is retried at the next tick
    }, this.config.worker.progressIntervalMs);
    poll.unref();

    try {
      const out = await runInThread<EvaluateInput, EvaluateResult, EvaluateMessage>(
        EVALUATE_TASK,
        {
          spec,
          mapsDir: spec.saveMaps > 0 ? path.join(this.artifacts.evaluationDir(evaluationId), 'maps') : null,
          progressIntervalMs: this.config.worker.progressIntervalMs,
        },
        { signal: abort.signal, cancelGraceMs: this.config.worker.cancelGraceMs, onMessage: (m) => this.onMessage(evaluationId, m, ctx) },
      );
      const first = await this.store.finishEvaluation(evaluationId, { result: out.summary, rows: out.rows, durationMs: out.durationMs });
      if (!first) this.log.warn(`evaluation ${evaluationId} had already finished; this attempt's result is discarded`);
      else this.log.log(`evaluation ${evaluationId} (${spec.protocol}) succeeded in ${out.durationMs} ms`);
      return { status: 'succeeded' };
    } catch (e) {
      if (e instanceof IceError && e.code === 'CANCELLED') {
        if (abort.signal.reason === CANCEL_REASON_SHUTDOWN) return this.handBack(evaluationId, ctx);
        await this.store.markEvaluationCancelled(evaluationId);
        this.log.log(`evaluation ${evaluationId} cancelled`);
        return { status: 'cancelled' };
      }
      const message = (e as Error).message;
      const retryable = isRetryable(e);
      const final = !retryable || ctx.job.attemptsMade + 1 >= (ctx.job.opts.attempts ?? 1);
      this.log.error(
        `evaluation ${evaluationId} attempt ${ctx.job.attemptsMade + 1} failed${final ? '' : ' (will be retried)'}: ${message}`,
      );
      await this.store.finishEvaluation(evaluationId, { error: message, final });
      throw retryable ? e : new UnrecoverableError(message);
    } finally {
      clearInterval(poll);
      ctx.signal?.removeEventListener('abort', onJobAbort);
    }
  }

  private async onMessage(evaluationId: string, m: EvaluateMessage, ctx: JobContext): Promise<void> {
    switch (m.kind) {
      case 'log':
        this.log.log(`evaluation ${evaluationId}: ${m.message}`);
        await ctx.job.log(m.message).catch(() => undefined);
        return;
      case 'progress':
        await this.store.recordEvaluationProgress(evaluationId, { done: m.done, total: m.total, at: new Date().toISOString() });
        await ctx.job.updateProgress({ done: m.done, total: m.total }).catch(() => undefined);
        return;
    }
  }

  /** The worker is shutting down: put the job back (without using up an attempt) to run elsewhere. */
  private async handBack(evaluationId: string, ctx: JobContext): Promise<never> {
    this.log.log(`evaluation ${evaluationId}: worker shutting down; handing the job back`);
    await this.store.finishEvaluation(evaluationId, {
      error: 'worker shut down; the evaluation runs again on another worker',
      final: false,
    });
    await ctx.job.moveToDelayed(Date.now() + 1000, ctx.token);
    throw new DelayedError();
  }
}
