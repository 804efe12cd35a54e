import * as tf from '@tensorflow/tfjs-core';

/**
 * The parts of tfjs-backend-wasm's BackendWasm (4.22, dist/backend_wasm.js) the native kernels use:
 * every tensor lives in the one WebAssembly.Memory at `dataIdMap.get(dataId).memoryOffset` (bytes),
 * `makeOutput` allocates on that heap (which may grow it, replacing `wasm.HEAPU8.buffer`).
 */
export interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  incRef(dataId: object): void;
}

/** Byte offset of a tensor's data in the wasm heap. */
export function offsetOf(backend: WasmBackendLike, t: tf.TensorInfo): number {
  const d = backend.dataIdMap.get(t.dataId);
  if (!d) throw new Error('native kernels: tensor data is not on the wasm backend');
  return d.memoryOffset;
}

/** The heap as it is now: read it after every allocation (growth replaces the buffer). */
export function heapOf(backend: WasmBackendLike): ArrayBuffer {
  return backend.wasm.HEAPU8.buffer as ArrayBuffer;
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
