export type { NativeKernelsChoice, NativeKernelsInfo } from './native-kernels';
export {
  enableNativeKernels,
  disableNativeKernels,
  setNativeKernelsEnabled,
  nativeKernelsActive,
  nativeKernelsInfo,
} from './native-kernels';
export type { BlasLibrary } from './native-addon';
export { ADDON_PATH } from './native-addon';
export type { AdamWScalars } from './fused-ops';
export {
  fusedAdamW,
  fusedAttention,
  fusedAttentionGrad,
  fusedColSum,
  fusedGelu,
  fusedGeluGrad,
  fusedIceMargin,
  fusedLayerNorm,
  fusedLayerNormGrad,
} from './fused-ops';
export { copyTensorData } from './wasm-heap';
