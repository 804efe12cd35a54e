/**
 * `ice weights inspect`: what is in a weights file, and whether it is a timm ViT/DeiT with one of
 * the ICE heads. Everything is derived from names and shapes, so it works on any checkpoint.
 */
import type { IceHeadKind } from '../model/vit.config';
import { DType, StateDict, numel } from './state-dict';
import { ReadWeightsOptions, WeightsFormat, readWeights } from './weights-file';

export interface TensorSummary {
  name: string;
  dtype: DType;
  shape: number[];
  numel: number;
}

export interface IceHeadInfo {
  kind: IceHeadKind;
  /** c + 1 outputs (background last); null when there is no ICE head. */
  outputs: number | null;
  /** Hidden width of ICE-f (`mlp_head_1`) or the paper head (`ice_head.fc1`). */
  hidden: number | null;
  params: number;
}

export interface VitArchitecture {
  family: 'vit';
  embedDim: number;
  depth: number;
  /** Heads are not recoverable from shapes: taken from the file's metadata config, else timm's preset for embedDim. */
  heads: number | null;
  headsSource: 'metadata' | 'inferred' | 'unknown';
  mlpHidden: number | null;
  patchSize: number | [number, number];
  inChans: number;
  posTokens: number;
  /** CLS (+ DeiT distillation token). */
  prefixTokens: number;
  /** Side of the square patch grid, null if posTokens - prefixTokens is not a square. */
  gridSize: number | null;
  numClasses: number | null;
  distilled: boolean;
  iceHead: IceHeadInfo;
  backboneParams: number;
}

export interface WeightsReport {
  file: string;
  format: WeightsFormat;
  metadata: Record<string, string>;
  stateDictKey?: string;
  tensors: TensorSummary[];
  totalParams: number;
  recognized: VitArchitecture | null;
  /** Keys not accounted for by `recognized` (all keys when nothing was recognised). */
  unrecognized: string[];
  notes: string[];
}

/** timm's ViT/DeiT presets: tiny, small, base, large, huge. */
const TIMM_HEADS: Record<number, number> = { 192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16 };

const BLOCK_PARAMS = [
  'norm1.weight',
  'norm1.bias',
  'attn.qkv.weight',
  'attn.qkv.bias',
  'attn.proj.weight',
  'attn.proj.bias',
  'norm2.weight',
  'norm2.bias',
  'mlp.fc1.weight',
  'mlp.fc1.bias',
  'mlp.fc2.weight',
  'mlp.fc2.bias',
];
const STEM_PARAMS = [
  'cls_token',
  'dist_token',
  'pos_embed',
  'patch_embed.proj.weight',
  'patch_embed.proj.bias',
  'norm.weight',
  'norm.bias',
];
const CLS_HEAD_PARAMS = ['head.weight', 'head.bias', 'head_dist.weight', 'head_dist.bias'];
const ICE_PARAMS: Record<Exclude<IceHeadKind, 'none'>, string[]> = {
  official: ['mlp_head.weight', 'mlp_head.bias'],
  icef: ['mlp_head_1.weight', 'mlp_head_1.bias', 'mlp_head.weight', 'mlp_head.bias'],
  paper: ['ice_head.fc1.weight', 'ice_head.fc1.bias', 'ice_head.fc2.weight', 'ice_head.fc2.bias'],
};

function metadataHeads(metadata: Record<string, string>): number | undefined {
  // `config` is the golden files' timm-style config; `ice_config` this project's own VitConfig.
  const raw = metadata.config ?? metadata.ice_config;
  if (!raw) return undefined;
  try {
    const cfg = JSON.parse(raw) as Record<string, unknown>;
    const h = cfg.num_heads ?? cfg.numHeads ?? cfg.heads;
    return typeof h === 'number' && Number.isInteger(h) && h > 0 ? h : undefined;
  } catch {
    return undefined; // a config we cannot read is not an error for an inspection
  }
}

/** Recognises a timm ViT/DeiT state dict and its ICE head; returns the keys it accounts for. */
export function recognizeVit(
  tensors: StateDict,
  metadata: Record<string, string> = {},
): { arch: VitArchitecture; used: Set<string>; notes: string[] } | null {
  const shape = (k: string): number[] | undefined => tensors.get(k)?.shape;
  const cls = shape('cls_token');
  const pos = shape('pos_embed');
  const patch = shape('patch_embed.proj.weight');
  if (!cls || !pos || !patch || patch.length !== 4 || pos.length !== 3) return null;
  const notes: string[] = [];
  const embedDim = patch[0];
  const used = new Set<string>();
  const count = (keys: Iterable<string>): number => {
    let n = 0;
    for (const k of keys) {
      const t = tensors.get(k);
      if (t) {
        used.add(k);
        n += numel(t.shape);
      }
    }
    return n;
  };

  const blockIds = new Set<number>();
  for (const k of tensors.keys()) {
    const m = /^blocks\.(\d+)\./.exec(k);
    if (m) blockIds.add(Number(m[1]));
  }
  const depth = blockIds.size;
  for (let i = 0; i < depth; i++) if (!blockIds.has(i)) notes.push(`block ${i} missing (blocks are not numbered 0..${depth - 1})`);
  let backboneParams = count(STEM_PARAMS) + count(CLS_HEAD_PARAMS);
  for (const i of blockIds) backboneParams += count(BLOCK_PARAMS.map((p) => `blocks.${i}.${p}`));

  const distilled = tensors.has('dist_token');
  const prefixTokens = distilled ? 2 : 1;
  const posTokens = pos[1];
  const side = Math.sqrt(posTokens - prefixTokens);
  const gridSize = Number.isInteger(side) ? side : null;
  if (gridSize === null) notes.push(`pos_embed has ${posTokens} tokens: ${posTokens - prefixTokens} patch positions is not a square grid`);

  const fromMeta = metadataHeads(metadata);
  const preset = TIMM_HEADS[embedDim];
  const heads = fromMeta ?? preset ?? null;
  const headsSource = fromMeta ? 'metadata' : preset ? 'inferred' : 'unknown';
  if (headsSource === 'inferred')
    notes.push(`heads = ${preset} inferred from embedDim ${embedDim} (timm preset); not stored in the weights`);
  if (headsSource === 'unknown') notes.push(`heads unknown: embedDim ${embedDim} matches no timm preset and the file has no config`);

  let iceHead: IceHeadInfo = { kind: 'none', outputs: null, hidden: null, params: 0 };
  if (tensors.has('mlp_head_1.weight')) {
    iceHead = {
      kind: 'icef',
      outputs: shape('mlp_head.weight')?.[0] ?? null,
      hidden: shape('mlp_head_1.weight')?.[0] ?? null,
      params: count(ICE_PARAMS.icef),
    };
  } else if (tensors.has('ice_head.fc1.weight') || tensors.has('ice_head.fc2.weight')) {
    iceHead = {
      kind: 'paper',
      outputs: shape('ice_head.fc2.weight')?.[0] ?? null,
      hidden: shape('ice_head.fc1.weight')?.[0] ?? null,
      params: count(ICE_PARAMS.paper),
    };
  } else if (tensors.has('mlp_head.weight')) {
    const w = shape('mlp_head.weight') ?? [];
    if (w[1] !== embedDim) notes.push(`mlp_head.weight is [${w.join(', ')}] but embedDim is ${embedDim} and there is no mlp_head_1`);
    iceHead = { kind: 'official', outputs: w[0] ?? null, hidden: null, params: count(ICE_PARAMS.official) };
  }

  const arch: VitArchitecture = {
    family: 'vit',
    embedDim,
    depth,
    heads,
    headsSource,
    mlpHidden: depth > 0 ? (shape(`blocks.${Math.min(...blockIds)}.mlp.fc1.weight`)?.[0] ?? null) : null,
    patchSize: patch[2] === patch[3] ? patch[2] : [patch[2], patch[3]],
    inChans: patch[1],
    posTokens,
    prefixTokens,
    gridSize,
    numClasses: shape('head.weight')?.[0] ?? null,
    distilled,
    iceHead,
    backboneParams,
  };
  return { arch, used, notes };
}

export function inspectStateDict(
  file: string,
  format: WeightsFormat,
  tensors: StateDict,
  metadata: Record<string, string> = {},
): WeightsReport {
  const summaries: TensorSummary[] = [];
  let totalParams = 0;
  for (const [name, t] of tensors) {
    const n = numel(t.shape);
    totalParams += n;
    summaries.push({ name, dtype: t.dtype, shape: [...t.shape], numel: n });
  }
  const rec = recognizeVit(tensors, metadata);
  return {
    file,
    format,
    metadata,
    tensors: summaries,
    totalParams,
    recognized: rec?.arch ?? null,
    unrecognized: [...tensors.keys()].filter((k) => !rec?.used.has(k)),
    notes: rec?.notes ?? [],
  };
}

export function inspectWeights(file: string, opts: ReadWeightsOptions = {}): WeightsReport {
  const w = readWeights(file, opts);
  const report = inspectStateDict(file, w.format, w.tensors, w.metadata);
  if (w.stateDictKey !== undefined) report.stateDictKey = w.stateDictKey;
  return report;
}
