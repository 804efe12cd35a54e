import * as tf from '@tensorflow/tfjs-core';
// tfjs-core's CommonJS build registers no gradients; the union package's node build does (training and the explainers need them).
import '@tensorflow/tfjs';
import { IceError } from '../errors';

/**
 * The one door to the TensorFlow.js runtime. Picks the fastest backend that loads here:
 * tensorflow (libtensorflow through @tensorflow/tfjs-node-gpu or -node, optional dependencies
 * that need internet at install time), else WebAssembly, else plain JS; `ICE_TF_BACKEND`
 * overrides the choice.
 */
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export const BACKEND_ENV = 'ICE_TF_BACKEND';

const ORDER: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];

export interface BackendInfo {
  name: BackendName;
  /** Which package provided it (e.g. @tensorflow/tfjs-node-gpu). */
  provider: string;
  /** Why faster backends were skipped. */
  skipped: { name: BackendName; reason: string }[];
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
    try {
      const provider = tryRegister(name);
      if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') returned false`);
      await tf.ready();
      current = { name, provider, skipped };
      log(
        `tfjs backend: ${name} (${provider})${skipped.length ? `; skipped ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}` : ''}`,
      );
      return current;
    } catch (e) {
      skipped.push({ name, reason: (e as Error).message });
    }
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
