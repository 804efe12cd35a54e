/** Runs in a worker thread: one evaluation (an accuracy check or a map protocol over several explainers). */
import { z } from 'zod';
import { IceError, initBackend, loadCheckpoint, loadModel, parseInput, type IceVit } from '@ice/core';
import {
  evaluationOptions,
  EvaluationSpecSchema,
  isMapEvaluationSpec,
  runAccuracy,
  runEvaluation,
  type EvaluationRow,
  type EvaluationSpec,
} from '@ice/evaluation';
import { evaluateRun, openRunData, parseRunConfig } from '@ice/experiments';
import { defineThreadTask } from '@ice/orchestration';

/** What the handler hands the thread; parsed once on arrival (the thread's boundary), the spec with it. */
const EvaluateInputSchema = z
  .object({
    spec: EvaluationSpecSchema,
    /** Where saved maps go (the evaluation's artifact directory); null when none are asked for. */
    mapsDir: z.string().min(1).nullable(),
    progressIntervalMs: z.number().int().min(0),
  })
  .strict();

export type EvaluateInput = z.input<typeof EvaluateInputSchema>;
export type EvaluateMessage = { kind: 'progress'; done: number; total: number } | { kind: 'log'; message: string };

export interface EvaluateResult {
  /** The summary stored on the evaluation row (everything but the rows). */
  summary: Record<string, unknown>;
  rows: EvaluationRow[];
  durationMs: number;
}

/** The weights of a project checkpoint (its optimizer state dropped) or of a plain weights file loaded with the spec's model. */
function loadWeights(spec: EvaluationSpec): IceVit {
  try {
    const ck = loadCheckpoint(spec.checkpoint);
    ck.trainer.dispose();
    return ck.model;
  } catch (e) {
    if (!(e instanceof IceError && e.code === 'CHECKPOINT_INVALID')) throw e;
    return loadModel(spec.checkpoint, spec.model).model;
  }
}

/**
 * The training library's check: top-1 of the CLS head and the ICE foreground fraction on the run's
 * evaluation split; with token pruning (the paper's Table 5), the evaluation library's runAccuracy
 * on the same split (digits test, seed 0, the model's size), which also gives images/s and the
 * surviving token counts.
 */
async function accuracy(spec: EvaluationSpec, post: (m: EvaluateMessage) => void, signal: AbortSignal): Promise<Record<string, unknown>> {
  const backend = await initBackend();
  const model = loadWeights(spec);
  try {
    const prune = spec.options.prune;
    if (prune) {
      if (spec.data.format !== 'digits' && spec.data.format !== 'imagenet')
        throw new IceError('CONFIG_INVALID', `token pruning is scored on digits or imagenet, not ${spec.data.format}`);
      const r = await runAccuracy({
        model,
        format: spec.data.format,
        root: spec.data.root,
        limit: spec.data.limit,
        batchSize: spec.data.batchSize ?? 32,
        prune,
        signal,
        log: (message) => post({ kind: 'log', message }),
      });
      return {
        protocol: 'accuracy',
        metrics: r.metrics,
        prune: r.prune,
        tokens: r.tokens,
        imagesPerSecond: r.imagesPerSecond,
        conventions: r.conventions,
        backend: backend.name,
      };
    }
    const config = parseRunConfig({
      data: {
        format: spec.data.format,
        root: spec.data.root,
        evalLimit: spec.data.limit,
        batchSize: Math.max(2, spec.data.batchSize ?? 32),
      },
    });
    const { evaluation } = openRunData(config, model.config.imgSize);
    if (signal.aborted) throw new IceError('CANCELLED', 'evaluation cancelled');
    const metrics = await evaluateRun(model, evaluation, config, (message) => post({ kind: 'log', message }));
    return { protocol: 'accuracy', metrics, backend: backend.name };
  } finally {
    model.dispose();
  }
}

export default defineThreadTask<z.output<typeof EvaluateInputSchema>, EvaluateResult, EvaluateMessage>(
  async ({ spec, mapsDir, progressIntervalMs }, ctx) => {
    const t0 = Date.now();
    if (!isMapEvaluationSpec(spec)) {
      const summary = await accuracy(spec, (m) => ctx.post(m), ctx.signal);
      return { summary: { ...summary, durationMs: Date.now() - t0 }, rows: [], durationMs: Date.now() - t0 };
    }
    let last = 0;
    const { rows, ...summary } = await runEvaluation({
      ...evaluationOptions(spec, mapsDir),
      signal: ctx.signal,
      // Throttled: the handler writes each report to PostgreSQL.
      onProgress: (done, total) => {
        const now = Date.now();
        if (done === total || done === 1 || now - last >= progressIntervalMs) {
          last = now;
          ctx.post({ kind: 'progress', done, total });
        }
      },
      log: (message) => ctx.post({ kind: 'log', message }),
    });
    return { summary: { ...summary }, rows, durationMs: Date.now() - t0 };
  },
  (raw) => parseInput(EvaluateInputSchema, raw, 'INPUT_INVALID', 'evaluation thread input'),
);
