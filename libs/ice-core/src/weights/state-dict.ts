/**
 * A framework-neutral state dict: tensors by name, in the layout of the file they came from
 * (PyTorch layout for timm/DeiT files: Linear [out,in], Conv OIHW). Conversion to the layouts the
 * TensorFlow.js model keeps happens in one place, the model's loader.
 */
export type DType = 'F32' | 'F64' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export type TypedArray = Float32Array | Float64Array | Int32Array | Int16Array | Int8Array | Uint8Array | Uint16Array | BigInt64Array;

export interface TensorRecord {
  dtype: DType;
  shape: number[];
  /** Element data. F16/BF16 are decoded to Float32Array when read; I64 to BigInt64Array. */
  data: TypedArray;
}

export type StateDict = Map<string, TensorRecord>;

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Bytes per element as stored on disk (F16/BF16 are 2 even though they decode to Float32Array). */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  F64: 8,
  I64: 8,
  F32: 4,
  I32: 4,
  F16: 2,
  BF16: 2,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}
