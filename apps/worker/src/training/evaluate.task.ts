import { IceError, initBackend, loadCheckpoint, loadModel, type ExplainerName, type IceVit } from '@ice/core';
import { runEvaluation, type EvaluationOptions, type EvaluationRow } from '@ice/evaluation';
import { evaluateRun, openRunData, parseRunConfig } from '@ice/experiments';
import { defineThreadTask, parseEvaluationSpec, type EvaluationSpec, type MapProtocol } from '@ice/orchestration';

/** Runs in a worker thread: one evaluation (an accuracy check or a map protocol over several explainers). */
export interface EvaluateInput {
  spec: EvaluationSpec;
  /** Where saved maps go (the evaluation's artifact directory); null when none are asked for. */
  mapsDir: string | null;
  progressIntervalMs: number;
}

export type EvaluateMessage = { kind: 'progress'; done: number; total: number } | { kind: 'log'; message: string };

export interface EvaluateResult {
  /** The summary stored on the evaluation row (everything but the rows). */
  summary: Record<string, unknown>;
  rows: EvaluationRow[];
  durationMs: number;
}

/** The training library's check: top-1 of the CLS head and the ICE foreground fraction on the run's evaluation split. */
async function accuracy(spec: EvaluationSpec, post: (m: EvaluateMessage) => void, signal: AbortSignal): Promise<Record<string, unknown>> {
  const backend = await initBackend();
  let model: IceVit;
  try {
    const ck = loadCheckpoint(spec.checkpoint);
    ck.trainer.dispose();
    model = ck.model;
  } catch (e) {
    if (!(e instanceof IceError && e.code === 'CHECKPOINT_INVALID')) throw e;
    model = loadModel(spec.checkpoint, spec.model).model; // a plain weights file
  }
  try {
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

/** Spec → runEvaluation options; the tuning options pass through as named. */
export function evaluationOptions(spec: EvaluationSpec & { protocol: MapProtocol }, mapsDir: string | null): EvaluationOptions {
  return {
    ...spec.options,
    protocol: spec.protocol,
    format: spec.data.format as EvaluationOptions['format'], // imagenet (folders) is accuracy-only: the spec rules keep it out
    root: spec.data.root,
    split: spec.data.split,
    weights: spec.checkpoint,
    modelSpec: spec.model,
    methods: spec.methods as ExplainerName[], // checked against the explainer names by the spec rules
    limit: spec.data.limit,
    batchSize: spec.data.batchSize,
    saveMaps: spec.saveMaps > 0 && mapsDir ? { dir: mapsDir, count: spec.saveMaps } : undefined,
  };
}

export default defineThreadTask<EvaluateInput, EvaluateResult, EvaluateMessage>(async (input, ctx) => {
  const t0 = Date.now();
  // Validated by the handler; parsing again restores what structured cloning cannot be trusted with and costs nothing.
  const spec = parseEvaluationSpec(input.spec);
  if (spec.protocol === 'accuracy') {
    const summary = await accuracy(spec, (m) => ctx.post(m), ctx.signal);
    return { summary: { ...summary, durationMs: Date.now() - t0 }, rows: [], durationMs: Date.now() - t0 };
  }
  let last = 0;
  const { rows, ...summary } = await runEvaluation({
    ...evaluationOptions({ ...spec, protocol: spec.protocol }, input.mapsDir),
    signal: ctx.signal,
    // Throttled: the handler writes each report to PostgreSQL.
    onProgress: (done, total) => {
      const now = Date.now();
      if (done === total || done === 1 || now - last >= input.progressIntervalMs) {
        last = now;
        ctx.post({ kind: 'progress', done, total });
      }
    },
    log: (message) => ctx.post({ kind: 'log', message }),
  });
  return { summary: { ...summary }, rows, durationMs: Date.now() - t0 };
});
