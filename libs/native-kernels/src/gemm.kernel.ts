import * as tf from '@tensorflow/tfjs-core';
import { NativeAddon } from './native-addon';
import { heapOf, offsetOf, sizeOf, WasmBackendLike } from './wasm-heap';

/**
 * BatchMatMul and _FusedMatMul on the wasm heap through the native GEMM (oneDNN or OpenBLAS).
 * Semantics are the cpu backend's: any transpose flags, numpy broadcasting of the batch
 * dimensions (the general case too: [2,1,·,·]·[1,3,·,·]), a bias and prelu weights of any shape
 * that broadcasts to the output, the activations of tfjs's fused ops.
 */

/** Activation codes of native/ice_kernels.c. */
const ACTIVATIONS: Record<string, number> = { linear: 0, relu: 1, relu6: 2, prelu: 3, leakyrelu: 4, sigmoid: 5, elu: 6 };

export function isSupportedActivation(name: string): boolean {
  return name in ACTIVATIONS;
}

/** How an operand's batch index follows the output's: linearly (0 = broadcast, 1 = one each) or by an index table. */
type BatchMap = { step: 0 | 1 } | { index: Int32Array };

function batchMap(operandOuter: readonly number[], outer: readonly number[]): BatchMap {
  const n = sizeOf(operandOuter);
  const total = sizeOf(outer);
  if (n === 1) return { step: 0 };
  if (n === total) return { step: 1 };
  // Partial broadcasting: walk the output's batch indices, dropping the dimensions this operand broadcasts.
  const r = outer.length;
  const aligned = [...new Array<number>(r - operandOuter.length).fill(1), ...operandOuter];
  const index = new Int32Array(total);
  const idx = new Array<number>(r).fill(0);
  for (let i = 0; i < total; i++) {
    let off = 0;
    for (let d = 0; d < r; d++) off = off * aligned[d] + (aligned[d] === 1 ? 0 : idx[d]);
    index[i] = off;
    for (let d = r - 1; d >= 0; d--) {
      if (++idx[d] < outer[d]) break;
      idx[d] = 0;
    }
  }
  return { index };
}

function batchIndex(m: BatchMap, i: number): number {
  return 'index' in m ? m.index[i] : m.step * i;
}

/** An operand broadcast against the output [...outer, M, N]: element strides over rows and columns. */
interface Broadcast {
  map: BatchMap;
  /** Elements per batch entry. */
  perBatch: number;
  rowStride: number;
  colStride: number;
}

function broadcastTo(shape: readonly number[], outer: readonly number[], M: number, N: number, what: string): Broadcast {
  const out = [...outer, M, N];
  if (shape.length > out.length) throw new Error(`${what} of shape [${shape.join(',')}] does not broadcast to [${out.join(',')}]`);
  const s = [...new Array<number>(out.length - shape.length).fill(1), ...shape];
  s.forEach((d, i) => {
    if (d !== 1 && d !== out[i]) throw new Error(`${what} of shape [${shape.join(',')}] does not broadcast to [${out.join(',')}]`);
  });
  const sM = s[s.length - 2];
  const sN = s[s.length - 1];
  return { map: batchMap(s.slice(0, -2), outer), perBatch: sM * sN, rowStride: sM === 1 ? 0 : sN, colStride: sN === 1 ? 0 : 1 };
}

export interface GemmRequest {
  a: tf.TensorInfo;
  b: tf.TensorInfo;
  transposeA: boolean;
  transposeB: boolean;
  bias?: tf.TensorInfo;
  activation?: string;
  preluWeights?: tf.TensorInfo;
  leakyreluAlpha?: number;
}

const P = new Float64Array(25);

/** The product as a new tensor on the backend's heap. Throws tfjs's messages for mismatched shapes. */
export function nativeMatMul(addon: NativeAddon, backend: WasmBackendLike, r: GemmRequest): tf.TensorInfo {
  const { a, b, transposeA: tA, transposeB: tB } = r;
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2) throw new Error(`matMul needs rank ≥ 2 operands, got [${a.shape.join(',')}] and [${b.shape.join(',')}]`);
  const K = tA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kB = tB ? b.shape[rb - 1] : b.shape[rb - 2];
  if (K !== kB) {
    throw new Error(
      `Error in matMul: inner shapes (${K}) and (${kB}) of Tensors with shapes ${a.shape.join(',')} and ${b.shape.join(',')} and transposeA=${tA} and transposeB=${tB} must match.`,
    );
  }
  const M = tA ? a.shape[ra - 1] : a.shape[ra - 2];
  const N = tB ? b.shape[rb - 2] : b.shape[rb - 1];
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const act = ACTIVATIONS[r.activation ?? 'linear'];
  if (act === undefined) throw new Error(`native matMul: activation ${r.activation} is not supported`);
  const mapA = batchMap(a.shape.slice(0, -2), outer);
  const mapB = batchMap(b.shape.slice(0, -2), outer);
  const bias = r.bias ? broadcastTo(r.bias.shape, outer, M, N, 'bias') : undefined;
  const prelu = act === ACTIVATIONS.prelu ? broadcastTo(r.preluWeights!.shape, outer, M, N, 'prelu weights') : undefined;

  const out = backend.makeOutput([...outer, M, N], 'float32');
  const batch = sizeOf(outer);
  if (batch === 0 || M === 0 || N === 0) return out;
  const offA = offsetOf(backend, a);
  const offB = offsetOf(backend, b);
  const offC = offsetOf(backend, out);
  const offBias = r.bias ? offsetOf(backend, r.bias) : -1;
  const offPrelu = prelu ? offsetOf(backend, r.preluWeights!) : -1;
  const heap = heapOf(backend); // after makeOutput, which may have grown the memory

  P[1] = M;
  P[2] = N;
  P[3] = K;
  P[4] = tA ? 1 : 0;
  P[5] = tB ? 1 : 0;
  P[8] = tA ? M : K; // lda
  P[11] = tB ? K : N; // ldb
  P[14] = N; // ldc
  P[15] = offBias;
  P[16] = 0;
  P[17] = bias ? bias.rowStride : 0;
  P[18] = bias ? bias.colStride : 0;
  P[19] = act;
  P[20] = r.leakyreluAlpha ?? 0;
  P[21] = offPrelu;
  P[22] = 0;
  P[23] = prelu ? prelu.rowStride : 0;
  P[24] = prelu ? prelu.colStride : 0;
  const linear = [mapA, mapB, bias?.map, prelu?.map].every((m) => m === undefined || 'step' in m);
  if (linear) {
    // One call: every operand advances by a fixed stride per batch entry (0 when broadcast).
    P[0] = batch;
    P[6] = offA;
    P[7] = (mapA as { step: number }).step * M * K;
    P[9] = offB;
    P[10] = (mapB as { step: number }).step * K * N;
    P[12] = offC;
    P[13] = M * N;
    if (bias) P[16] = (bias.map as { step: number }).step * bias.perBatch;
    if (prelu) P[22] = (prelu.map as { step: number }).step * prelu.perBatch;
    addon.gemm(heap, P);
    return out;
  }
  // Partial broadcasting: one call per output batch entry.
  P[0] = 1;
  P[7] = P[10] = P[13] = 0;
  for (let i = 0; i < batch; i++) {
    P[6] = offA + 4 * batchIndex(mapA, i) * M * K;
    P[9] = offB + 4 * batchIndex(mapB, i) * K * N;
    P[12] = offC + 4 * i * M * N;
    if (bias) P[15] = offBias + 4 * batchIndex(bias.map, i) * bias.perBatch;
    if (prelu) P[21] = offPrelu + 4 * batchIndex(prelu.map, i) * prelu.perBatch;
    addon.gemm(heap, P);
  }
  return out;
}
