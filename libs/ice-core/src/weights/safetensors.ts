/**
 * Safetensors reader/writer (https://huggingface.co/docs/safetensors): an 8-byte little-endian
 * header length, a UTF-8 JSON header, then the raw little-endian tensor data. Validation is as
 * strict as the reference Rust implementation so that a file we accept loads everywhere else too.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IceError } from '../errors';
import { DTYPE_BYTES, DType, StateDict, TensorRecord, TypedArray, isDType, numel } from './state-dict';

export interface SafetensorsContent {
  tensors: StateDict;
  metadata: Record<string, string>;
}

/** Same cap as the reference implementation: a larger header is a corrupt length, not a real header. */
const MAX_HEADER_BYTES = 100_000_000;

// ---------------------------------------------------------------------------------------------
// dtype codecs (shared with the PyTorch reader)

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float32 -> IEEE half bits, round to nearest even (what torch's .half() does). */
function floatToHalf(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Half subnormal: value = m * 2^(exp-150), half unit = 2^-24, so shift right by 126 - exp.
    const shift = 126 - exp;
    if (shift > 24) return sign;
    const m = mant | 0x800000;
    const hm = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    return sign | (hm + (rem > halfway || (rem === halfway && hm & 1) ? 1 : 0));
  }
  const hm = mant >>> 13;
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  return sign | (((e << 10) | hm) + (rem > 0x1000 || (rem === 0x1000 && hm & 1) ? 1 : 0));
}

function floatToBf16(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0];
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) & 0x8000) | 0x7fc0;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * Decodes `count` little-endian elements of `dtype` from `bytes` (which must hold exactly that many).
 * Copies first: file offsets need not be aligned to the element size, typed-array views must be.
 */
export function decodeTensorBytes(bytes: Uint8Array, dtype: DType, count: number): TypedArray {
  // Not bytes.slice(): on a Node Buffer that is a view, and its .buffer is the whole pool.
  const copy = new Uint8Array(count * DTYPE_BYTES[dtype]);
  copy.set(bytes.subarray(0, copy.length));
  const buf = copy.buffer;
  switch (dtype) {
    case 'F32':
      return new Float32Array(buf);
    case 'F64':
      return new Float64Array(buf);
    case 'I64':
      return new BigInt64Array(buf);
    case 'I32':
      return new Int32Array(buf);
    case 'I16':
      return new Int16Array(buf);
    case 'I8':
      return new Int8Array(buf);
    case 'U8':
    case 'BOOL':
      return new Uint8Array(buf);
    case 'F16': {
      const bits = new Uint16Array(buf);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = halfToFloat(bits[i]);
      return out;
    }
    case 'BF16': {
      const bits = new Uint16Array(buf);
      const out = new Float32Array(count);
      const wide = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) wide[i] = bits[i] << 16;
      return out;
    }
  }
}

const ARRAY_KIND: Record<DType, string> = {
  F32: 'Float32Array',
  F64: 'Float64Array',
  I64: 'BigInt64Array',
  I32: 'Int32Array',
  I16: 'Int16Array',
  I8: 'Int8Array',
  U8: 'Uint8Array',
  BOOL: 'Uint8Array',
  F16: 'Float32Array or Uint16Array (raw bits)',
  BF16: 'Float32Array or Uint16Array (raw bits)',
};

/** The on-disk little-endian bytes of a tensor; F16/BF16 accept decoded floats or raw 16-bit patterns. */
export function encodeTensorData(name: string, t: TensorRecord): Uint8Array {
  const n = numel(t.shape);
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new IceError('INPUT_INVALID', `tensor '${name}': invalid shape [${t.shape.join(', ')}]`);
  }
  if (t.data.length !== n) {
    throw new IceError('INPUT_INVALID', `tensor '${name}': ${t.data.length} elements for shape [${t.shape.join(', ')}] (${n} expected)`);
  }
  const d = t.data;
  const asBytes = (a: TypedArray): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const ok = ((): boolean => {
    switch (t.dtype) {
      case 'F32':
        return d instanceof Float32Array;
      case 'F64':
        return d instanceof Float64Array;
      case 'I64':
        return d instanceof BigInt64Array;
      case 'I32':
        return d instanceof Int32Array;
      case 'I16':
        return d instanceof Int16Array;
      case 'I8':
        return d instanceof Int8Array;
      case 'U8':
      case 'BOOL':
        return d instanceof Uint8Array;
      case 'F16':
      case 'BF16':
        return d instanceof Float32Array || d instanceof Uint16Array;
    }
  })();
  if (!ok) {
    throw new IceError('INPUT_INVALID', `tensor '${name}': dtype ${t.dtype} needs a ${ARRAY_KIND[t.dtype]}, got ${d.constructor.name}`);
  }
  if ((t.dtype === 'F16' || t.dtype === 'BF16') && d instanceof Float32Array) {
    const enc = t.dtype === 'F16' ? floatToHalf : floatToBf16;
    const bits = new Uint16Array(n);
    for (let i = 0; i < n; i++) bits[i] = enc(d[i]);
    return asBytes(bits);
  }
  return asBytes(d);
}

// ---------------------------------------------------------------------------------------------
// reading

function fail(source: string, problem: string): IceError {
  return new IceError('WEIGHTS_FORMAT', `${source}: ${problem}`, { file: source });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

interface HeaderEntry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

function parseEntry(source: string, name: string, raw: unknown, dataBytes: number): HeaderEntry {
  const where = `tensor '${name}'`;
  if (!isPlainObject(raw)) throw fail(source, `${where}: header entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = raw;
  if (!isDType(dtype)) {
    throw fail(source, `${where}: unknown dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
  }
  if (!Array.isArray(shape) || !shape.every((d): d is number => Number.isSafeInteger(d) && (d as number) >= 0)) {
    throw fail(source, `${where}: invalid shape ${JSON.stringify(shape)}`);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o): o is number => Number.isSafeInteger(o) && (o as number) >= 0)
  ) {
    throw fail(source, `${where}: invalid data_offsets ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets;
  if (begin > end || end > dataBytes) {
    throw fail(source, `${where}: data_offsets [${begin}, ${end}] out of range (data section is ${dataBytes} bytes; file truncated?)`);
  }
  const n = numel(shape);
  const expected = n * DTYPE_BYTES[dtype];
  if (end - begin !== expected) {
    throw fail(
      source,
      `${where}: byte length ${end - begin} does not match shape [${shape.join(', ')}] x ${dtype} (${n} x ${DTYPE_BYTES[dtype]} = ${expected} bytes)`,
    );
  }
  return { name, dtype, shape, begin, end };
}

/** Parses a safetensors file already in memory; `source` names it in error messages. */
export function readSafetensorsBuffer(buf: Uint8Array, source = '<buffer>'): SafetensorsContent {
  if (buf.length < 8) throw fail(source, `file is ${buf.length} bytes, too short for a safetensors header`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(buf.length - 8)) {
    throw fail(source, `header length ${headerLen} exceeds the file size (${buf.length} bytes): not a safetensors file or truncated`);
  }
  if (headerLen > BigInt(MAX_HEADER_BYTES)) throw fail(source, `header length ${headerLen} is implausibly large`);
  const n = Number(headerLen);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + n)));
  } catch (e) {
    throw fail(source, `header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(header)) throw fail(source, 'header JSON is not an object');

  const dataStart = 8 + n;
  const dataBytes = buf.length - dataStart;
  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isPlainObject(raw)) throw fail(source, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') throw fail(source, `__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    entries.push(parseEntry(source, name, raw, dataBytes));
  }

  // Data order is the physical order, which is also header order for files written back to back
  // (and avoids JSON.parse's reordering of integer-like keys).
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: HeaderEntry | undefined;
  for (const e of entries) {
    if (e.begin < cursor) {
      throw fail(source, `tensor '${e.name}': data_offsets [${e.begin}, ${e.end}] overlap tensor '${prev?.name}' (ends at ${cursor})`);
    }
    if (e.begin > cursor) {
      throw fail(source, `tensor '${e.name}': ${e.begin - cursor} unused bytes before its data at offset ${e.begin}`);
    }
    cursor = e.end;
    prev = e;
  }
  if (cursor !== dataBytes) {
    throw fail(source, `${dataBytes - cursor} trailing bytes after the last tensor (data section is ${dataBytes} bytes)`);
  }

  const tensors: StateDict = new Map();
  for (const e of entries) {
    const count = numel(e.shape);
    tensors.set(e.name, {
      dtype: e.dtype,
      shape: e.shape,
      data: decodeTensorBytes(buf.subarray(dataStart + e.begin, dataStart + e.end), e.dtype, count),
    });
  }
  return { tensors, metadata };
}

export function readWeightsFileBytes(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new IceError('FILE_NOT_FOUND', `${file}: no such file`, { file });
    if (code === 'EISDIR') throw new IceError('FILE_NOT_FOUND', `${file}: is a directory, not a weights file`, { file });
    throw e;
  }
}

export function readSafetensors(file: string): SafetensorsContent {
  return readSafetensorsBuffer(readWeightsFileBytes(file), file);
}

// ---------------------------------------------------------------------------------------------
// writing

/** Serialises to safetensors bytes: header in Map order, data back to back in the same order. */
export function serializeSafetensors(tensors: StateDict, metadata?: Record<string, string>): Uint8Array[] {
  // Built by hand rather than from an object: JSON.stringify would move integer-like names first.
  const parts: string[] = [];
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new IceError('INPUT_INVALID', `metadata '${k}' must be a string`);
    }
    parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === '__metadata__') throw new IceError('INPUT_INVALID', `'__metadata__' is reserved and cannot name a tensor`);
    const bytes = encodeTensorData(name, t);
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":${JSON.stringify(t.shape)},"data_offsets":[${offset},${offset + bytes.length}]}`,
    );
    chunks.push(bytes);
    offset += bytes.length;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const head = Buffer.alloc(8 + padded, 0x20);
  head.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(head, 8);
  return [head, ...chunks];
}

/**
 * Writes atomically: a temp file in the same directory (so the rename cannot cross file systems),
 * fsynced, then renamed over the target, so a crash leaves either the old file or the new one.
 */
export function writeSafetensors(file: string, tensors: StateDict, metadata?: Record<string, string>): void {
  writeFileAtomic(file, serializeSafetensors(tensors, metadata));
}

export function writeFileAtomic(file: string, chunks: readonly Uint8Array[]): void {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(
    dir,
    `.${path.basename(file)}.${process.pid}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}.tmp`,
  );
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
    for (const c of chunks) {
      let written = 0;
      while (written < c.length) written += fs.writeSync(fd, c, written, c.length - written);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  // Persist the rename itself; not every platform allows fsync on a directory, hence best effort.
  try {
    const dfd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch {
    /* best effort */
  }
}
