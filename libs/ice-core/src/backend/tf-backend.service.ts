import * as tf from '@tensorflow/tfjs-core';
// tfjs-core's CommonJS build registers no gradients; the union package's node build does (training and the explainers need them).
import '@tensorflow/tfjs';
import { enableNativeKernels, NativeKernelsChoice, NativeKernelsInfo } from '@ice/native-kernels';
import { IceError } from '../errors';

/**
 * The one door to the TensorFlow.js runtime. Picks the fastest backend that loads here:
 * tensorflow (libtensorflow through @tensorflow/tfjs-node-gpu or -node, optional dependencies
 * that need internet at install time), else WebAssembly, else plain JS; `ICE_TF_BACKEND`
 * overrides the choice. Under WebAssembly, native kernels (@ice/native-kernels: GEMM on oneDNN or
 * OpenBLAS, fused LayerNorm/GELU/attention/AdamW loops) replace the hot stock kernels when the
 * addon was built and a library is found; `ICE_NATIVE_KERNELS=off|dnnl|openblas|auto` and
 * `ICE_NATIVE_THREADS` (default 1: workers are one process per core) control them.
 */
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export const BACKEND_ENV = 'ICE_TF_BACKEND';
export const NATIVE_KERNELS_ENV = 'ICE_NATIVE_KERNELS';
export const NATIVE_THREADS_ENV = 'ICE_NATIVE_THREADS';

const ORDER: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];

export interface BackendInfo {
  name: BackendName;
  /** Which package provided it (e.g. @tensorflow/tfjs-node-gpu). */
  provider: string;
  /** Why faster backends were skipped. */
  skipped: { name: BackendName; reason: string }[];
  /** Native kernels under the wasm backend: which library, or 'off' and why. */
  native: NativeKernelsInfo;
}

let current: BackendInfo | undefined;

function tryRegister(name: BackendName): string {
  switch (name) {
    case 'tensorflow': {
      const errors: string[] = [];
      for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
        try {
          // eslint-disable-next-line @typescript-eslint/no-require-imports
          require(pkg);
          return pkg;
        } catch (e) {
          errors.push(`${pkg}: ${(e as Error).message.split('\n')[0]}`);
        }
      }
      throw new Error(errors.join('; '));
    }
    case 'wasm':
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      require('@tensorflow/tfjs-backend-wasm');
      return '@tensorflow/tfjs-backend-wasm';
    case 'cpu':
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      require('@tensorflow/tfjs-backend-cpu');
      return '@tensorflow/tfjs-backend-cpu';
  }
}

function parseOverride(raw: string | undefined): BackendName | undefined {
  if (raw === undefined || raw === '' || raw === 'auto') return undefined;
  if ((ORDER as readonly string[]).includes(raw)) return raw as BackendName;
  throw new IceError('BACKEND_UNAVAILABLE', `${BACKEND_ENV}=${raw} is not a backend; use one of ${ORDER.join(', ')} or auto`);
}

function parseNative(raw: string | undefined): NativeKernelsChoice {
  if (raw === undefined || raw === '') return 'auto';
  if (raw === 'off' || raw === 'dnnl' || raw === 'openblas' || raw === 'auto') return raw;
  throw new IceError('BACKEND_UNAVAILABLE', `${NATIVE_KERNELS_ENV}=${raw} is not a choice; use off, dnnl, openblas or auto`);
}

function parseThreads(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 1;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 1024)
    throw new IceError('BACKEND_UNAVAILABLE', `${NATIVE_THREADS_ENV}=${raw} is not a thread count (a positive integer)`);
  return n;
}

/** Native kernels for the backend just set: only under wasm; a named library that does not load is an error. */
function nativeFor(name: BackendName): NativeKernelsInfo {
  const choice = parseNative(process.env[NATIVE_KERNELS_ENV]);
  const threads = parseThreads(process.env[NATIVE_THREADS_ENV]);
  if (name !== 'wasm') return { kernels: 'off', threads: 0, reason: `the ${name} backend has its own kernels` };
  try {
    return enableNativeKernels(choice, threads);
  } catch (e) {
    throw new IceError('BACKEND_UNAVAILABLE', `${NATIVE_KERNELS_ENV}=${choice}: ${(e as Error).message}`);
  }
}

function describeNative(n: NativeKernelsInfo): string {
  if (n.kernels === 'off') return `native kernels: off (${n.reason ?? 'not used'})`;
  return `native kernels: ${n.kernels} (${n.version}, ${n.path}, ${n.threads} thread${n.threads === 1 ? '' : 's'})`;
}

/**
 * Initialise TensorFlow.js once per process. `preferred` (or ICE_TF_BACKEND) forces one backend
 * and fails if it does not load; otherwise the first that loads in ORDER wins.
 */
export async function initBackend(preferred?: BackendName, log: (msg: string) => void = () => undefined): Promise<BackendInfo> {
  const forced = preferred ?? parseOverride(process.env[BACKEND_ENV]);
  if (current && (!forced || current.name === forced)) return current;
  const candidates = forced ? [forced] : ORDER;
  const skipped: BackendInfo['skipped'] = [];
  for (const name of candidates) {
    let provider: string;
    try {
      provider = tryRegister(name);
      if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') returned false`);
      await tf.ready();
    } catch (e) {
      skipped.push({ name, reason: (e as Error).message });
      continue;
    }
    current = { name, provider, skipped, native: nativeFor(name) };
    log(
      `tfjs backend: ${name} (${provider})${skipped.length ? `; skipped ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}` : ''}; ${describeNative(current.native)}`,
    );
    return current;
  }
  throw new IceError(
    'BACKEND_UNAVAILABLE',
    `no TensorFlow.js backend could be initialised: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`,
    { skipped },
  );
}

export function backendInfo(): BackendInfo | undefined {
  return current;
}
