import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The compiled N-API addon (native/ice_kernels.c, built by scripts/build.js at `npm ci`). Every
 * kernel takes the wasm heap's ArrayBuffer and a Float64Array of sizes and byte offsets.
 */
export type BlasLibrary = 'dnnl' | 'openblas';

export interface LoadedLibrary {
  library: BlasLibrary;
  /** Where the dynamic loader found it. */
  path: string;
  /** e.g. "oneDNN 2.6.3", or OpenBLAS's build configuration. */
  version: string;
  threads: number;
}

export interface NativeAddon {
  /** Opens the library (auto: oneDNN, else OpenBLAS) and makes it the one GEMM uses; throws why not. */
  load(which: BlasLibrary | 'auto', threads: number): LoadedLibrary;
  gemm(heap: ArrayBuffer, params: Float64Array): void;
  adamw(heap: ArrayBuffer, params: Float64Array): void;
  gelu(heap: ArrayBuffer, params: Float64Array): void;
  geluGrad(heap: ArrayBuffer, params: Float64Array): void;
  layerNorm(heap: ArrayBuffer, params: Float64Array): void;
  layerNormGrad(heap: ArrayBuffer, params: Float64Array): void;
  colSum(heap: ArrayBuffer, params: Float64Array): void;
  attention(heap: ArrayBuffer, params: Float64Array): void;
  attentionGrad(heap: ArrayBuffer, params: Float64Array): void;
  gather(heap: ArrayBuffer, params: Float64Array): void;
  iceMargin(heap: ArrayBuffer, params: Float64Array): void;
}

/** Where scripts/build.js puts the addon. */
export const ADDON_PATH = path.resolve(__dirname, '..', 'build', 'Release', 'ice_native.node');

let cached: { addon?: NativeAddon; error?: string } | undefined;

/** The addon, or why it is not there (not built: no compiler at install time, or a failed build). */
export function loadAddon(): { addon?: NativeAddon; error?: string } {
  if (cached) return cached;
  if (!fs.existsSync(ADDON_PATH)) {
    cached = {
      error: `the addon is not built (${path.relative(process.cwd(), ADDON_PATH)} missing; run: node libs/native-kernels/scripts/build.js)`,
    };
    return cached;
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = { addon: require(ADDON_PATH) as NativeAddon };
  } catch (e) {
    cached = { error: `the addon does not load: ${(e as Error).message.split('\n')[0]}` };
  }
  return cached;
}
