import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { IceError } from '../errors';
import { ICE_CONFIG_METADATA } from '../model/model-loader';
import { validateVitConfig } from '../model/vit.config';
import { IceVit } from '../model/vit.model';
import { readSafetensors, writeSafetensors } from '../weights/safetensors';
import { StateDict } from '../weights/state-dict';
import { IceTrainer, TrainConfig, TrainerState } from './trainer';

/**
 * The project's checkpoint: one safetensors file, written atomically, holding
 * - the model in PyTorch layout under timm names (so `ice forward`, timm and the PyTorch
 *   reference read the weights as they are; the optimizer keys are ignored by name),
 * - AdamW's moments as `optimizer.exp_avg.<name>` / `optimizer.exp_avg_sq.<name>` in the
 *   model's internal layout (Linear [in, out]),
 * - metadata: model config, training config, step, PRNG state and seed, so that a resumed run
 *   continues bit-identically.
 */
export const CHECKPOINT_FORMAT = 'ice-checkpoint/1';
const M = 'optimizer.exp_avg.';
const V = 'optimizer.exp_avg_sq.';

export interface CheckpointInfo {
  step: number;
  seed: number;
  trainConfig: TrainConfig;
  trainerState: TrainerState;
  extra: Record<string, string>;
}

export async function saveCheckpoint(file: string, trainer: IceTrainer, extra: Record<string, string> = {}): Promise<void> {
  const state = trainer.getState();
  const sd: StateDict = await trainer.model.stateDict();
  const opt = trainer.optimizer.getState();
  try {
    for (const [prefix, map] of [
      [M, opt.m],
      [V, opt.v],
    ] as const) {
      for (const [name, t] of map) sd.set(prefix + name, { dtype: 'F32', shape: t.shape, data: await t.data<'float32'>() });
    }
  } finally {
    tf.dispose([...opt.m.values(), ...opt.v.values()]);
  }
  writeSafetensors(file, sd, {
    ...extra,
    format: 'pt',
    ice_format: CHECKPOINT_FORMAT,
    [ICE_CONFIG_METADATA]: JSON.stringify(trainer.model.config),
    ice_train_config: JSON.stringify(trainer.config),
    ice_trainer_state: JSON.stringify(state),
  });
}

/**
 * The optimizer step a checkpoint was written at, from its header alone (the tensors are not read):
 * what a data-parallel rank tells the others it can resume from.
 */
export function readCheckpointStep(file: string): number {
  const fd = fs.openSync(file, 'r');
  try {
    const len = Buffer.alloc(8);
    if (fs.readSync(fd, len, 0, 8, 0) !== 8) throw new IceError('CHECKPOINT_INVALID', `${file} is shorter than a safetensors header`);
    const n = Number(len.readBigUInt64LE(0));
    if (!(n > 1 && n < 100 << 20)) throw new IceError('CHECKPOINT_INVALID', `${file}: safetensors header length ${n} is not plausible`);
    const header = Buffer.alloc(n);
    if (fs.readSync(fd, header, 0, n, 8) !== n) throw new IceError('CHECKPOINT_INVALID', `${file}: truncated safetensors header`);
    let meta: Record<string, string> | undefined;
    try {
      meta = (JSON.parse(header.toString('utf8')) as { __metadata__?: Record<string, string> }).__metadata__;
    } catch (e) {
      throw new IceError('CHECKPOINT_INVALID', `${file}: safetensors header is not valid JSON: ${(e as Error).message}`);
    }
    if (meta?.ice_format !== CHECKPOINT_FORMAT)
      throw new IceError('CHECKPOINT_INVALID', `${file}: checkpoint format ${meta?.ice_format ?? '(none)'} is not ${CHECKPOINT_FORMAT}`);
    const { step } = parseJson<TrainerState>(file, meta, 'ice_trainer_state');
    if (!Number.isSafeInteger(step) || step < 0) throw new IceError('CHECKPOINT_INVALID', `${file}: step ${String(step)} is not a step`);
    return step;
  } finally {
    fs.closeSync(fd);
  }
}

function parseJson<T>(file: string, metadata: Record<string, string>, key: string): T {
  const raw = metadata[key];
  if (raw === undefined)
    throw new IceError('CHECKPOINT_INVALID', `${file} is not a training checkpoint of this project (no ${key} in its metadata)`);
  try {
    return JSON.parse(raw) as T;
  } catch (e) {
    throw new IceError('CHECKPOINT_INVALID', `${file}: metadata ${key} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Rebuilds model, optimizer and PRNG from a checkpoint; training continues where it stopped. */
export function loadCheckpoint(file: string): { model: IceVit; trainer: IceTrainer; info: CheckpointInfo } {
  const { tensors, metadata } = readSafetensors(file);
  if (metadata.ice_format !== CHECKPOINT_FORMAT) {
    throw new IceError('CHECKPOINT_INVALID', `${file}: checkpoint format ${metadata.ice_format ?? '(none)'} is not ${CHECKPOINT_FORMAT}`);
  }
  const modelConfig = validateVitConfig(parseJson(file, metadata, ICE_CONFIG_METADATA));
  const trainConfig = parseJson<TrainConfig>(file, metadata, 'ice_train_config');
  const trainerState = parseJson<TrainerState>(file, metadata, 'ice_trainer_state');
  const weights: StateDict = new Map();
  const m = new Map<string, tf.Tensor>();
  const v = new Map<string, tf.Tensor>();
  for (const [name, rec] of tensors) {
    if (name.startsWith(M)) m.set(name.slice(M.length), tf.tensor(rec.data as Float32Array, rec.shape, 'float32'));
    else if (name.startsWith(V)) v.set(name.slice(V.length), tf.tensor(rec.data as Float32Array, rec.shape, 'float32'));
    else weights.set(name, rec);
  }
  const model = IceVit.create(modelConfig);
  try {
    model.loadStateDict(weights);
    const trainer = new IceTrainer(model, trainConfig);
    trainer.optimizer.setState({ step: trainerState.step, m, v });
    trainer.setState(trainerState);
    const extra = Object.fromEntries(Object.entries(metadata).filter(([k]) => !k.startsWith('ice_') && k !== 'format'));
    return { model, trainer, info: { step: trainerState.step, seed: trainConfig.seed, trainConfig, trainerState, extra } };
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    tf.dispose([...m.values(), ...v.values()]);
  }
}
