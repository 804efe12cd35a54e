import { IceError } from '../errors';

/** Which ICE head sits on the last block's patch tokens (before the final norm). */
export const ICE_HEAD_KINDS = ['none', 'official', 'icef', 'paper'] as const;
export type IceHeadKind = (typeof ICE_HEAD_KINDS)[number];

/**
 * A timm-style ViT with an optional ICE head. Field names follow timm's VisionTransformer
 * arguments so that presets read like timm's model registry.
 */
export interface VitConfig {
  imgSize: number;
  patchSize: number;
  inChans: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio: number;
  /** Classes of the CLS head (`head`); the ICE heads predict numClasses + 1 (background last). */
  numClasses: number;
  qkvBias: boolean;
  layerNormEps: number;
  iceHead: IceHeadKind;
  /** Hidden width of the ICE-f / paper heads; default 4·D (ICE-f) and D (paper). */
  iceHidden?: number;
  /** Stochastic depth, linearly increasing over blocks (timm's drop_path_rate). */
  dropPathRate: number;
  /** Input normalisation the backbone was trained with. */
  mean: [number, number, number];
  std: [number, number, number];
}

const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];
const HALF: [number, number, number] = [0.5, 0.5, 0.5];

const VIT_BASE: Omit<VitConfig, 'embedDim' | 'depth' | 'numHeads'> = {
  imgSize: 224,
  patchSize: 16,
  inChans: 3,
  mlpRatio: 4,
  numClasses: 1000,
  qkvBias: true,
  layerNormEps: 1e-6,
  iceHead: 'official',
  dropPathRate: 0,
  mean: IMAGENET_MEAN,
  std: IMAGENET_STD,
};

/** Named presets. The 224² ones match timm's registry entries of the same name. */
export const VIT_PRESETS = {
  deit_tiny_patch16_224: { ...VIT_BASE, embedDim: 192, depth: 12, numHeads: 3 },
  deit_small_patch16_224: { ...VIT_BASE, embedDim: 384, depth: 12, numHeads: 6 },
  'vit_tiny_patch16_224.augreg_in21k_ft_in1k': { ...VIT_BASE, embedDim: 192, depth: 12, numHeads: 3, mean: HALF, std: HALF },
  'vit_small_patch16_224.augreg_in21k_ft_in1k': { ...VIT_BASE, embedDim: 384, depth: 12, numHeads: 6, mean: HALF, std: HALF },
  /** The configuration of ../shared/golden (random weights, numerics tests). */
  'golden-micro': { ...VIT_BASE, imgSize: 32, patchSize: 8, embedDim: 64, depth: 2, numHeads: 2, numClasses: 10, mean: HALF, std: HALF },
  /** The speed yardstick's configuration (../shared/reference/torch_ice_step.py defaults). */
  'bench-small': { ...VIT_BASE, imgSize: 64, patchSize: 16, embedDim: 192, depth: 4, numHeads: 3, numClasses: 10 },
  /** Trains in minutes on a CPU: the built-in `digits` benchmark (64² canvases, 8×8 patches). */
  'digits-tiny': { ...VIT_BASE, imgSize: 64, patchSize: 8, embedDim: 96, depth: 4, numHeads: 3, numClasses: 10, mean: HALF, std: HALF },
  /** Smaller still, for tests and smoke runs. */
  'digits-micro': { ...VIT_BASE, imgSize: 32, patchSize: 8, embedDim: 48, depth: 2, numHeads: 2, numClasses: 10, mean: HALF, std: HALF },
} as const satisfies Record<string, VitConfig>;

export type VitPresetName = keyof typeof VIT_PRESETS;

export function isVitPreset(name: string): name is VitPresetName {
  return Object.prototype.hasOwnProperty.call(VIT_PRESETS, name);
}

/** A preset by name, with overrides (e.g. another image size or class count). */
export function vitConfig(name: string, overrides: Partial<VitConfig> = {}): VitConfig {
  if (!isVitPreset(name)) {
    throw new IceError('CONFIG_INVALID', `unknown model preset "${name}"; known presets: ${Object.keys(VIT_PRESETS).join(', ')}`);
  }
  return validateVitConfig({ ...VIT_PRESETS[name], ...overrides });
}

/** Checks a configuration that may come from a user's JSON file; returns it typed. */
export function validateVitConfig(raw: unknown): VitConfig {
  if (typeof raw !== 'object' || raw === null) throw new IceError('CONFIG_INVALID', 'model config must be an object');
  const c = { ...VIT_BASE, ...(raw as Partial<VitConfig>) } as VitConfig;
  const posInt = (field: keyof VitConfig): void => {
    const v = c[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      throw new IceError('CONFIG_INVALID', `model config field "${field}" must be a positive integer, got ${JSON.stringify(v)}`);
    }
  };
  (['imgSize', 'patchSize', 'inChans', 'embedDim', 'depth', 'numHeads', 'numClasses'] as const).forEach(posInt);
  if (c.imgSize % c.patchSize !== 0) {
    throw new IceError('CONFIG_INVALID', `model config: imgSize ${c.imgSize} is not a multiple of patchSize ${c.patchSize}`);
  }
  if (c.embedDim % c.numHeads !== 0) {
    throw new IceError('CONFIG_INVALID', `model config: embedDim ${c.embedDim} is not divisible by numHeads ${c.numHeads}`);
  }
  if (!(ICE_HEAD_KINDS as readonly string[]).includes(c.iceHead)) {
    throw new IceError(
      'CONFIG_INVALID',
      `model config field "iceHead" must be one of ${ICE_HEAD_KINDS.join(', ')}, got ${JSON.stringify(c.iceHead)}`,
    );
  }
  if (!(c.dropPathRate >= 0 && c.dropPathRate < 1)) {
    throw new IceError('CONFIG_INVALID', `model config field "dropPathRate" must be in [0, 1), got ${c.dropPathRate}`);
  }
  if (!(c.mlpRatio > 0) || !(c.layerNormEps > 0))
    throw new IceError('CONFIG_INVALID', 'model config: mlpRatio and layerNormEps must be positive');
  return c;
}

export function gridSize(c: VitConfig): number {
  return c.imgSize / c.patchSize;
}

export function iceHidden(c: VitConfig): number {
  return c.iceHidden ?? (c.iceHead === 'icef' ? 4 * c.embedDim : c.embedDim);
}
