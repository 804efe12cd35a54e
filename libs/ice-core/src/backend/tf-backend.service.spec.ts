import * as tf from '@tensorflow/tfjs-core';
import { nativeKernelsActive } from '@ice/native-kernels';
import { IceError } from '../errors';
import { backendInfo, initBackend, NATIVE_KERNELS_ENV, NATIVE_THREADS_ENV } from './tf-backend.service';

/**
 * The backend choice and the native kernels under it: what is logged and reported, that only the
 * wasm backend uses them, and that bad settings are refused with the variable's name.
 */

const NATIVE_OFF = process.env[NATIVE_KERNELS_ENV] === 'off';

describe('initBackend and the native kernels', () => {
  const saved = { kernels: process.env[NATIVE_KERNELS_ENV], threads: process.env[NATIVE_THREADS_ENV] };
  afterEach(() => {
    for (const [k, v] of [
      [NATIVE_KERNELS_ENV, saved.kernels],
      [NATIVE_THREADS_ENV, saved.threads],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('wasm: logs the native kernels on the backend line and reports them in backendInfo().native', async () => {
    const lines: string[] = [];
    const info = await initBackend('wasm', (m) => lines.push(m));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^tfjs backend: wasm \(@tensorflow\/tfjs-backend-wasm\); native kernels: /);
    expect(backendInfo()).toBe(info);
    if (NATIVE_OFF) {
      expect(info.native).toEqual({ kernels: 'off', threads: 0, reason: 'ICE_NATIVE_KERNELS=off' });
      expect(lines[0]).toContain('native kernels: off (ICE_NATIVE_KERNELS=off)');
      expect(nativeKernelsActive()).toBe(false);
    } else {
      // Where the addon or both libraries are missing, run the tests with ICE_NATIVE_KERNELS=off.
      expect(['dnnl', 'openblas']).toContain(info.native.kernels);
      expect(info.native.threads).toBe(1);
      expect(lines[0]).toMatch(/native kernels: (dnnl \(oneDNN \d|openblas \(OpenBLAS \d).*, 1 thread\)$/);
      expect(nativeKernelsActive()).toBe(true);
    }
  });

  it('cpu: native kernels are not used, and say why', async () => {
    const lines: string[] = [];
    const info = await initBackend('cpu', (m) => lines.push(m));
    expect(info.native).toEqual({ kernels: 'off', threads: 0, reason: 'the cpu backend has its own kernels' });
    expect(lines[0]).toContain('native kernels: off (the cpu backend has its own kernels)');
    expect(nativeKernelsActive()).toBe(false);
    const y = tf.matMul(tf.ones([2, 3]), tf.ones([2, 3]), false, true);
    expect(Array.from(y.dataSync())).toEqual([3, 3, 3, 3]);
  });

  it('refuses an unknown ICE_NATIVE_KERNELS value or a bad thread count, naming the variable', async () => {
    await initBackend('cpu');
    process.env[NATIVE_KERNELS_ENV] = 'mkl';
    await expect(initBackend('wasm')).rejects.toThrow(IceError);
    await expect(initBackend('wasm')).rejects.toThrow(/ICE_NATIVE_KERNELS=mkl is not a choice; use off, dnnl, openblas or auto/);
    process.env[NATIVE_KERNELS_ENV] = 'auto';
    process.env[NATIVE_THREADS_ENV] = '0';
    await expect(initBackend('wasm')).rejects.toThrow(/ICE_NATIVE_THREADS=0 is not a thread count/);
    process.env[NATIVE_THREADS_ENV] = '1.5';
    await expect(initBackend('wasm')).rejects.toThrow(/ICE_NATIVE_THREADS=1.5 is not a thread count/);
  });

  (NATIVE_OFF ? it.skip : it)('forcing a library that loads uses it; ICE_NATIVE_KERNELS=off switches them off', async () => {
    await initBackend('cpu');
    process.env[NATIVE_KERNELS_ENV] = 'openblas';
    process.env[NATIVE_THREADS_ENV] = '2';
    const info = await initBackend('wasm');
    expect(info.native).toMatchObject({ kernels: 'openblas', threads: 2 });
    expect(info.native.version).toMatch(/^OpenBLAS/);
    await initBackend('cpu');
    process.env[NATIVE_KERNELS_ENV] = 'off';
    const off = await initBackend('wasm');
    expect(off.native.kernels).toBe('off');
    expect(nativeKernelsActive()).toBe(false);
    await initBackend('cpu');
    delete process.env[NATIVE_KERNELS_ENV];
    delete process.env[NATIVE_THREADS_ENV];
    expect((await initBackend('wasm')).native.kernels).toBe('dnnl');
  });
});
