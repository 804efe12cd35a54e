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

/**
 * Copies a float32 tensor's values into dst at `offset`. On the wasm backend straight from the
 * heap: tf's dataSync would first copy them into a fresh array, and for a whole gradient per
 * step (22 MB for DeiT-Tiny) that garbage costs more than the copy — the collector's work and
 * the unmapping of large buffers slowed the all-reduce thread beside it from 11 to 20–50 ms
 * (bench:allreduce). Other backends: dataSync.
 */
export function copyTensorData(t: tf.Tensor, dst: Float32Array, offset: number): void {
  if (t.dtype !== 'float32') throw new Error(`copyTensorData: ${t.dtype} tensor, expected float32`);
  if (offset < 0 || offset + t.size > dst.length)
    throw new Error(`copyTensorData: ${t.size} values at ${offset} do not fit in ${dst.length}`);
  const be = tf.backend() as unknown as Partial<WasmBackendLike>;
  const d = tf.getBackend() === 'wasm' && be.dataIdMap && be.wasm ? be.dataIdMap.get(t.dataId) : undefined;
  if (d && be.wasm) dst.set(new Float32Array(be.wasm.HEAPU8.buffer, d.memoryOffset, t.size), offset);
  else dst.set(t.dataSync(), offset);
}
