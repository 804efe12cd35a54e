import { Inject, Injectable, Logger } from '@nestjs/common';
import { UnrecoverableError } from 'bullmq';
import { HandlesJob, ORCHESTRATION_CONFIG, OrchestrationStore, runInThread, type JobContext, type JobHandler, type JobPayload, type OrchestrationConfig } from '@ice/orchestration';
import { EVALUATE_TASK } from '../training/task-files';
import type { EvaluateInput, EvaluateResult } from '../training/evaluate.task';
import { isRetryable } from './retry-policy';

/** Scores a checkpoint in a worker thread and stores the metrics on the evaluation row. */
@Injectable()
@HandlesJob('evaluation.run')
export class EvaluationHandler implements JobHandler<'evaluation.run'> {
  private readonly log = new Logger('evaluation.run');

  constructor(
    @Inject(ORCHESTRATION_CONFIG) private readonly config: OrchestrationConfig,
    private readonly store: OrchestrationStore,
  ) {}

  async handle({ evaluationId }: JobPayload<'evaluation.run'>, ctx: JobContext): Promise<{ status: string }> {
    const evaluation = await this.store.getEvaluation(evaluationId);
    if (!evaluation) throw new UnrecoverableError(`evaluation ${evaluationId} does not exist`);
    if (!(await this.store.startEvaluation(evaluationId))) return { status: evaluation.status };
    const spec = evaluation.spec as { checkpoint: string; preset?: string; data: EvaluateInput['data'] };
    try {
      const result = await runInThread<EvaluateInput, EvaluateResult, { message: string }>(
        EVALUATE_TASK,
        { checkpoint: spec.checkpoint, preset: spec.preset ?? 'digits-micro', data: spec.data },
        { signal: ctx.signal, cancelGraceMs: this.config.worker.cancelGraceMs, onMessage: (m) => this.log.log(`evaluation ${evaluationId}: ${m.message}`) },
      );
      await this.store.finishEvaluation(evaluationId, { result: { ...result } });
      return { status: 'succeeded' };
    } catch (e) {
      const final = !isRetryable(e) || ctx.job.attemptsMade + 1 >= (ctx.job.opts.attempts ?? 1);
      await this.store.finishEvaluation(evaluationId, { error: (e as Error).message, final });
      throw isRetryable(e) ? e : new UnrecoverableError((e as Error).message);
    }
  }
}
