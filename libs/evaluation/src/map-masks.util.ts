/**
 * From a continuous patch-grid map to a foreground mask, for the protocols that need a mask
 * (VOC Jaccard, CorLoc). ICE's map is already a 0/1 mask.
 */
import { attentionMassKeep, type ExplainerName } from '@ice/core';
import type { MaskRule } from './evaluation.types';

/** Methods whose map is a categorical 0/1 mask: nearest upsampling, never thresholded. */
export function isMaskMethod(method: ExplainerName): boolean {
  return method === 'ice';
}

/** (v − min)/(max − min); a constant map becomes zeros. */
export function minMax(values: ArrayLike<number>): Float64Array {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    lo = Math.min(lo, values[i]);
    hi = Math.max(hi, values[i]);
  }
  const out = new Float64Array(values.length);
  if (!(hi > lo)) return out;
  for (let i = 0; i < values.length; i++) out[i] = (values[i] - lo) / (hi - lo);
  return out;
}

/**
 * The values the attention-mass threshold sees: GradCAM min-maxed (Chefer's attn_gradcam returns it
 * min-maxed) and ICE's class score min-maxed (raw logits may be negative, and mass needs
 * non-negative values); raw attention, rollout, the generic rule, transformer attribution and partial LRP
 * as they come (non-negative: products of non-negative matrices, or clamped at 0).
 */
export function massValues(method: ExplainerName, grid: ArrayLike<number>): ArrayLike<number> {
  return method === 'gradcam' || method === 'ice-class' ? minMax(grid) : grid;
}

export const MASS_VALUES_RULE =
  'maps thresholded by attention mass: GradCAM and ICE class scores min-max normalised first (logits can be ' +
  'negative), raw attention, rollout, generic attention, transformer attribution and partial LRP as computed (non-negative)';

/**
 * Foreground of a map: 'mass' keeps the smallest set of highest patches holding ≥ τ of the mass
 * (DINO/Intriguing's rule; a map of zero mass keeps nothing); 'mean' min-max normalises and keeps
 * values > the mean (Chefer's segmentation threshold; a constant map keeps nothing).
 */
export function mapMask(method: ExplainerName, grid: ArrayLike<number>, rule: MaskRule, tau: number): Uint8Array {
  if (isMaskMethod(method)) return Uint8Array.from(grid, (v) => (v > 0.5 ? 1 : 0));
  if (rule === 'mass') return attentionMassKeep(massValues(method, grid), tau);
  const n = minMax(grid);
  let sum = 0;
  for (const v of n) sum += v;
  const mean = sum / n.length;
  return Uint8Array.from(n, (v) => (v > mean ? 1 : 0));
}
