import * as tf from '@tensorflow/tfjs-core';
import { batchNCHW, type VisionDataset } from '@ice/datasets';
import { foregroundMask, ICE_LOSS_PRESETS, iceLoss, type IceLossVariant, IceVit, SegmentationAccumulator, upsampleMap } from '@ice/core';
import type { RunConfig } from './run-config';
import { loadSamples } from './run-data';

/** ICE class prediction of an image with no foreground patch: the ICE head names no class. */
export const NO_ICE_CLASS = -1;

/**
 * The ICE head's own classification of each image: argmax over the c image classes of Ŷ_b, the
 * foreground-pooled ICE logits exactly as the loss forms them (iceLoss's `yHat`; official variant:
 * Σ_{p∈F_b} z_bp / (|F_b|+1), paper variant: the mean over F_b, F_b = {p : argmax_k z_bpk ≠ c}).
 * The variants differ by a positive factor per image, so they give the same argmax; α, λ_class and
 * the gate do not enter Ŷ at all. The background channel c is left out of the argmax (the question
 * is which image class the head names; with F_b non-empty, Ŷ_b pools only patches whose own argmax
 * is an image class).
 *
 * An image with no foreground patch (F_b empty) has Ŷ_b = 0 in both variants, i.e. a tie over all
 * classes: it gets NO_ICE_CLASS (−1), which never equals a label, so `ice_top1` counts it as wrong
 * (the head made no class claim) rather than breaking the tie towards class 0.
 *
 * zIce: [B, N, c+1] raw ICE logits (background last), as the model's forward returns them.
 * Returns [B] int32 classes in 0..c−1, or NO_ICE_CLASS.
 */
export function iceClassPredictions(zIce: tf.Tensor3D, variant: IceLossVariant = 'official'): tf.Tensor1D {
  const [B, , K] = zIce.shape;
  return tf.tidy(() => {
    // The targets only enter the loss terms, not Ŷ or the mask: zeros will do.
    const { yHat, fCount } = iceLoss(zIce, tf.zeros([B, K - 1]), ICE_LOSS_PRESETS[variant]);
    const cls = tf.argMax<tf.Tensor1D>(tf.slice(yHat, [0, 0], [B, K - 1]), 1);
    return tf.where<tf.Tensor1D>(tf.greater(fCount, 0), cls, tf.fill([B], NO_ICE_CLASS, 'int32'));
  });
}

/**
 * Scores a trained model on the first `evalLimit` samples of the evaluation split: top-1 of the
 * CLS head and, for ICE models, the class-agnostic foreground mask (nearest-upsampled to the
 * image) against the ground-truth masks with the ImageNet-Segmentation protocol's pooled
 * pixel accuracy, IoUs and mAP, the ICE head's own top-1 (`ice_top1`, see iceClassPredictions)
 * and the share of images with no foreground patch (`ice_no_fg`, counted wrong in ice_top1).
 * The CLS head's `top1` says little after ICE fine-tuning: the released loss trains it with weight 0.
 */
export async function evaluateRun(model: IceVit, ds: VisionDataset, config: RunConfig, log: (m: string) => void = () => undefined): Promise<Record<string, number>> {
  const n = Math.min(config.data.evalLimit, ds.length);
  const B = Math.min(config.data.batchSize, 64);
  const seg = new SegmentationAccumulator();
  const hasIce = model.config.iceHead !== 'none';
  let correct = 0;
  let iceCorrect = 0;
  let noFg = 0;
  let fg = 0;
  let cells = 0;
  for (let start = 0; start < n; start += B) {
    const samples = await loadSamples(ds, Array.from({ length: Math.min(B, n - start) }, (_, i) => start + i));
    const batch = batchNCHW(samples, model.config.mean, model.config.std);
    const [H, W] = [batch.shape[2], batch.shape[3]];
    const [pred, masks, icePred] = tf.tidy((): [tf.Tensor, tf.Tensor, tf.Tensor] => {
      const out = model.forward(tf.tensor4d(batch.x, batch.shape));
      if (!out.zIce) return [tf.argMax(out.clsLogits, -1), tf.zeros([0]), tf.zeros([0])];
      return [tf.argMax(out.clsLogits, -1), upsampleMap(foregroundMask(out.zIce), [H, W], 'nearest'), iceClassPredictions(out.zIce, config.loss.variant)];
    });
    const predicted = await pred.data();
    const maskData = await masks.data();
    const icePredicted = await icePred.data();
    tf.dispose([pred, masks, icePred]);
    samples.forEach((s, i) => {
      correct += predicted[i] === batch.labels[i] ? 1 : 0;
      if (!hasIce) return;
      iceCorrect += icePredicted[i] === batch.labels[i] ? 1 : 0;
      noFg += icePredicted[i] === NO_ICE_CLASS ? 1 : 0;
      const map = maskData.subarray(i * H * W, (i + 1) * H * W);
      map.forEach((v) => (fg += v));
      cells += H * W;
      if (s.mask) seg.add(map, s.mask);
    });
  }
  const metrics: Record<string, number> = { top1: correct / n, eval_images: n };
  if (hasIce) {
    metrics.fg_fraction = fg / cells;
    metrics.ice_top1 = iceCorrect / n;
    metrics.ice_no_fg = noFg / n;
    const r = seg.result();
    if (r.images > 0) Object.assign(metrics, { pix_acc: r.pixAcc, iou_fg: r.iouFg, iou_bg: r.iouBg, miou: r.mIoU, map: r.mAP });
  }
  log(`evaluation on ${n} ${ds.name}/${ds.split} images: ${JSON.stringify(metrics)}`);
  return metrics;
}
