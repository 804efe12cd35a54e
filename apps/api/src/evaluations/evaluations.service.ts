import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConflictException, Inject, Injectable, NotFoundException, StreamableFile } from '@nestjs/common';
import { EXPLAINERS, IceError, isExplainerName, isVitPreset } from '@ice/core';
import type { EvaluationSpec } from '@ice/evaluation';
import {
  ArtifactStore,
  assertExists,
  assertInsideRoots,
  EvaluationRepository,
  isTerminalRunStatus,
  JobQueue,
  ORCHESTRATION_CONFIG,
  RunRepository,
  type EvaluationEntity,
  type OrchestrationConfig,
  type RunEntity,
} from '@ice/orchestration';
import { parseRequest } from '../common/request-schemas';
import { EvaluationListQuery, parseEvaluationRequest, type EvaluationRequest } from './evaluation.request';
import { evaluationView } from './evaluation.views';

/** What the stored run config says about the model (read loosely: the run schema may have grown since). */
function runModel(run: RunEntity): { preset: string | null; iceHead: boolean } {
  const cfg = run.config.run as { mode?: unknown; model?: { preset?: unknown } };
  return { preset: typeof cfg.model?.preset === 'string' ? cfg.model.preset : null, iceHead: cfg.mode !== 'classify' };
}

/** The preset of the accuracy protocol's weights files when none is named (what it has always assumed). */
const ACCURACY_DEFAULT_MODEL = 'digits-micro';

@Injectable()
export class EvaluationsService {
  constructor(
    @Inject(ORCHESTRATION_CONFIG) private readonly config: OrchestrationConfig,
    private readonly evaluations: EvaluationRepository,
    private readonly runs: RunRepository,
    private readonly queue: JobQueue,
    private readonly artifacts: ArtifactStore,
  ) {}

  /** Validates the request (schema and rules once, then files and the run), stores the resolved spec and queues the job. */
  async submit(raw: unknown) {
    const spec = await this.resolve(parseEvaluationRequest(raw));
    const evaluation = await this.evaluations.create({ ...spec }, spec.runId, spec.protocol);
    try {
      await this.queue.enqueueEvaluation(evaluation.id, spec);
    } catch (e) {
      await this.evaluations.fail(evaluation.id, `could not be queued: ${(e as Error).message}`, true);
      throw e;
    }
    return evaluationView(evaluation, []);
  }

  private async resolve(req: EvaluationRequest): Promise<EvaluationSpec> {
    const fileRoots = [...this.config.dataRoots, this.artifacts.root];
    if (req.data.root) {
      assertInsideRoots('data.root', req.data.root, this.config.dataRoots);
      assertExists('data.root', req.data.root, 'dir');
    }
    let checkpoint: string;
    let model: string;
    if (req.runId) {
      const run = await this.runs.get(req.runId);
      if (!run) throw new IceError('INPUT_INVALID', `runId: run ${req.runId} does not exist`);
      if (run.status !== 'succeeded' || !run.checkpoint)
        throw new IceError('INPUT_INVALID', `runId: run ${req.runId} has not finished (${run.status}); evaluate a succeeded run`);
      const own = runModel(run);
      // Known now rather than after the worker has loaded the checkpoint: a classify run has no ICE head.
      req.methods.forEach((m, i) => {
        if (!own.iceHead && isExplainerName(m) && EXPLAINERS[m].needsIceHead) {
          throw new IceError(
            'INPUT_INVALID',
            `methods.${i}: '${m}' needs an ICE head, and run ${run.id} was trained in classify mode (no ICE head)`,
          );
        }
      });
      checkpoint = run.checkpoint;
      model = req.model ?? own.preset ?? ACCURACY_DEFAULT_MODEL;
    } else {
      // An artifact-relative name (what the API answers for a run's weights) stands for the artifact file.
      checkpoint = this.artifacts.resolveName(req.weights!);
      assertInsideRoots('weights', checkpoint, fileRoots);
      assertExists('weights', checkpoint, 'file');
      model = req.model ?? ACCURACY_DEFAULT_MODEL; // the map protocols require model with weights (schema)
    }
    if (!isVitPreset(model)) {
      if (!model.endsWith('.json'))
        throw new IceError('INPUT_INVALID', `model: '${model}' is neither a known preset nor a config .json file`);
      assertInsideRoots('model', model, fileRoots);
      assertExists('model', model, 'file');
    }
    // The request schema has applied the spec's rules; the resolved files complete it.
    return {
      protocol: req.protocol,
      data: req.data,
      methods: req.methods,
      checkpoint,
      model,
      runId: req.runId ?? null,
      saveMaps: req.saveMaps,
      options: req.options,
    };
  }

  async get(id: string) {
    const e = await this.require(id);
    return evaluationView(e, (await this.evaluations.results([id])).get(id) ?? []);
  }

  async list(rawQuery: unknown) {
    const q = parseRequest(EvaluationListQuery, rawQuery, 'query');
    const { items, total } = await this.evaluations.list(
      { status: q.status, protocol: q.protocol, runId: q.runId },
      { limit: q.limit, offset: q.offset },
    );
    const rows = await this.evaluations.results(items.map((e) => e.id));
    return { items: items.map((e) => evaluationView(e, rows.get(e.id) ?? [])), total, limit: q.limit, offset: q.offset };
  }

  /** A queued evaluation is cancelled at once; a running one is flagged and its worker stops it within a progress interval or so. */
  async cancel(id: string) {
    const before = await this.require(id);
    if (isTerminalRunStatus(before.status)) throw new ConflictException(`evaluation ${id} has already finished (${before.status})`);
    const e = (await this.evaluations.requestCancel(id))!;
    return evaluationView(e, []);
  }

  /** One saved PNG (an overlay or the contact sheet), by file name. */
  async mapFile(id: string, name: string): Promise<StreamableFile> {
    const e = await this.require(id);
    const saved = (e.result as { savedMaps?: { files?: string[]; contactSheet?: string } } | null)?.savedMaps;
    const files = [...(saved?.files ?? []), ...(saved?.contactSheet ? [saved.contactSheet] : [])];
    // Only files the evaluation itself recorded, and only inside its own directory.
    const file = files.find((f) => path.basename(f) === name);
    if (
      !file ||
      !this.artifacts.contains(file) ||
      !path.resolve(file).startsWith(this.artifacts.evaluationDir(id) + path.sep) ||
      !fs.existsSync(file)
    ) {
      throw new NotFoundException(`evaluation ${id} has no saved map ${name}`);
    }
    return new StreamableFile(fs.createReadStream(file), { type: 'image/png' });
  }

  private async require(id: string): Promise<EvaluationEntity> {
    const e = await this.evaluations.get(id);
    if (!e) throw new NotFoundException(`evaluation ${id} does not exist`);
    return e;
  }
}
