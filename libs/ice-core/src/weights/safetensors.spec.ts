import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IceError } from '../errors';
import { readSafetensors, readSafetensorsBuffer, serializeSafetensors, writeSafetensors } from './safetensors';
import { StateDict, TensorRecord } from './state-dict';

const GOLDEN = path.resolve(__dirname, '../../../../../shared/golden');
const golden = (f: string): string => path.join(GOLDEN, f);

/** A safetensors file from a raw header object and data bytes (for malformed-file cases). */
function build(header: unknown, data: Uint8Array = new Uint8Array(0), headerText?: string): Buffer {
  const json = Buffer.from(headerText ?? JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

function expectFormatError(fn: () => unknown, ...patterns: RegExp[]): IceError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(IceError);
  const ice = err as IceError;
  expect(ice.code).toBe('WEIGHTS_FORMAT');
  for (const p of patterns) expect(ice.message).toMatch(p);
  return ice;
}

describe('readSafetensors on the golden files', () => {
  it('reads names in header order, shapes, F32 data and the metadata config', () => {
    const { tensors, metadata } = readSafetensors(golden('golden-micro.safetensors'));
    expect(tensors.size).toBe(33);
    expect([...tensors.keys()].slice(0, 3)).toEqual(['cls_token', 'pos_embed', 'patch_embed.proj.weight']);
    expect([...tensors.keys()].at(-1)).toBe('mlp_head.weight');
    const w = tensors.get('patch_embed.proj.weight')!;
    expect(w.dtype).toBe('F32');
    expect(w.shape).toEqual([64, 3, 8, 8]);
    expect(w.data).toBeInstanceOf(Float32Array);
    expect(w.data.length).toBe(64 * 3 * 8 * 8);
    expect(metadata.format).toBe('pt');
    expect(metadata.ice_head).toBe('official');
    const cfg = JSON.parse(metadata.config) as Record<string, unknown>;
    expect(cfg).toMatchObject({ embed_dim: 64, depth: 2, num_heads: 2, patch_size: 8, num_classes: 10, ice_classes: 11 });
  });

  it('reads I32 tensors (golden-explain target_class)', () => {
    const t = readSafetensors(golden('golden-explain.safetensors')).tensors.get('target_class')!;
    expect(t.dtype).toBe('I32');
    expect(Array.from(t.data as Int32Array)).toEqual([1, 7]);
  });

  it('re-serialises the golden files byte for byte', () => {
    for (const f of ['golden-micro.safetensors', 'golden-micro-io.safetensors', 'golden-explain.safetensors']) {
      const { tensors, metadata } = readSafetensors(golden(f));
      expect(Buffer.compare(Buffer.concat(serializeSafetensors(tensors, metadata)), fs.readFileSync(golden(f)))).toBe(0);
    }
  });
});

describe('writeSafetensors', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-st-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('round-trips every dtype, scalars, empty tensors and integer-like names', () => {
    const sd: StateDict = new Map<string, TensorRecord>([
      ['10', { dtype: 'F32', shape: [2, 2], data: Float32Array.of(1, -2, 3.5, 1e-30) }],
      ['2', { dtype: 'F64', shape: [], data: Float64Array.of(Math.PI) }],
      ['half', { dtype: 'F16', shape: [5], data: Float32Array.of(1, -0.5, 65504, 2 ** -24, 0) }],
      ['bf16', { dtype: 'BF16', shape: [3], data: Float32Array.of(1, -3.5, 2 ** 100) }],
      ['i64', { dtype: 'I64', shape: [2], data: BigInt64Array.of(-(2n ** 62n), 7n) }],
      ['i32', { dtype: 'I32', shape: [2], data: Int32Array.of(-5, 2 ** 31 - 1) }],
      ['i16', { dtype: 'I16', shape: [1], data: Int16Array.of(-300) }],
      ['i8', { dtype: 'I8', shape: [2], data: Int8Array.of(-128, 127) }],
      ['u8', { dtype: 'U8', shape: [3], data: Uint8Array.of(0, 200, 255) }],
      ['mask', { dtype: 'BOOL', shape: [2], data: Uint8Array.of(1, 0) }],
      ['empty', { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) }],
    ]);
    const file = path.join(dir, 'all.safetensors');
    writeSafetensors(file, sd, { note: 'x' });
    const bytes = fs.readFileSync(file);
    expect(Number(bytes.readBigUInt64LE(0)) % 8).toBe(0);
    const back = readSafetensors(file);
    expect(back.metadata).toEqual({ note: 'x' });
    expect([...back.tensors.keys()]).toEqual([...sd.keys()]);
    for (const [k, t] of sd) {
      const b = back.tensors.get(k)!;
      expect(b.dtype).toBe(t.dtype);
      expect(b.shape).toEqual(t.shape);
      expect(Array.from(b.data as ArrayLike<number | bigint>)).toEqual(Array.from(t.data as ArrayLike<number | bigint>));
    }
  });

  it('encodes F16/BF16 with round-to-nearest-even, overflow to infinity and NaN', () => {
    const sd: StateDict = new Map<string, TensorRecord>([
      ['h', { dtype: 'F16', shape: [5], data: Float32Array.of(1 / 3, 70000, 1 + 2 ** -11, 2 ** -26, NaN) }],
      ['b', { dtype: 'BF16', shape: [2], data: Float32Array.of(1 + 2 ** -8, 1 + 3 * 2 ** -8) }],
    ]);
    const bytes = Buffer.concat(serializeSafetensors(sd));
    const { tensors } = readSafetensorsBuffer(bytes);
    const h = tensors.get('h')!.data as Float32Array;
    expect(h[0]).toBe(0.333251953125); // 0x3555
    expect(h[1]).toBe(Infinity);
    expect(h[2]).toBe(1); // tie -> even
    expect(h[3]).toBe(0); // below half the smallest subnormal
    expect(Number.isNaN(h[4])).toBe(true);
    expect(Array.from(tensors.get('b')!.data as Float32Array)).toEqual([1, 1 + 2 ** -6]); // ties to even both ways
  });

  it('accepts raw 16-bit patterns for F16', () => {
    const sd: StateDict = new Map([['h', { dtype: 'F16', shape: [2], data: Uint16Array.of(0x3c00, 0xc000) }]]);
    expect(Array.from(readSafetensorsBuffer(Buffer.concat(serializeSafetensors(sd))).tensors.get('h')!.data as Float32Array)).toEqual([
      1, -2,
    ]);
  });

  it('replaces an existing file atomically and leaves no temp file; a failed write leaves the old file', () => {
    const file = path.join(dir, 'w.safetensors');
    writeSafetensors(file, new Map([['a', { dtype: 'F32', shape: [1], data: Float32Array.of(1) }]]));
    writeSafetensors(file, new Map([['a', { dtype: 'F32', shape: [1], data: Float32Array.of(2) }]]));
    expect(Array.from(readSafetensors(file).tensors.get('a')!.data as Float32Array)).toEqual([2]);
    const bad: StateDict = new Map([['a', { dtype: 'F32', shape: [3], data: Float32Array.of(9) }]]);
    expect(() => writeSafetensors(file, bad)).toThrow(/'a': 1 elements for shape \[3\]/);
    const wrongType: StateDict = new Map([['a', { dtype: 'I32', shape: [1], data: Float32Array.of(9) }]]);
    expect(() => writeSafetensors(file, wrongType)).toThrow(/dtype I32 needs a Int32Array/);
    expect(fs.readdirSync(dir)).toEqual(['w.safetensors']);
    expect(Array.from(readSafetensors(file).tensors.get('a')!.data as Float32Array)).toEqual([2]);
  });

  it('cleans up its temp file when the target cannot be replaced', () => {
    const target = path.join(dir, 'is-a-dir');
    fs.mkdirSync(path.join(target, 'child'), { recursive: true });
    expect(() => writeSafetensors(target, new Map([['a', { dtype: 'U8', shape: [1], data: Uint8Array.of(1) }]]))).toThrow();
    expect(fs.readdirSync(dir)).toEqual(['is-a-dir']);
  });
});

describe('readSafetensors validation', () => {
  const f32 = (n: number): Uint8Array => new Uint8Array(new Float32Array(n).buffer);

  it('FILE_NOT_FOUND for a missing file', () => {
    expect(() => readSafetensors('/nonexistent/x.safetensors')).toThrow(expect.objectContaining({ code: 'FILE_NOT_FOUND' }) as Error);
  });

  it('truncated file: names the file and the tensor whose data is missing', () => {
    const full = fs.readFileSync(golden('golden-micro.safetensors'));
    const cut = full.subarray(0, full.length - 1000);
    expectFormatError(
      () => readSafetensorsBuffer(cut, 'cut.safetensors'),
      /^cut\.safetensors: /,
      /tensor 'mlp_head\.weight'/,
      /out of range/,
    );
  });

  it('too short, header length beyond the file', () => {
    expectFormatError(() => readSafetensorsBuffer(Buffer.from([1, 2, 3]), 'tiny'), /tiny: file is 3 bytes/);
    const b = build({});
    b.writeBigUInt64LE(10_000n, 0);
    expectFormatError(() => readSafetensorsBuffer(b, 'big'), /header length 10000 exceeds the file size/);
  });

  it('invalid JSON, non-object header, bad metadata', () => {
    expectFormatError(
      () => readSafetensorsBuffer(build(null, undefined, '{"a": [1,'), 'bad.st'),
      /bad\.st: header is not valid UTF-8 JSON/,
    );
    expectFormatError(() => readSafetensorsBuffer(build([1, 2])), /header JSON is not an object/);
    expectFormatError(() => readSafetensorsBuffer(build({ __metadata__: { a: 1 } })), /__metadata__\.a is not a string/);
  });

  it('unknown dtype', () => {
    const h = { w: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } };
    expectFormatError(() => readSafetensorsBuffer(build(h, new Uint8Array(2)), 'f8'), /f8: tensor 'w': unknown dtype "F8_E4M3"/);
  });

  it('byte length that does not match numel x element size', () => {
    const h = { w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } };
    expectFormatError(
      () => readSafetensorsBuffer(build(h, new Uint8Array(20))),
      /tensor 'w': byte length 20 does not match shape \[2, 3\] x F32 \(6 x 4 = 24 bytes\)/,
    );
  });

  it('offsets out of range, reversed, overlapping, with gaps or trailing bytes; bad shapes', () => {
    const one = (offsets: unknown, shape: unknown = [1]): unknown => ({ dtype: 'F32', shape, data_offsets: offsets });
    expectFormatError(
      () => readSafetensorsBuffer(build({ a: one([0, 8], [2]) }, f32(1))),
      /tensor 'a': data_offsets \[0, 8\] out of range/,
    );
    expectFormatError(() => readSafetensorsBuffer(build({ a: one([4, 0]) }, f32(1))), /out of range/);
    expectFormatError(() => readSafetensorsBuffer(build({ a: one([0, 4]), b: one([2, 6]) }, f32(2))), /tensor 'b'.*overlap tensor 'a'/);
    expectFormatError(() => readSafetensorsBuffer(build({ a: one([0, 4]), b: one([8, 12]) }, f32(3))), /tensor 'b': 4 unused bytes/);
    expectFormatError(() => readSafetensorsBuffer(build({ a: one([0, 4]) }, f32(2))), /4 trailing bytes/);
    expectFormatError(() => readSafetensorsBuffer(build({ a: one([0, 4], [-1]) }, f32(1))), /tensor 'a': invalid shape/);
    expectFormatError(() => readSafetensorsBuffer(build({ a: one([0]) }, f32(1))), /tensor 'a': invalid data_offsets/);
  });

  it('orders tensors by data offset whatever the JSON key order', () => {
    const data = new Uint8Array(new Float32Array([1, 2]).buffer);
    const h = { b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] }, a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } };
    const { tensors } = readSafetensorsBuffer(build(h, data));
    expect([...tensors.keys()]).toEqual(['a', 'b']);
    expect(Array.from(tensors.get('b')!.data as Float32Array)).toEqual([2]);
  });
});
