import { IceError, initBackend, loadCheckpoint, loadModel, type IceVit } from '@ice/core';
import { evaluateRun, openRunData, parseRunConfig } from '@ice/experiments';
import { defineThreadTask } from '@ice/orchestration';

/** Runs in a worker thread: scores a checkpoint (or a weights file) on a data set's evaluation split. */
export interface EvaluateInput {
  checkpoint: string;
  /** Model preset for weights files that do not describe their own architecture. */
  preset: string;
  data: { format: string; root?: string; limit: number; batchSize: number };
}

export type EvaluateResult = { metrics: Record<string, number>; backend: string; durationMs: number };

export default defineThreadTask<EvaluateInput, EvaluateResult, { message: string }>(async (input, ctx) => {
  const t0 = Date.now();
  const backend = await initBackend();
  let model: IceVit;
  try {
    const ck = loadCheckpoint(input.checkpoint);
    ck.trainer.dispose();
    model = ck.model;
  } catch (e) {
    if (!(e instanceof IceError && e.code === 'CHECKPOINT_INVALID')) throw e;
    model = loadModel(input.checkpoint, input.preset).model; // a plain weights file
  }
  try {
    const config = parseRunConfig({ data: { format: input.data.format, root: input.data.root, evalLimit: input.data.limit, batchSize: Math.max(2, input.data.batchSize) } });
    const { evaluation } = openRunData(config, model.config.imgSize);
    if (ctx.signal.aborted) throw new IceError('CANCELLED', 'evaluation cancelled');
    const metrics = await evaluateRun(model, evaluation, config, (message) => ctx.post({ message }));
    return { metrics, backend: backend.name, durationMs: Date.now() - t0 };
  } finally {
    model.dispose();
  }
});
