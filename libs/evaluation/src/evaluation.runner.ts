/**
 * `runEvaluation`: one protocol, one model, several explainers on the same images, in batches
 * (batchSize 1 = each image on its own, as the reference code). Every method sees the same
 * prepared input, and each method's time in its explainer is measured for the images/s column.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  camThresholds,
  EXPLAINERS,
  prefersSingleImages,
  TARGET_SOURCES,
  topClasses,
  type ExplainerName,
  gridSize,
  IceError,
  type IceVit,
  initBackend,
  isExplainerName,
  loadModel,
  resolveModelConfig,
  type VitConfig,
} from '@ice/core';
import { DigitsDataset, type FileDataset, openDataset, type VisionDataset } from '@ice/datasets';
import { corlocProtocol } from './corloc.protocol';
import {
  DEFAULT_SAVED_MAPS,
  EVALUATION_FORMATS,
  EVALUATION_PROTOCOLS,
  type EvaluationFormat,
  type EvaluationOptions,
  type EvaluationProtocol,
  type EvaluationResult,
  type EvaluationRow,
  NORMALIZATION_CHOICES,
  type NormalizationChoice,
} from './evaluation.types';
import { type MethodMap, runExplainer, type RunExplainerOptions } from './explain.runner';
import { jaccardProtocol } from './jaccard.protocol';
import { localizationProtocol } from './localization.protocol';
import type { MethodScorer, ProtocolDefinition, ProtocolSettings } from './protocol.types';
import { normalizationStats, type PreparedSample, prepareSample } from './sample-prep.util';
import { displayMap, type SavedImageMaps, writeSavedMaps } from './save-maps.util';
import { segmentationProtocol } from './segmentation.protocol';

/** Intriguing Properties of ViTs evaluates VOC at 512² (position embedding resampled), for ViTs trained at 224². */
export const VOC_JACCARD_SIZE = 512;
const VOC_JACCARD_TRAINED_AT = 224;
const MAX_BATCH = 256;
/** Attention kept per batch by the gradient methods (probabilities, gradients and the tape's copies). */
const ATTENTION_BUDGET_BYTES = 256 * 2 ** 20;

/**
 * Images per explainer call when not given. Batches pay off for small models, whose time goes to
 * per-call overhead: 16, fewer when a batch's attention maps would pass ~256 MB (the wasm heap is
 * limited to 4 GB; DeiT-S at 224²: 6). Models with large attention products (DeiT at 224²) run one image at a time
 * on wasm: their per-head products then go to XNNPACK (ice-core's bmm), which a batch would not
 * (measured on DeiT-Tiny: 327 ms/image alone, 475–565 ms/image in batches of 12). With the native
 * kernels (GEMM for every product) batches do not pay there either: ICE 44.6 img/s alone, 38.4 in
 * batches of 6.
 */
export function defaultEvalBatch(config: VitConfig, backend: string = tf.getBackend()): number {
  if (prefersSingleImages(config, backend)) return 1;
  const T = gridSize(config) ** 2 + 1;
  const perImage = config.depth * config.numHeads * T * T * 4 * 4;
  return Math.max(1, Math.min(16, Math.floor(ATTENTION_BUDGET_BYTES / perImage)));
}

export function defaultSplit(format: EvaluationFormat, protocol: EvaluationProtocol): string {
  switch (format) {
    case 'imagenet-seg':
      return 'test';
    case 'voc':
      return protocol === 'segmentation' || protocol === 'jaccard' ? 'val' : 'trainval';
    case 'cub':
    case 'digits':
      return 'test';
  }
}

/**
 * The input size asked of the model loader: the option, else for Jaccard on VOC the reference's
 * 512² — that is 512/224 ≈ 2.29× the training size of the 224² ViTs it was written for — else the
 * model's own (undefined). A model trained at another size (`native`, e.g. the 32² and 64² digits
 * models) gets the same 2.29× upscaling rounded to its patch: 72² and 144². Asking a 32² model
 * for 512² would mean a 64×64 grid from a 4×4 position embedding, and 4,097 tokens per image.
 */
export function requestedImgSize(
  protocol: EvaluationProtocol,
  format: EvaluationFormat | 'custom',
  imgSize?: number,
  native?: Pick<VitConfig, 'imgSize' | 'patchSize'>,
): number | undefined {
  if (imgSize !== undefined) return imgSize;
  if (protocol !== 'jaccard' || format !== 'voc') return undefined;
  if (!native || native.imgSize === VOC_JACCARD_TRAINED_AT) return VOC_JACCARD_SIZE;
  const grid = Math.max(1, Math.round((native.imgSize * VOC_JACCARD_SIZE) / VOC_JACCARD_TRAINED_AT / native.patchSize));
  return grid * native.patchSize;
}

export function defaultNormalization(format: EvaluationFormat | 'custom', protocol: EvaluationProtocol): NormalizationChoice {
  if (format === 'digits' || format === 'custom') return 'model';
  return protocol === 'segmentation' ? 'half' : 'imagenet';
}

function normalizationText(choice: NormalizationChoice, protocol: EvaluationProtocol, config: VitConfig): string {
  const stats = `mean [${config.mean.join(', ')}], std [${config.std.join(', ')}]`;
  switch (choice) {
    case 'half':
      return protocol === 'segmentation'
        ? "input normalised with mean = std = 0.5 (the released ICE / Chefer code; normalization=imagenet gives the paper's ImageNet statistics)"
        : 'input normalised with mean = std = 0.5 (option normalization=half)';
    case 'imagenet':
      return protocol === 'segmentation'
        ? 'input normalised with ImageNet mean/std (the paper; the released code uses 0.5/0.5, normalization=half)'
        : 'input normalised with ImageNet mean/std (as the reference code of this protocol)';
    case 'model':
      return `input normalised with the model's own statistics (${stats}): the data set is not one the reference code ran on`;
  }
}

function checkOptions(o: EvaluationOptions): void {
  if (!EVALUATION_PROTOCOLS.includes(o.protocol)) {
    throw new IceError('CONFIG_INVALID', `unknown protocol '${String(o.protocol)}'; expected one of ${EVALUATION_PROTOCOLS.join(', ')}`);
  }
  if (!o.dataset && (!o.format || !EVALUATION_FORMATS.includes(o.format))) {
    throw new IceError('CONFIG_INVALID', `unknown data set format '${String(o.format)}'; expected one of ${EVALUATION_FORMATS.join(', ')}`);
  }
  if (!o.dataset && o.format !== 'digits' && !o.root) throw new IceError('CONFIG_INVALID', `the ${o.format} format needs a root path`);
  if (!Array.isArray(o.methods) || o.methods.length === 0) throw new IceError('CONFIG_INVALID', 'name at least one method');
  for (const m of o.methods as string[]) {
    if (!isExplainerName(m))
      throw new IceError('CONFIG_INVALID', `unknown method '${m}'; expected one of ${Object.keys(EXPLAINERS).join(', ')}`);
  }
  if (new Set(o.methods).size !== o.methods.length)
    throw new IceError('CONFIG_INVALID', `a method is named twice: ${o.methods.join(', ')}`);
  if (o.limit !== undefined && !(Number.isInteger(o.limit) && o.limit > 0))
    throw new IceError('CONFIG_INVALID', `limit must be a positive integer, got ${o.limit}`);
  if (o.batchSize !== undefined && !(Number.isInteger(o.batchSize) && o.batchSize > 0 && o.batchSize <= MAX_BATCH)) {
    throw new IceError('CONFIG_INVALID', `batchSize must be an integer in 1..${MAX_BATCH}, got ${o.batchSize}`);
  }
  if (o.normalization !== undefined && !NORMALIZATION_CHOICES.includes(o.normalization)) {
    throw new IceError(
      'CONFIG_INVALID',
      `normalization must be one of ${NORMALIZATION_CHOICES.join(', ')}, got '${String(o.normalization)}'`,
    );
  }
  if (o.imgSize !== undefined && !(Number.isInteger(o.imgSize) && o.imgSize > 0))
    throw new IceError('CONFIG_INVALID', `imgSize must be a positive integer, got ${o.imgSize}`);
  if (o.targetSource !== undefined && !TARGET_SOURCES.includes(o.targetSource)) {
    throw new IceError('CONFIG_INVALID', `targetSource must be one of ${TARGET_SOURCES.join(', ')}, got '${String(o.targetSource)}'`);
  }
  if (o.corlocTau !== undefined && !(o.corlocTau > 0 && o.corlocTau <= 1))
    throw new IceError('CONFIG_INVALID', `corlocTau must be in (0, 1], got ${o.corlocTau}`);
  if (o.maxBoxAccInterval !== undefined && !(o.maxBoxAccInterval > 0 && o.maxBoxAccInterval < 1)) {
    throw new IceError('CONFIG_INVALID', `maxBoxAccInterval must be in (0, 1), got ${o.maxBoxAccInterval}`);
  }
  if (
    o.maxBoxAccThresholds !== undefined &&
    (o.maxBoxAccThresholds.length === 0 || o.maxBoxAccThresholds.some((t) => !(t >= 0 && t < 1)))
  ) {
    throw new IceError('CONFIG_INVALID', 'maxBoxAccThresholds must be a non-empty list of values in [0, 1)');
  }
  if (o.maxBoxAccIous !== undefined && (o.maxBoxAccIous.length === 0 || o.maxBoxAccIous.some((t) => !(t > 0 && t <= 1)))) {
    throw new IceError('CONFIG_INVALID', 'maxBoxAccIous must be a non-empty list of values in (0, 1]');
  }
  if (o.camThreshold !== undefined && !(o.camThreshold >= 0 && o.camThreshold < 1))
    throw new IceError('CONFIG_INVALID', `camThreshold must be in [0, 1), got ${o.camThreshold}`);
  if (o.saveMaps && o.saveMaps.count !== undefined && !(Number.isInteger(o.saveMaps.count) && o.saveMaps.count > 0)) {
    throw new IceError('CONFIG_INVALID', `saveMaps.count must be a positive integer, got ${o.saveMaps.count}`);
  }
  if (!o.model && !o.weights) throw new IceError('CONFIG_INVALID', 'give weights (with modelSpec) or a loaded model');
  if (!o.model && !o.modelSpec) throw new IceError('CONFIG_INVALID', 'weights need a modelSpec (a preset name or a config.json)');
}

function buildProtocol(protocol: EvaluationProtocol, s: ProtocolSettings, numClasses: number): ProtocolDefinition {
  switch (protocol) {
    case 'segmentation':
      return segmentationProtocol(s);
    case 'jaccard':
      return jaccardProtocol(s);
    case 'corloc':
      return corlocProtocol(s);
    case 'localization':
      return localizationProtocol(s, numClasses);
  }
}

function methodLabel(method: ExplainerName, model: IceVit): string {
  return EXPLAINERS[method].needsIceHead ? `${method} [${model.config.iceHead} head]` : method;
}

async function openEvaluationData(
  o: EvaluationOptions,
  size: number,
): Promise<{ ds: VisionDataset; close: () => Promise<void>; split: string }> {
  if (o.dataset) return { ds: o.dataset, close: () => Promise.resolve(), split: o.dataset.split };
  const format = o.format!;
  const split = o.split ?? defaultSplit(format, o.protocol);
  if (format === 'digits') {
    if (split !== 'train' && split !== 'val' && split !== 'test')
      throw new IceError('CONFIG_INVALID', `digits splits are train, val and test; got '${split}'`);
    return { ds: new DigitsDataset({ split, canvasSize: size, seed: o.digitsSeed ?? 0 }), close: () => Promise.resolve(), split };
  }
  const task = format === 'voc' && (o.protocol === 'segmentation' || o.protocol === 'jaccard') ? 'segmentation' : 'detection';
  const ds: FileDataset = await openDataset(format, o.root!, split, { task });
  return { ds, close: () => ds.close(), split };
}

/** The model the evaluation explains: the given instance, or the weights loaded at the protocol's input size. */
function loadEvaluationModel(o: EvaluationOptions, format: EvaluationFormat | 'custom'): { model: IceVit; own: boolean; notes: string[] } {
  if (o.model) {
    if (o.imgSize !== undefined && o.imgSize !== o.model.config.imgSize) {
      throw new IceError(
        'CONFIG_INVALID',
        `imgSize ${o.imgSize} differs from the given model's input size ${o.model.config.imgSize}; load the weights at that size instead`,
      );
    }
    return { model: o.model, own: false, notes: [] };
  }
  const overrides: Partial<VitConfig> = {};
  const size = requestedImgSize(o.protocol, format, o.imgSize, resolveModelConfig(o.modelSpec!));
  if (size !== undefined) overrides.imgSize = size;
  // The project's training checkpoints carry AdamW's moments beside the weights: not model weights.
  const loaded = loadModel(o.weights!, o.modelSpec!, overrides, { ignore: ['optimizer.*'] });
  const notes: string[] = [];
  if (loaded.report.posEmbedResampled) {
    const { from, to } = loaded.report.posEmbedResampled;
    notes.push(`pos_embed resampled bicubically from a ${from}×${from} to a ${to}×${to} patch grid (timm's resample_abs_pos_embed)`);
  }
  return { model: loaded.model, own: true, notes };
}

/** The protocol with every default resolved for this model, and the input normalisation. */
interface EvaluationPlan {
  settings: ProtocolSettings;
  def: ProtocolDefinition;
  normalization: NormalizationChoice;
  stats: ReturnType<typeof normalizationStats>;
}

function planEvaluation(o: EvaluationOptions, config: VitConfig, format: EvaluationFormat | 'custom'): EvaluationPlan {
  const targetSource = o.targetSource ?? 'cls';
  if (targetSource === 'ice' && config.iceHead === 'none')
    throw new IceError(
      'CONFIG_INVALID',
      "targetSource 'ice' (the ICE head's own top-1) needs a model with an ICE head; this checkpoint has none",
    );
  const missingHead = o.methods.filter((m) => EXPLAINERS[m].needsIceHead && config.iceHead === 'none');
  if (missingHead.length)
    throw new IceError('CONFIG_INVALID', `${missingHead.join(', ')} need a model with an ICE head; this checkpoint has none`);
  const startDefault = o.protocol === 'segmentation' && config.depth > 1 ? 1 : 0;
  const settings: ProtocolSettings = {
    targetSource,
    size: config.imgSize,
    patch: config.patchSize,
    grid: gridSize(config),
    rolloutStartLayer: o.rolloutStartLayer ?? startDefault,
    excludeVoid: o.excludeVoid ?? false,
    taus: o.taus ?? [0.9, 0.8, 0.6],
    jaccardHeads: o.jaccardHeads ?? 'max',
    corlocMask: o.corlocMask ?? 'mass',
    corlocTau: o.corlocTau ?? 0.6,
    camThreshold: o.camThreshold ?? 0.1,
    strictTop1: o.strictTop1 ?? true,
    maxBoxAccIous: o.maxBoxAccIous ?? [0.5],
    maxBoxAccThresholds: o.maxBoxAccThresholds ?? (o.maxBoxAccInterval !== undefined ? camThresholds(o.maxBoxAccInterval) : undefined),
  };
  const sl = settings.rolloutStartLayer;
  if (!(Number.isInteger(sl) && sl >= 0 && sl < config.depth))
    throw new IceError('CONFIG_INVALID', `start layer ${sl} (rollout, transformer attribution) is outside 0..${config.depth - 1}`);
  const normalization = o.normalization ?? defaultNormalization(format, o.protocol);
  return {
    settings,
    def: buildProtocol(o.protocol, settings, config.numClasses),
    normalization,
    stats: normalizationStats(normalization, config),
  };
}

/** What the methods scored over the images: per method its scorer and time, and the maps kept for saving. */
interface Scores {
  scorers: Map<ExplainerName, MethodScorer>;
  seconds: Map<ExplainerName, number>;
  saved: SavedImageMaps[];
  batchSize: number;
}

/** The first `n` images of `ds` through every method, in batches; each method's explainer time is measured. */
async function scoreImages(o: EvaluationOptions, model: IceVit, plan: EvaluationPlan, ds: VisionDataset, n: number): Promise<Scores> {
  const { def, settings } = plan;
  const { size } = settings;
  const scores: Scores = {
    scorers: new Map(o.methods.map((m) => [m, def.scorer(m)])),
    seconds: new Map(o.methods.map((m) => [m, 0])),
    saved: [],
    batchSize: Math.min(o.batchSize ?? defaultEvalBatch(model.config), n),
  };
  const saveCount = o.saveMaps ? Math.min(o.saveMaps.count ?? DEFAULT_SAVED_MAPS, n) : 0;
  const { batchSize } = scores;
  for (let start = 0; start < n; start += batchSize) {
    if (o.signal?.aborted) throw new IceError('CANCELLED', `evaluation cancelled after ${start} of ${n} images`);
    const count = Math.min(batchSize, n - start);
    const batch: PreparedSample[] = [];
    for (let i = start; i < start + count; i++) {
      const p = prepareSample(await ds.get(i), i, size, plan.stats);
      def.check(p);
      batch.push(p);
    }
    const input = new Float32Array(count * 3 * size * size);
    batch.forEach((p, b) => input.set(p.input, b * 3 * size * size));
    const x = tf.tensor4d(input, [count, 3, size, size]);
    try {
      if (def.needsTop1) topClasses(model, x, settings.targetSource).forEach((c, b) => (batch[b].top1 = c));
      const explainOpts = (m: ExplainerName): RunExplainerOptions => ({
        classes: batch.map((p) => def.target(p)),
        targetSource: settings.targetSource,
        startLayer: settings.rolloutStartLayer,
        perHead: def.perHead(m),
      });
      // Warm-up, untimed: the first call at each batch shape compiles and allocates.
      if (start === 0 || count !== batchSize) for (const m of o.methods) runExplainer(model, x, m, explainOpts(m));
      const results = new Map<ExplainerName, MethodMap[]>();
      // The methods take turns at going first after the data preparation (whose garbage the first
      // timed call may pay for), so no method's images/s carries that cost more than another's.
      const turn = (start / batchSize) % o.methods.length;
      for (const m of [...o.methods.slice(turn), ...o.methods.slice(0, turn)]) {
        const r = runExplainer(model, x, m, explainOpts(m));
        scores.seconds.set(m, scores.seconds.get(m)! + r.seconds);
        r.maps.forEach((map, b) => scores.scorers.get(m)!.add(batch[b], map));
        results.set(m, r.maps);
      }
      for (const p of batch.filter((q) => q.index < saveCount)) {
        const b = p.index - start;
        scores.saved.push({
          index: p.index,
          id: p.id,
          rgb: p.rgb,
          maps: o.methods.map((m) => displayMap(results.get(m)![b], size)),
        });
      }
    } finally {
      x.dispose();
    }
    o.onProgress?.(start + count, n);
  }
  return scores;
}

function speedConvention(batchSize: number): string {
  const batching =
    batchSize === 1
      ? 'each image on its own (batch of one, as the reference code)'
      : `batches of ${batchSize} images per explainer call (each image's map and target are those it gets alone: ` +
        'a ViT mixes nothing across images; batchSize 1 runs them one by one, as the reference code)';
  return (
    `${batching}; images/s = images ÷ time in the explainer (forward, plus backward for gradient methods, and the read-back ` +
    'of the patch-grid maps) after one untimed warm-up call per method and batch shape; data loading, resizing and scoring excluded'
  );
}

/** The result table: one row per method, and every convention in force. */
function evaluationResult(
  o: EvaluationOptions,
  format: EvaluationFormat | 'custom',
  model: IceVit,
  plan: EvaluationPlan,
  run: { ds: VisionDataset; n: number; scores: Scores; notes: string[]; backend: string },
): EvaluationResult {
  const { config } = model;
  const { size, patch, grid } = plan.settings;
  const { ds, n, scores } = run;
  const rows: EvaluationRow[] = o.methods.map((m) => {
    const t = scores.seconds.get(m)!;
    return {
      method: m,
      label: methodLabel(m, model),
      metrics: scores.scorers.get(m)!.result(),
      images: n,
      imagesPerSecond: t > 0 ? n / t : Infinity,
      seconds: t,
    };
  });
  const head = config.iceHead === 'none' ? 'no' : `the '${config.iceHead}'`;
  const conventions = [
    `model: ${o.modelSpec ?? 'given instance'} with ${head} ICE head, input ${size}×${size}, ${patch}×${patch} patches ` +
      `(${grid}×${grid} grid), ${config.numClasses} classes; tfjs backend ${run.backend}`,
    ...run.notes,
    normalizationText(plan.normalization, o.protocol, config),
    ...plan.def.conventions(),
    speedConvention(scores.batchSize),
  ];
  return {
    protocol: o.protocol,
    format,
    dataset: { name: ds.name, split: ds.split, images: n },
    model: {
      spec: o.modelSpec ?? null,
      weights: o.weights ?? null,
      iceHead: config.iceHead,
      imgSize: size,
      patchSize: patch,
      numClasses: config.numClasses,
    },
    backend: run.backend,
    columns: plan.def.columns,
    conventions,
    rows,
  };
}

/** Runs one protocol over a data set for each method; see EvaluationOptions for every choice. */
export async function runEvaluation(o: EvaluationOptions): Promise<EvaluationResult> {
  checkOptions(o);
  const log = o.log ?? ((): void => undefined);
  const backend = await initBackend(undefined, log);
  const format: EvaluationFormat | 'custom' = o.dataset ? (o.format ?? 'custom') : o.format!;
  const { model, own, notes } = loadEvaluationModel(o, format);
  let data: Awaited<ReturnType<typeof openEvaluationData>> | undefined;
  try {
    const plan = planEvaluation(o, model.config, format);
    data = await openEvaluationData(o, model.config.imgSize);
    const { ds } = data;
    const n = Math.min(o.limit ?? ds.length, ds.length);
    if (n === 0) throw new IceError('INPUT_INVALID', `the data set ${ds.name}/${ds.split} has no images`);
    const scores = await scoreImages(o, model, plan, ds, n);
    const result = evaluationResult(o, format, model, plan, { ds, n, scores, notes, backend: backend.name });
    if (o.saveMaps && scores.saved.length > 0) {
      const methods = result.rows.map((r) => ({ name: r.method, label: r.label }));
      result.savedMaps = await writeSavedMaps(o.saveMaps.dir, model.config.imgSize, methods, scores.saved);
    }
    return result;
  } finally {
    if (own) model.dispose();
    if (data) await data.close();
  }
}
