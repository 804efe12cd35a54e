import * as path from 'node:path';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { UnrecoverableError } from 'bullmq';
import { IceError } from '@ice/core';
import { parseEvaluationSpec, type EvaluationSpec } from '@ice/evaluation';
import {
  ArtifactStore,
  CANCEL_REASON_SHUTDOWN,
  CANCEL_REASON_USER,
  EvaluationRepository,
  HandlesJob,
  ORCHESTRATION_CONFIG,
  retryWrite,
  runInThread,
  type EvaluationEntity,
  type JobContext,
  type JobHandler,
  type JobPayload,
  type OrchestrationConfig,
  type RunStatus,
} from '@ice/orchestration';
import { EVALUATE_TASK } from '../training/task-files';
import type { EvaluateInput, EvaluateMessage, EvaluateResult } from '../training/evaluate.task';
import { attemptAbort, attemptFailure, handBackJob } from './job-attempt';

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
    private readonly evaluations: EvaluationRepository,
    private readonly artifacts: ArtifactStore,
  ) {}

  /** The payload's spec was parsed by the job registry; jobs queued before it travelled there read it from their row. */
  async handle({ evaluationId, spec: payloadSpec }: JobPayload<'evaluation.run'>, ctx: JobContext): Promise<EvaluationOutcome> {
    const evaluation = await this.evaluations.get(evaluationId);
    if (!evaluation) throw new UnrecoverableError(`evaluation ${evaluationId} does not exist`);
    const spec = payloadSpec ?? (await this.rowSpec(evaluation));
    if (!(await this.evaluations.start(evaluationId, this.config.worker.id))) {
      // Finished already (a redelivered job) or cancelled while queued: nothing to do, nothing to write.
      const now = await this.evaluations.get(evaluationId);
      return { status: now?.status ?? evaluation.status, duplicate: true };
    }
    const { abort, release } = attemptAbort(ctx);
    const poll = this.watchCancel(evaluationId, abort);
    try {
      const out = await this.evaluate(evaluationId, spec, abort, ctx);
      // A database that is away holds the job (its lock renewed) rather than throwing the scores away with an attempt.
      const first = await retryWrite(
        () => this.evaluations.finish(evaluationId, { result: out.summary, rows: out.rows, durationMs: out.durationMs }),
        {
          horizonMs: this.config.worker.outcomeWriteHorizonMs,
          onRetry: ({ attempt, error }) => {
            if (attempt === 1)
              this.log.warn(`evaluation ${evaluationId}: the database is unreachable (${error.message}); retrying with backoff`);
          },
        },
      );
      if (!first) this.log.warn(`evaluation ${evaluationId} had already finished; this attempt's result is discarded`);
      else this.log.log(`evaluation ${evaluationId} (${spec.protocol}) succeeded in ${out.durationMs} ms`);
      return { status: 'succeeded' };
    } catch (e) {
      return await this.settle(evaluationId, e, abort, ctx);
    } finally {
      clearInterval(poll);
      release();
    }
  }

  /** A payload that does not parse fails the evaluation it names (if it names one) for good. */
  async rejectPayload(raw: unknown, error: IceError): Promise<void> {
    const id = (raw as { evaluationId?: unknown } | null)?.evaluationId;
    if (typeof id === 'string' && /^[0-9a-f-]{36}$/.test(id)) await this.evaluations.fail(id, error.message, true);
  }

  /** The spec stored on the row (untrusted JSON by now): parsed, or the evaluation fails for good. */
  private async rowSpec(evaluation: EvaluationEntity): Promise<EvaluationSpec> {
    try {
      return parseEvaluationSpec(evaluation.spec);
    } catch (e) {
      await this.evaluations.fail(evaluation.id, (e as Error).message, true);
      throw new UnrecoverableError((e as Error).message);
    }
  }

  private evaluate(evaluationId: string, spec: EvaluationSpec, abort: AbortController, ctx: JobContext): Promise<EvaluateResult> {
    const input: EvaluateInput = {
      spec,
      mapsDir: spec.saveMaps > 0 ? path.join(this.artifacts.evaluationDir(evaluationId), 'maps') : null,
      progressIntervalMs: this.config.worker.progressIntervalMs,
    };
    return runInThread<EvaluateInput, EvaluateResult, EvaluateMessage>(EVALUATE_TASK, input, {
      signal: abort.signal,
      cancelGraceMs: this.config.worker.cancelGraceMs,
      onMessage: (m) => this.onMessage(evaluationId, m, ctx),
    });
  }

  /** Polls the row's cancel flag every progress interval. */
  private watchCancel(evaluationId: string, abort: AbortController): NodeJS.Timeout {
    const poll = setInterval(() => {
      this.evaluations
        .get(evaluationId)
        .then((row) => {
          if (row?.cancelRequested && !abort.signal.aborted) abort.abort(CANCEL_REASON_USER);
        })
        .catch(() => undefined); // a missed poll is retried at the next tick
    }, this.config.worker.progressIntervalMs);
    poll.unref();
    return poll;
  }

  /** The attempt's error: a cancel (by the user or a shutdown), or a failure retried by BullMQ or final. */
  private async settle(evaluationId: string, e: unknown, abort: AbortController, ctx: JobContext): Promise<EvaluationOutcome> {
    if (e instanceof IceError && e.code === 'CANCELLED') {
      if (abort.signal.reason === CANCEL_REASON_SHUTDOWN) return this.handBack(evaluationId, ctx);
      await this.evaluations.markCancelled(evaluationId);
      this.log.log(`evaluation ${evaluationId} cancelled`);
      return { status: 'cancelled' };
    }
    const f = attemptFailure(e, ctx);
    this.log.error(`evaluation ${evaluationId} attempt ${f.attempt} failed${f.final ? '' : ' (will be retried)'}: ${f.message}`);
    await this.evaluations.fail(evaluationId, f.message, f.final);
    throw f.retryable ? e : new UnrecoverableError(f.message);
  }

  private async onMessage(evaluationId: string, m: EvaluateMessage, ctx: JobContext): Promise<void> {
    switch (m.kind) {
      case 'log':
        this.log.log(`evaluation ${evaluationId}: ${m.message}`);
        await ctx.job.log(m.message).catch(() => undefined);
        return;
      case 'progress':
        await this.evaluations.recordProgress(evaluationId, { done: m.done, total: m.total, at: new Date().toISOString() });
        await ctx.job.updateProgress({ done: m.done, total: m.total }).catch(() => undefined);
        return;
    }
  }

  /** The worker is shutting down: put the job back (without using up an attempt) to run elsewhere. */
  private async handBack(evaluationId: string, ctx: JobContext): Promise<never> {
    this.log.log(`evaluation ${evaluationId}: worker shutting down; handing the job back`);
    await this.evaluations.fail(evaluationId, 'worker shut down; the evaluation runs again on another worker', false);
    return handBackJob(ctx);
  }
}
