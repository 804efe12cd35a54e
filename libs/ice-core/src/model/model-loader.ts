import * as fs from 'node:fs';
import { IceError } from '../errors';
import { recognizeVit } from '../weights/inspect';
import { readWeights, ReadWeightsOptions } from '../weights/weights-file';
import { StateDict } from '../weights/state-dict';
import { isVitPreset, validateVitConfig, VitConfig, vitConfig, VIT_PRESETS } from './vit.config';
import { IceVit, LoadOptions, LoadReport } from './vit.model';

/** Metadata key under which the project's own checkpoints store their VitConfig. */
export const ICE_CONFIG_METADATA = 'ice_config';

/**
 * `--model` accepts a preset name or a JSON file holding a (partial) VitConfig, optionally
 * `{"preset": "deit_small_patch16_224", ...overrides}`.
 */
export function resolveModelConfig(spec: string, overrides: Partial<VitConfig> = {}): VitConfig {
  if (isVitPreset(spec)) return vitConfig(spec, overrides);
  if (!fs.existsSync(spec)) {
    throw new IceError(
      'CONFIG_INVALID',
      `--model "${spec}" is neither a preset (${Object.keys(VIT_PRESETS).join(', ')}) nor an existing config file`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(spec, 'utf8'));
  } catch (e) {
    throw new IceError('CONFIG_INVALID', `model config ${spec} is not valid JSON: ${(e as Error).message}`);
  }
  const { preset, ...rest } = raw as { preset?: string } & Partial<VitConfig>;
  return preset ? vitConfig(preset, { ...rest, ...overrides }) : validateVitConfig({ ...rest, ...overrides });
}

/**
 * Adapts a configuration to what a checkpoint holds where the checkpoint is the authority:
 * its ICE head kind and class count. Architecture fields (width, depth) are not adapted: a
 * mismatch there is the strict loader's error to report.
 */
export function adaptConfigToWeights(config: VitConfig, tensors: StateDict, metadata: Record<string, string> = {}): VitConfig {
  const own = metadata[ICE_CONFIG_METADATA];
  if (own) return { ...validateVitConfig(JSON.parse(own)), imgSize: config.imgSize };
  const rec = recognizeVit(tensors, metadata);
  if (!rec) return config;
  const { iceHead, numClasses } = rec.arch;
  const out: VitConfig = { ...config, iceHead: iceHead.kind };
  if (numClasses !== null) out.numClasses = numClasses;
  else if (iceHead.outputs !== null) out.numClasses = iceHead.outputs - 1;
  if (iceHead.hidden !== null) out.iceHidden = iceHead.hidden;
  return out;
}

export interface LoadedModel {
  model: IceVit;
  config: VitConfig;
  report: LoadReport;
  format: string;
}

/** Reads a weights file, fits the config to it, builds the model and loads it strictly. */
export function loadModel(
  weightsPath: string,
  modelSpec: string,
  overrides: Partial<VitConfig> = {},
  opts: LoadOptions & ReadWeightsOptions = {},
): LoadedModel {
  const w = readWeights(weightsPath, opts);
  const config = adaptConfigToWeights(resolveModelConfig(modelSpec, overrides), w.tensors, w.metadata);
  const model = IceVit.create(config);
  try {
    const report = model.loadStateDict(w.tensors, opts);
    return { model, config, report, format: w.format };
  } catch (e) {
    model.dispose();
    throw e;
  }
}
