/**
 * One entry point for weight files: the format is decided by the file's first bytes, not its
 * extension, because checkpoints get renamed (.pth, .pt, .bin, .ckpt) freely.
 */
import { readWeightsFileBytes, readSafetensorsBuffer } from './safetensors';
import { StateDict } from './state-dict';
import { readTorchCheckpointBuffer } from './torch-pth';

export type WeightsFormat = 'safetensors' | 'pth';

export interface WeightsFile {
  format: WeightsFormat;
  tensors: StateDict;
  /** Safetensors `__metadata__`; for PyTorch checkpoints `{}` (a pickle has no string metadata). */
  metadata: Record<string, string>;
  /** PyTorch checkpoints only: where the state dict was found ('' = top level, or e.g. 'model'). */
  stateDictKey?: string;
}

export interface ReadWeightsOptions {
  /** PyTorch checkpoints: read the state dict under this top-level key (e.g. 'model_ema'). */
  key?: string;
}

/** 'PK' starts a zip (torch.save); a leading pickle PROTO byte is a legacy torch file. */
export function detectWeightsFormat(buf: Uint8Array): WeightsFormat {
  const zip = buf.length >= 2 && buf[0] === 0x50 && buf[1] === 0x4b;
  const legacyTorch = buf.length >= 2 && buf[0] === 0x80 && buf[1] <= 5;
  return zip || legacyTorch ? 'pth' : 'safetensors';
}

export function readWeightsBuffer(buf: Uint8Array, source = '<buffer>', opts: ReadWeightsOptions = {}): WeightsFile {
  if (detectWeightsFormat(buf) === 'pth') {
    const ckpt = readTorchCheckpointBuffer(buf, source, opts);
    return { format: 'pth', tensors: ckpt.tensors, metadata: {}, stateDictKey: ckpt.stateDictKey };
  }
  const st = readSafetensorsBuffer(buf, source);
  return { format: 'safetensors', tensors: st.tensors, metadata: st.metadata };
}

/** Reads a safetensors file or a zip-format PyTorch checkpoint; FILE_NOT_FOUND if `file` is missing. */
export function readWeights(file: string, opts: ReadWeightsOptions = {}): WeightsFile {
  return readWeightsBuffer(readWeightsFileBytes(file), file, opts);
}
