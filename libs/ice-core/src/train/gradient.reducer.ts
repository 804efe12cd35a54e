import * as tf from '@tensorflow/tfjs-core';
import { IceError } from '../errors';

/**
 * Data-parallel gradient averaging: between `computeGradients` and `applyGradients` every rank
 * hands its (locally accumulated) gradient of an optimizer update to `allReduceMean` and gets the
 * mean over all ranks back. Implementations must return bit-identical tensors on every rank, so
 * that the weights of the ranks never drift apart; `meanInRankOrder` is the arithmetic that
 * guarantees it.
 */
export interface GradientReducer {
  readonly rank: number;
  readonly worldSize: number;
  /**
   * The mean of `grads` over all ranks for optimizer update `step` (new tensors, the caller
   * disposes them; `grads` is left alone). Rejects with RANK_TIMEOUT when a rank does not arrive in
   * time and with CANCELLED when `signal` aborts while waiting.
   */
  allReduceMean(step: number, grads: Map<string, tf.Tensor>, signal?: AbortSignal): Promise<Map<string, tf.Tensor>>;
  /**
   * Earlier steps this rank could also resume from (checkpoints it still holds). A rank that stops
   * between an update and its checkpoint leaves the group's checkpoints one apart; when the ranks
   * meet at different steps, the group agrees on the latest step every rank holds, and the first
   * allReduceMean of a rank ahead of it rejects with RANKS_APART (`details.resumeStep`): the rank
   * reloads that checkpoint and reduces again from there.
   */
  setResumableSteps?(steps: readonly number[]): void;
  close(): Promise<void>;
}

/** Names (sorted, so every rank lays its gradients out the same way) and shapes of a flattened gradient. */
export interface GradientLayout {
  names: string[];
  shapes: number[][];
  /** Float32 elements in all. */
  size: number;
}

/** All gradients as one float32 vector in name order, and the layout to undo it. */
export function flattenGradients(grads: Map<string, tf.Tensor>): { layout: GradientLayout; data: Float32Array } {
  const names = [...grads.keys()].sort();
  const shapes = names.map((n) => grads.get(n)!.shape.slice());
  const size = names.reduce((s, n) => s + grads.get(n)!.size, 0);
  const data = new Float32Array(size);
  let offset = 0;
  for (const n of names) {
    const g = grads.get(n)!;
    if (g.dtype !== 'float32') throw new IceError('INPUT_INVALID', `gradient ${n} is ${g.dtype}, expected float32`);
    data.set(g.dataSync(), offset);
    offset += g.size;
  }
  return { layout: { names, shapes, size }, data };
}

/** Tensors back from a flat vector (new tensors, the caller owns them). */
export function unflattenGradients(layout: GradientLayout, data: Float32Array): Map<string, tf.Tensor> {
  if (data.length !== layout.size)
    throw new IceError('INPUT_INVALID', `flat gradient has ${data.length} elements, its layout ${layout.size}`);
  const out = new Map<string, tf.Tensor>();
  let offset = 0;
  layout.names.forEach((n, i) => {
    const size = layout.shapes[i].reduce((a, b) => a * b, 1);
    out.set(n, tf.tensor(data.subarray(offset, offset + size), layout.shapes[i], 'float32'));
    offset += size;
  });
  return out;
}

/**
 * Σ_r parts[r] / worldSize in float32, summed in rank order: every rank runs exactly these
 * operations on exactly these bytes, so every rank gets the same bits (a sum in arrival order
 * would not: float addition is not associative).
 */
export function meanInRankOrder(parts: readonly Float32Array[]): Float32Array {
  if (parts.length === 0) throw new IceError('INPUT_INVALID', 'no gradients to average');
  const n = parts[0].length;
  const bad = parts.findIndex((p) => p.length !== n);
  if (bad >= 0)
    throw new IceError(
      'INPUT_INVALID',
      `rank ${bad} sent ${parts[bad].length} gradient elements, rank 0 ${n}: the ranks train different models`,
    );
  const acc = Float32Array.from(parts[0]);
  for (let r = 1; r < parts.length; r++) {
    const p = parts[r];
    for (let i = 0; i < n; i++) acc[i] += p[i];
  }
  const w = parts.length;
  for (let i = 0; i < n; i++) acc[i] /= w;
  return acc;
}
