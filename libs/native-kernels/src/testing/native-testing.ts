import * as tf from '@tensorflow/tfjs-core';
// tfjs-core's CommonJS build registers no gradients; the union package's node build does.
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { BlasLibrary } from '../native-addon';
import { enableNativeKernels } from '../native-kernels';

/**
 * Shared set-up of the native kernels' specs: the wasm backend with native kernels and the cpu
 * backend as the reference, in one process. `ICE_NATIVE_KERNELS=off` skips these specs (that pass
 * tests the stock fallback elsewhere); otherwise the addon must load and every library found is tested.
 */
export const NATIVE_SPECS_OFF = process.env.ICE_NATIVE_KERNELS === 'off';

/** The libraries that load here (forced by ICE_NATIVE_KERNELS=dnnl|openblas to just that one). */
export async function availableLibraries(): Promise<BlasLibrary[]> {
  await tf.setBackend('wasm');
  const forced = process.env.ICE_NATIVE_KERNELS;
  const wanted: BlasLibrary[] = forced === 'dnnl' || forced === 'openblas' ? [forced] : ['dnnl', 'openblas'];
  const found: BlasLibrary[] = [];
  for (const lib of wanted) {
    try {
      enableNativeKernels(lib, 1);
      found.push(lib);
    } catch {
      // not installed here; the spec's "at least one library" test reports it
    }
  }
  return found;
}

/** Runs f on `backend` (both are initialised, so the switch is immediate) and returns its values. */
export async function on(backend: 'wasm' | 'cpu', f: () => tf.Tensor): Promise<{ shape: number[]; values: Float32Array }> {
  await tf.setBackend(backend);
  const t = tf.tidy(f);
  const values = t.dataSync() as Float32Array;
  const shape = t.shape;
  t.dispose();
  return { shape, values: new Float32Array(values) };
}

/** Deterministic values in [-1, 1) as a plain array (a tensor is made on each backend from it). */
export function randomValues(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** max |a − b| / max(1, max |b|). */
export function relDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let d = 0;
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / Math.max(1, m);
}
