import * as tf from '@tensorflow/tfjs-core';
import { batchNCHW, type VisionDataset } from '@ice/datasets';
import { foregroundMask, iceClassPredictions, IceVit, NO_ICE_CLASS, SegmentationAccumulator, upsampleMap } from '@ice/core';
import type { RunConfig } from './run.contract';
import { loadSamples } from './run-data';

/**
 * The metrics a finished run reports (evaluateRun), by name: what a table can show. The run also
 * records `eval_images`, the number of images scored, which is a count and not a metric.
 */
export const RUN_METRICS = [
  'top1',
  'ice_top1',
  'ice_no_fg',
  'ice_const_maps',
  'fg_fraction',
  'pix_acc',
  'iou_fg',
  'iou_bg',
  'miou',
  'map',
] as const;
export type RunMetric = (typeof RUN_METRICS)[number];

export function isRunMetric(name: string): name is RunMetric {
  return (RUN_METRICS as readonly string[]).includes(name);
}

/**
 * Scores a trained model on the first `evalLimit` samples of the evaluation split: top-1 of the
 * CLS head and, for ICE models, the class-agnostic foreground mask (nearest-upsampled to the
 * image) against the ground-truth masks with the ImageNet-Segmentation protocol's pooled
 * pixel accuracy, IoUs and mAP, the ICE head's own top-1 (`ice_top1`, see iceClassPredictions)
 * and the share of images with no foreground patch (`ice_no_fg`, counted wrong in ice_top1), and
 * the share of images whose map is constant (`ice_const_maps`: all foreground or all background,
 * which the segmentation protocol scores as all background; see runDegeneracy).
 * The CLS head's `top1` says little after ICE fine-tuning: the released loss trains it with weight 0.
 */
export async function evaluateRun(
  model: IceVit,
  ds: VisionDataset,
  config: RunConfig,
  log: (m: string) => void = () => undefined,
): Promise<Record<string, number>> {
  const n = Math.min(config.data.evalLimit, ds.length);
  const B = Math.min(config.data.batchSize, 64);
  const seg = new SegmentationAccumulator();
  const hasIce = model.config.iceHead !== 'none';
  let correct = 0;
  let iceCorrect = 0;
  let noFg = 0;
  let fg = 0;
  let cells = 0;
  let constMaps = 0;
  for (let start = 0; start < n; start += B) {
    const samples = await loadSamples(
      ds,
      Array.from({ length: Math.min(B, n - start) }, (_, i) => start + i),
    );
    const batch = batchNCHW(samples, model.config.mean, model.config.std);
    const [H, W] = [batch.shape[2], batch.shape[3]];
    const [pred, masks, icePred] = tf.tidy((): [tf.Tensor, tf.Tensor, tf.Tensor] => {
      const out = model.forward(tf.tensor4d(batch.x, batch.shape));
      if (!out.zIce) return [tf.argMax(out.clsLogits, -1), tf.zeros([0]), tf.zeros([0])];
      return [
        tf.argMax(out.clsLogits, -1),
        upsampleMap(foregroundMask(out.zIce), [H, W], 'nearest'),
        iceClassPredictions(out.zIce, config.loss.variant),
      ];
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
      let imageFg = 0;
      map.forEach((v) => (imageFg += v));
      fg += imageFg;
      cells += H * W;
      if (imageFg === 0 || imageFg === H * W) constMaps++;
      if (s.mask) seg.add(map, s.mask);
    });
  }
  const metrics: Record<string, number> = { top1: correct / n, eval_images: n };
  if (hasIce) {
    metrics.fg_fraction = fg / cells;
    metrics.ice_top1 = iceCorrect / n;
    metrics.ice_no_fg = noFg / n;
    metrics.ice_const_maps = constMaps / n;
    const r = seg.result();
    if (r.images > 0) Object.assign(metrics, { pix_acc: r.pixAcc, iou_fg: r.iouFg, iou_bg: r.iouBg, miou: r.mIoU, map: r.mAP });
  }
  log(`evaluation on ${n} ${ds.name}/${ds.split} images: ${JSON.stringify(metrics)}`);
  return metrics;
}
