import * as tf from '@tensorflow/tfjs-core';
import {
  iceClassPredictions,
  IceError,
  type IceVit,
  initBackend,
  loadModel,
  NO_ICE_CLASS,
  type PruneOptions,
  prunedTokenCounts,
  resolvePruneOptions,
  type ResolvedPruneOptions,
  type VitConfig,
} from '@ice/core';
import {
  type AugSample,
  batchNCHW,
  centerCropSample,
  DigitsDataset,
  openDataset,
  resizeSample,
  shorterSideSize,
  type VisionDataset,
  type VisionSample,
} from '@ice/datasets';

/**
 * `ice eval accuracy`: top-1 classification accuracy of one checkpoint, optionally with token
 * pruning (ICE or EViT ranking, the paper's Table 5), and the forward pass's images/s.
 *
 * - top1: the CLS head's argmax = label, as the training library's evaluateRun and EViT's evaluate
 *   score it (Table 5's accuracy);
 * - ice_top1 (ICE models): the ICE head's own prediction (iceClassPredictions, Ŷ pooled over the
 *   foreground patches) = label; with pruning it sees only the surviving tokens; ice_no_fg: the
 *   share of images with no foreground patch (counted wrong in ice_top1).
 */
export const ACCURACY_FORMATS = ['digits', 'imagenet'] as const;
export type AccuracyFormat = (typeof ACCURACY_FORMATS)[number];

/** DeiT's evaluation crop: resize the shorter side to S / 0.875, centre crop S (timm's crop_pct 0.875). */
const CROP_PCT = 0.875;

export interface AccuracyOptions {
  /** Default 'digits'. */
  format?: AccuracyFormat;
  /** ImageNet class-folder root (`<root>/<split>/<wnid>/*`). */
  root?: string;
  /** Default: digits 'test', imagenet 'val'. */
  split?: string;
  /** An already opened data set of S×S images (used as they are). */
  dataset?: VisionDataset;
  /** Weights file, loaded with `modelSpec`. */
  weights?: string;
  modelSpec?: string;
  /** An already loaded model (instead of weights). */
  model?: IceVit;
  limit?: number;
  /** Images per forward pass (default 32). */
  batchSize?: number;
  /** Token pruning (an inference mode of the model); none by default. */
  prune?: PruneOptions;
  /** Digits only: the generated set's seed (default 0). */
  digitsSeed?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  log?: (message: string) => void;
}

export interface AccuracyResult {
  protocol: 'accuracy';
  format: AccuracyFormat | 'custom';
  dataset: { name: string; split: string; images: number };
  model: {
    spec: string | null;
    weights: string | null;
    iceHead: string;
    imgSize: number;
    patchSize: number;
    depth: number;
    numClasses: number;
  };
  backend: string;
  /** The pruning in force, defaults resolved (null: none). */
  prune: ResolvedPruneOptions | null;
  /** Non-CLS tokens after each block. */
  tokens: number[];
  metrics: { top1: number; ice_top1?: number; ice_no_fg?: number };
  images: number;
  /** Images ÷ seconds in the forward pass and the read-back of the predictions. */
  imagesPerSecond: number;
  seconds: number;
  conventions: string[];
}

function checkOptions(o: AccuracyOptions): void {
  const format = o.format ?? 'digits';
  if (!o.dataset && !ACCURACY_FORMATS.includes(format))
    throw new IceError('CONFIG_INVALID', `accuracy reads ${ACCURACY_FORMATS.join(', ')}; got format '${String(format)}'`);
  if (!o.dataset && format === 'imagenet' && !o.root) throw new IceError('CONFIG_INVALID', 'the imagenet format needs a root path');
  if (!o.model && !o.weights) throw new IceError('CONFIG_INVALID', 'give weights (with modelSpec) or a loaded model');
  if (!o.model && !o.modelSpec) throw new IceError('CONFIG_INVALID', 'weights need a modelSpec (a preset name or a config.json)');
  if (o.limit !== undefined && !(Number.isInteger(o.limit) && o.limit > 0))
    throw new IceError('CONFIG_INVALID', `limit must be a positive integer, got ${o.limit}`);
  if (o.batchSize !== undefined && !(Number.isInteger(o.batchSize) && o.batchSize > 0 && o.batchSize <= 256))
    throw new IceError('CONFIG_INVALID', `batchSize must be an integer in 1..256, got ${o.batchSize}`);
}

/** ImageNet validation preprocessing: shorter side to ⌊S/0.875⌋ (bicubic), centre crop S×S. */
function centerCropped(s: VisionSample, size: number): VisionSample {
  const [h, w] = shorterSideSize(s.height, s.width, Math.floor(size / CROP_PCT));
  const aug: AugSample = centerCropSample(resizeSample({ image: s.image, height: s.height, width: s.width }, h, w, 'bicubic'), size, size);
  return { ...s, image: aug.image, height: size, width: size };
}

export async function runAccuracy(o: AccuracyOptions): Promise<AccuracyResult> {
  checkOptions(o);
  const log = o.log ?? ((): void => undefined);
  const backend = await initBackend(undefined, log);
  const format: AccuracyFormat | 'custom' = o.dataset ? 'custom' : (o.format ?? 'digits');
  let model: IceVit;
  let own = false;
  if (o.model) model = o.model;
  else {
    model = loadModel(o.weights!, o.modelSpec!, {}, { ignore: ['optimizer.*'] }).model;
    own = true;
  }
  let close = (): Promise<void> => Promise.resolve();
  try {
    const config: VitConfig = model.config;
    const prune = o.prune ? resolvePruneOptions(o.prune, config) : null;
    const S = config.imgSize;
    let ds: VisionDataset;
    let split: string;
    if (o.dataset) {
      ds = o.dataset;
      split = ds.split;
    } else if (format === 'digits') {
      split = o.split ?? 'test';
      if (split !== 'train' && split !== 'val' && split !== 'test')
        throw new IceError('CONFIG_INVALID', `digits splits are train, val and test; got '${split}'`);
      ds = new DigitsDataset({ split, canvasSize: S, seed: o.digitsSeed ?? 0 });
    } else {
      split = o.split ?? 'val';
      const fds = await openDataset('imagenet', o.root!, split);
      ds = fds;
      close = () => fds.close();
    }
    if (ds.classes.length > 0 && ds.classes.length !== config.numClasses) {
      throw new IceError(
        'CONFIG_INVALID',
        `the data set has ${ds.classes.length} classes and the model's CLS head ${config.numClasses}: labels would not match`,
      );
    }
    const n = Math.min(o.limit ?? ds.length, ds.length);
    if (n === 0) throw new IceError('INPUT_INVALID', `the data set ${ds.name}/${split} has no images`);
    const B = Math.min(o.batchSize ?? 32, n);
    const hasIce = config.iceHead !== 'none';
    let correct = 0;
    let iceCorrect = 0;
    let noFg = 0;
    let seconds = 0;
    let warm = false;
    for (let start = 0; start < n; start += B) {
      if (o.signal?.aborted) throw new IceError('CANCELLED', `accuracy cancelled after ${start} of ${n} images`);
      const samples: VisionSample[] = [];
      for (let i = start; i < Math.min(start + B, n); i++) {
        const s = await ds.get(i);
        samples.push(format === 'imagenet' ? centerCropped(s, S) : s);
      }
      const batch = batchNCHW(samples, config.mean, config.std);
      const x = tf.tensor4d(batch.x, batch.shape);
      const pass = (): [Int32Array, Int32Array | undefined] =>
        tf.tidy(() => {
          const out = model.forward(x, prune ? { prune } : {});
          const cls = tf.argMax(out.clsLogits, -1).dataSync<'int32'>();
          return [cls, out.zIce ? iceClassPredictions(out.zIce).dataSync<'int32'>() : undefined];
        });
      try {
        if (!warm) pass(); // the first call at a batch shape compiles and allocates: untimed
        warm = true;
        const t0 = performance.now();
        const [cls, ice] = pass();
        seconds += (performance.now() - t0) / 1000;
        batch.labels.forEach((label, b) => {
          correct += cls[b] === label ? 1 : 0;
          if (ice) {
            iceCorrect += ice[b] === label ? 1 : 0;
            noFg += ice[b] === NO_ICE_CLASS ? 1 : 0;
          }
        });
      } finally {
        x.dispose();
      }
      o.onProgress?.(start + samples.length, n);
    }
    const metrics: AccuracyResult['metrics'] = { top1: correct / n };
    if (hasIce) Object.assign(metrics, { ice_top1: iceCorrect / n, ice_no_fg: noFg / n });
    const patches = (S / config.patchSize) ** 2;
    const tokens = prune ? prunedTokenCounts(patches, config.depth, prune) : new Array<number>(config.depth).fill(patches);
    const conventions = [
      `model: ${o.modelSpec ?? 'given instance'} (${config.iceHead === 'none' ? 'no' : `'${config.iceHead}'`} ICE head), input ${S}×${S}, ${config.patchSize}×${config.patchSize} patches, depth ${config.depth}, ${config.numClasses} classes; tfjs backend ${backend.name}`,
      format === 'imagenet'
        ? `ImageNet ${split}: shorter side resized to ${Math.floor(S / CROP_PCT)} (bicubic), centre crop ${S}×${S} (DeiT's evaluation, crop_pct ${CROP_PCT}); normalised with the model's mean/std`
        : `${ds.name} ${split}: images as the data set gives them at ${S}×${S}, normalised with the model's mean/std`,
      hasIce
        ? "top1 = the CLS head's argmax equals the label; ice_top1 = the ICE head's own prediction (Ŷ pooled over its foreground patches; none → wrong), ice_no_fg = images without a foreground patch"
        : "top1 = the CLS head's argmax equals the label",
      prune
        ? `token pruning (${prune.mode}, inference only, no fine-tuning with it): keep rate ${prune.keepRate} at blocks ${prune.locations.map((l) => l + 1).join(', ')} (1-based), after each block's attention; ranking ${prune.mode === 'ice' ? "by the ICE head's margin (max class logit − background logit) on the block's tokens" : 'by the mean over heads of the CLS attention (EViT)'}; dropped tokens ${prune.fuse ? 'fused into one token (CLS-attention-weighted sum, EViT)' : 'discarded'}; non-CLS tokens after each block ${tokens.join(', ')}`
        : 'no token pruning',
      `batches of ${B}; images/s = images ÷ time in the forward pass and the read-back of the predictions, after one untimed warm-up pass`,
    ];
    log(`accuracy on ${n} ${ds.name}/${split} images: ${JSON.stringify(metrics)}`);
    return {
      protocol: 'accuracy',
      format,
      dataset: { name: ds.name, split, images: n },
      model: {
        spec: o.modelSpec ?? null,
        weights: o.weights ?? null,
        iceHead: config.iceHead,
        imgSize: S,
        patchSize: config.patchSize,
        depth: config.depth,
        numClasses: config.numClasses,
      },
      backend: backend.name,
      prune,
      tokens,
      metrics,
      images: n,
      imagesPerSecond: seconds > 0 ? n / seconds : Infinity,
      seconds,
      conventions,
    };
  } finally {
    if (own) model.dispose();
    await close();
  }
}

/** The result as a short text report (one metrics line, then the conventions). */
export function formatAccuracyReport(r: AccuracyResult): string {
  const m = Object.entries(r.metrics)
    .map(([k, v]) => `${k} ${v.toFixed(4)}`)
    .join('  ');
  return [
    `accuracy on ${r.dataset.name}/${r.dataset.split} (${r.images} images): ${m}  img/s ${r.imagesPerSecond.toFixed(1)}`,
    ...r.conventions.map((c) => `- ${c}`),
  ].join('\n');
}
