import { Inject, Injectable, NotFoundException } from '@nestjs/common';
import { IceError } from '@ice/core';
import { formatZodError } from '@ice/experiments';
import { ArtifactStore, assertInsideRoots, JobQueue, ORCHESTRATION_CONFIG, OrchestrationStore, type OrchestrationConfig } from '@ice/orchestration';
import { PageQuery, parseRequest } from '../common/request-schemas';
import { evaluationView } from '../runs/run.views';
import { EvaluationRequestSchema } from './evaluation.request';

@Injectable()
export class EvaluationsService {
  constructor(
    @Inject(ORCHESTRATION_CONFIG) private readonly config: OrchestrationConfig,
    private readonly store: OrchestrationStore,
    private readonly queue: JobQueue,
    private readonly artifacts: ArtifactStore,
  ) {}

  async submit(raw: unknown) {
    const r = EvaluationRequestSchema.safeParse(raw);
    if (!r.success) throw new IceError('CONFIG_INVALID', `invalid evaluation: ${formatZodError(r.error)}`);
    const req = r.data;
    if (req.data.root) assertInsideRoots('data.root', req.data.root, this.config.dataRoots);
    let checkpoint: string;
    if (req.runId) {
      const run = await this.store.getRun(req.runId);
      if (!run) throw new IceError('INPUT_INVALID', `runId: run ${req.runId} does not exist`);
      if (run.status !== 'succeeded' || !run.checkpoint) throw new IceError('INPUT_INVALID', `runId: run ${req.runId} has not finished (${run.status}); evaluate a succeeded run`);
      checkpoint = run.checkpoint;
    } else {
      assertInsideRoots('weights', req.weights!, [...this.config.dataRoots, this.artifacts.root]);
      checkpoint = req.weights!;
    }
    const evaluation = await this.store.createEvaluation({ ...req, checkpoint }, req.runId ?? null);
    try {
      await this.queue.enqueueEvaluation(evaluation.id);
    } catch (e) {
      await this.store.finishEvaluation(evaluation.id, { error: `could not be queued: ${(e as Error).message}`, final: true });
      throw e;
    }
    return evaluationView(evaluation);
  }

  async get(id: string) {
    const e = await this.store.getEvaluation(id);
    if (!e) throw new NotFoundException(`evaluation ${id} does not exist`);
    return evaluationView(e);
  }

  async list(rawQuery: unknown) {
    const q = parseRequest(PageQuery, rawQuery, 'query');
    const { items, total } = await this.store.listEvaluations(q);
    return { items: items.map(evaluationView), total, limit: q.limit, offset: q.offset };
  }
}
