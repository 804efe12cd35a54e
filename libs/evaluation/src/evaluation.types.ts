import type { ExplainerName, IceVit, TargetSource } from '@ice/core';
import type { VisionDataset } from '@ice/datasets';

/** The four map protocols of the paper's evaluation. */
export const EVALUATION_PROTOCOLS = ['segmentation', 'jaccard', 'corloc', 'localization'] as const;
export type EvaluationProtocol = (typeof EVALUATION_PROTOCOLS)[number];

/** Formats the evaluation opens itself (`digits` is generated, not read). */
export const EVALUATION_FORMATS = ['imagenet-seg', 'voc', 'cub', 'digits'] as const;
export type EvaluationFormat = (typeof EVALUATION_FORMATS)[number];

/**
 * Input normalisation: 'half' = mean = std = 0.5 (the released ICE / Chefer ImageNet-segmentation
 * code), 'imagenet' = ImageNet mean/std (the paper, Intriguing, LOST, TS-CAM), 'model' = the
 * model configuration's own mean/std.
 */
export const NORMALIZATION_CHOICES = ['half', 'imagenet', 'model'] as const;
export type NormalizationChoice = (typeof NORMALIZATION_CHOICES)[number];

/** How a continuous map becomes a foreground mask where a protocol needs one (CorLoc). */
export const MASK_RULES = ['mass', 'mean'] as const;
export type MaskRule = (typeof MASK_RULES)[number];

/** Jaccard, raw attention: the best head per class ('max') or the head mean ('mean'). */
export const JACCARD_HEAD_RULES = ['max', 'mean'] as const;
export type JaccardHeadRule = (typeof JACCARD_HEAD_RULES)[number];

/** Overlays drawn per method when saveMaps gives no count. */
export const DEFAULT_SAVED_MAPS = 8;

export interface SaveMapsOptions {
  dir: string;
  /** First K images (default DEFAULT_SAVED_MAPS, 8). */
  count?: number;
}

export interface EvaluationOptions {
  protocol: EvaluationProtocol;
  /** Which loader opens `root`; ignored when `dataset` is given. */
  format?: EvaluationFormat;
  /** Data set root (not needed for digits). */
  root?: string;
  /** Default per format: imagenet-seg 'test', voc 'val' (segmentation, jaccard) or 'trainval' (corloc, localization), cub 'test', digits 'test'. */
  split?: string;
  /** An already opened data set (any VisionDataset with the fields the protocol needs). */
  dataset?: VisionDataset;
  /** Weights file (.safetensors / .pth), loaded with `modelSpec`. */
  weights?: string;
  /** Preset name or config.json, with `weights` (a checkpoint's own stored config wins for head kind and classes). */
  modelSpec?: string;
  /** An already loaded model (instead of weights); its input size is used. */
  model?: IceVit;
  methods: ExplainerName[];
  /** Evaluate only the first N images. */
  limit?: number;
  /**
   * Images per explainer call (default 16). Every image's map is the one it gets alone (a ViT
   * mixes nothing across images); 1 runs each image on its own, as the reference code.
   */
  batchSize?: number;
  /** Input side S. Default: for jaccard on VOC 512 (Intriguing) for 224² models, else ×512/224 of the model's size; otherwise the model's. */
  imgSize?: number;
  /** Default: segmentation 'half', other protocols 'imagenet'; 'model' for digits. */
  normalization?: NormalizationChoice;
  /**
   * Whose top-1 is each image's target class (and the localisation protocol's Top-1 Cls): 'cls',
   * the CLS head (default, as the reference code), or 'ice', the ICE head's own (the CLS head's
   * where an image has no foreground patch; needs an ICE head).
   */
  targetSource?: TargetSource;
  /** First block of rollout and transformer attribution. Default: 1 for segmentation (Chefer's seg eval, both methods), else 0. */
  rolloutStartLayer?: number;
  /** Jaccard: remove void (255) pixels from the unions (default false, as the released code). */
  excludeVoid?: boolean;
  /** Jaccard: attention-mass thresholds τ (default [0.9, 0.8, 0.6]). */
  taus?: number[];
  /** Jaccard, raw attention: one mask per head and the best head per class ('max', Intriguing's code; default) or the head mean ('mean'). */
  jaccardHeads?: JaccardHeadRule;
  /** CorLoc: continuous map → mask rule (default 'mass' with τ = corlocTau). */
  corlocMask?: MaskRule;
  /** CorLoc: τ of the mass rule (default 0.6, as DINO/LOST). */
  corlocTau?: number;
  /** Localisation: the fixed CAM threshold of GT-known / Top-1 Loc (default 0.1, TS-CAM's CAM_THR). */
  camThreshold?: number;
  /** Localisation: Top-1 Loc needs IoU > 0.5 strictly (TS-CAM; default true); false gives ≥. */
  strictTop1?: boolean;
  /** Localisation: IoU thresholds δ of MaxBoxAcc (default [0.5]). */
  maxBoxAccIous?: number[];
  /** Localisation: step of the CAM-threshold sweep, np.arange(0, 1, step) (default 0.001, wsolevaluation's). */
  maxBoxAccInterval?: number;
  /** Localisation: explicit CAM thresholds of the sweep (overrides maxBoxAccInterval). */
  maxBoxAccThresholds?: number[];
  /** Digits only: seed and split of the generated set (defaults 0 and 'test'; canvas = S). */
  digitsSeed?: number;
  saveMaps?: SaveMapsOptions;
  /** Checked between images; aborting throws IceError('CANCELLED'). */
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  log?: (message: string) => void;
}

export type MetricValue = number | null;

export interface EvaluationRow {
  /** Explainer name (registry key). */
  method: ExplainerName;
  /** Display name, e.g. 'ice [icef head]'. */
  label: string;
  /** One value per entry of `columns` (null where the column does not apply to this method). */
  metrics: Record<string, MetricValue>;
  images: number;
  /** Images ÷ seconds spent in the explainer (forward/backward and map read-back). */
  imagesPerSecond: number;
  seconds: number;
}

export interface SavedMaps {
  dir: string;
  files: string[];
  contactSheet: string;
}

export interface EvaluationResult {
  protocol: EvaluationProtocol;
  format: EvaluationFormat | 'custom';
  dataset: { name: string; split: string; images: number };
  model: { spec: string | null; weights: string | null; iceHead: string; imgSize: number; patchSize: number; numClasses: number };
  backend: string;
  /** Metric columns of the protocol, in display order. */
  columns: string[];
  /** Every convention in force, stated (IoU convention, thresholds, preprocessing, choices made). */
  conventions: string[];
  rows: EvaluationRow[];
  savedMaps?: SavedMaps;
}
