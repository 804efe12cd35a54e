import * as fs from 'node:fs';
import * as path from 'node:path';
import { zipSync } from 'fflate';
import { IceError } from '../errors';
import { readSafetensors } from './safetensors';
import { PyObject, TorchTensor, readTorchCheckpoint, readTorchCheckpointBuffer, unpickle } from './torch-pth';

const GOLDEN = path.resolve(__dirname, '../../../../../shared/golden');

/** Emits pickle opcodes the way torch.save (protocol 2) does, for hand-made checkpoints. */
class Pickle {
  private readonly bytes: number[] = [0x80, 2];
  op(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  str(s: string): this {
    const u = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(u.length);
    return this.op(0x58, ...len, ...u); // BINUNICODE
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.op(0x4b, n); // BININT1
    if (n >= 0 && n < 65536) return this.op(0x4d, n & 0xff, n >> 8); // BININT2
    const b = Buffer.alloc(4);
    b.writeInt32LE(n);
    return this.op(0x4a, ...b); // BININT
  }
  float(x: number): this {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(x);
    return this.op(0x47, ...b); // BINFLOAT
  }
  global(module: string, name: string): this {
    return this.op(0x63, ...Buffer.from(`${module}\n${name}\n`, 'latin1'));
  }
  mark(): this {
    return this.op(0x28);
  }
  tuple(): this {
    return this.op(0x74);
  }
  /** size/stride tuples, using TUPLE1-3 where torch would. */
  ints(xs: number[]): this {
    if (xs.length >= 1 && xs.length <= 3) {
      xs.forEach((x) => this.int(x));
      return this.op(0x84 + xs.length);
    }
    this.mark();
    xs.forEach((x) => this.int(x));
    return this.tuple();
  }
  /** _rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict()). */
  tensor(storageType: string, key: string, storageNumel: number, offset: number, size: number[], stride: number[]): this {
    this.global('torch._utils', '_rebuild_tensor_v2').mark();
    this.mark().str('storage').global('torch', storageType).str(key).str('cpu').int(storageNumel).tuple().op(0x51); // BINPERSID
    this.int(offset).ints(size).ints(stride).op(0x89); // NEWFALSE
    this.global('collections', 'OrderedDict').op(0x29, 0x52); // EMPTY_TUPLE REDUCE
    return this.tuple().op(0x52);
  }
  done(): Uint8Array {
    return Uint8Array.from([...this.bytes, 0x2e]); // STOP
  }
}

const f32 = (xs: number[]): Uint8Array => new Uint8Array(Float32Array.from(xs).buffer);
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** {'model': OrderedDict(...), 'model_ema': OrderedDict(...), 'args': Namespace(lr=1e-4), 'epoch': 2**40} under root 'my-ckpt/'. */
function handMadeCheckpoint(): Uint8Array {
  const p = new Pickle();
  p.op(0x7d).mark(); // EMPTY_DICT MARK
  p.str('model').global('collections', 'OrderedDict').op(0x71, 0).op(0x29, 0x52).mark(); // BINPUT 0
  // storage 0 = float 0..11: a transposed 2x3 view at offset 2 -> rows (2,4,6), (3,5,7)
  p.str('transposed').tensor('FloatStorage', '0', 12, 2, [2, 3], [1, 2]);
  // inner stride 1, outer stride 6 at offset 1 -> rows (1,2), (7,8)
  p.str('rows').tensor('FloatStorage', '0', 12, 1, [2, 2], [6, 1]);
  // 3-D view with a broadcast (stride 0) dimension
  p.str('broadcast').tensor('FloatStorage', '0', 12, 4, [2, 2, 2], [0, 3, 1]);
  // a Parameter over half storage, offset 1
  p.str('param').global('torch._utils', '_rebuild_parameter');
  p.tensor('HalfStorage', '1', 4, 1, [3], [1]).op(0x88).op(0x68, 0).op(0x29, 0x52).op(0x87, 0x52); // NEWTRUE BINGET0 () REDUCE TUPLE3 REDUCE
  // int64 with a non-unit inner stride
  p.str('long').tensor('LongStorage', '2', 6, 0, [3], [2]);
  p.str('not_a_tensor').int(5);
  p.op(0x75); // SETITEMS
  p.str('model_ema').op(0x68, 0).op(0x29, 0x52).mark().str('w').tensor('FloatStorage', '3', 2, 0, [2], [1]).op(0x75);
  p.str('args').global('argparse', 'Namespace').op(0x29, 0x81).op(0x7d).str('lr').float(1e-4).op(0x73, 0x62); // NEWOBJ {} SETITEM BUILD
  p.str('epoch').op(0x8a, 6, 0, 0, 0, 0, 0, 1); // LONG1 2**40
  p.op(0x75);
  const half = new Uint8Array(new Uint16Array([0x3c00, 0x4000, 0xb800, 0x7bff]).buffer); // 1, 2, -0.5, 65504
  const long = new Uint8Array(BigInt64Array.from([10n, -1n, 20n, -2n, -(2n ** 60n), 0n]).buffer);
  return zipSync({
    'my-ckpt/data.pkl': [p.done(), { level: 0 }],
    'my-ckpt/byteorder': [Buffer.from('little'), { level: 0 }],
    'my-ckpt/data/0': [f32(range(12)), { level: 0 }],
    'my-ckpt/data/1': [half, { level: 6 }], // deflated entries are read too
    'my-ckpt/data/2': [long, { level: 0 }],
    'my-ckpt/data/3': [f32([0.5, 0.25]), { level: 0 }],
    'my-ckpt/version': [Buffer.from('3\n'), { level: 0 }],
  });
}

function formatError(fn: () => unknown): IceError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(IceError);
    expect((e as IceError).code).toBe('WEIGHTS_FORMAT');
    return e as IceError;
  }
  throw new Error('expected a WEIGHTS_FORMAT error');
}

describe('readTorchCheckpoint', () => {
  it('golden-micro.pth holds exactly the tensors of golden-micro.safetensors (names, order, shapes, bytes)', () => {
    const pth = readTorchCheckpoint(path.join(GOLDEN, 'golden-micro.pth'));
    const st = readSafetensors(path.join(GOLDEN, 'golden-micro.safetensors')).tensors;
    expect(pth.stateDictKey).toBe('model');
    expect([...pth.tensors.keys()]).toEqual([...st.keys()]);
    for (const [name, t] of st) {
      const u = pth.tensors.get(name)!;
      expect(u.dtype).toBe(t.dtype);
      expect(u.shape).toEqual(t.shape);
      expect(
        Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength).equals(
          Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
        ),
      ).toBe(true);
    }
    expect(pth.root).toBeInstanceOf(Map);
    expect((pth.root as Map<string, Map<string, unknown>>).get('model')!.get('cls_token')).toBeInstanceOf(TorchTensor);
  });

  it('materialises strided views, storage offsets, parameters, half and int64 storages', () => {
    const { tensors, root, stateDictKey } = readTorchCheckpointBuffer(handMadeCheckpoint(), 'hand.pth');
    expect(stateDictKey).toBe('model');
    expect([...tensors.keys()]).toEqual(['transposed', 'rows', 'broadcast', 'param', 'long']);
    const vals = (k: string): unknown[] => Array.from(tensors.get(k)!.data as ArrayLike<unknown>);
    expect(tensors.get('transposed')!.shape).toEqual([2, 3]);
    expect(vals('transposed')).toEqual([2, 4, 6, 3, 5, 7]);
    expect(vals('rows')).toEqual([1, 2, 7, 8]);
    expect(vals('broadcast')).toEqual([4, 5, 7, 8, 4, 5, 7, 8]);
    expect(tensors.get('param')!.dtype).toBe('F16');
    expect(tensors.get('param')!.data).toBeInstanceOf(Float32Array);
    expect(vals('param')).toEqual([2, -0.5, 65504]);
    expect(tensors.get('long')!.dtype).toBe('I64');
    expect(vals('long')).toEqual([10n, 20n, -(2n ** 60n)]);

    // Everything else survives as data: the Namespace is opaque, the big int exact.
    const r = root as Map<string, unknown>;
    const args = r.get('args') as PyObject;
    expect(args).toBeInstanceOf(PyObject);
    expect(args.cls).toBe('argparse.Namespace');
    expect((args.state as Map<string, unknown>).get('lr')).toBe(1e-4);
    expect(r.get('epoch')).toBe(2 ** 40);
  });

  it('reads another wrapping key on request', () => {
    const { tensors, stateDictKey } = readTorchCheckpointBuffer(handMadeCheckpoint(), 'hand.pth', { key: 'model_ema' });
    expect(stateDictKey).toBe('model_ema');
    expect(Array.from(tensors.get('w')!.data as Float32Array)).toEqual([0.5, 0.25]);
    expect(formatError(() => readTorchCheckpointBuffer(handMadeCheckpoint(), 'hand.pth', { key: 'nope' })).message).toMatch(
      /hand\.pth: no state dict under key 'nope' \(top-level keys: "model", "model_ema", "args", "epoch"\)/,
    );
  });

  it('accepts a bare state dict and a {state_dict: ...} wrapping', () => {
    const bare = new Pickle().op(0x7d).str('x').tensor('FloatStorage', '0', 2, 0, [2], [1]).op(0x73).done();
    const zipBare = zipSync({ 'archive/data.pkl': bare, 'archive/data/0': f32([1, 2]) });
    const a = readTorchCheckpointBuffer(zipBare);
    expect(a.stateDictKey).toBe('');
    expect(Array.from(a.tensors.get('x')!.data as Float32Array)).toEqual([1, 2]);
    const wrapped = new Pickle()
      .op(0x7d)
      .str('state_dict')
      .op(0x7d)
      .str('x')
      .tensor('FloatStorage', '0', 2, 1, [1], [1])
      .op(0x73, 0x73)
      .done();
    const b = readTorchCheckpointBuffer(zipSync({ 'w/data.pkl': wrapped, 'w/data/0': f32([1, 2]) }));
    expect(b.stateDictKey).toBe('state_dict');
    expect(Array.from(b.tensors.get('x')!.data as Float32Array)).toEqual([2]);
  });

  it('rejects legacy, corrupt, truncated and foreign files with specific messages', () => {
    // torch < 1.6 files start with a pickled magic number, not 'PK'
    const legacy = Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]);
    expect(formatError(() => readTorchCheckpointBuffer(legacy, 'old.pth')).message).toMatch(
      /old\.pth: legacy \(non-zip\) PyTorch serialization/,
    );
    const corrupt = Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(100, 7)]);
    expect(formatError(() => readTorchCheckpointBuffer(corrupt, 'c.pth')).message).toMatch(/c\.pth: corrupt zip archive/);
    const full = fs.readFileSync(path.join(GOLDEN, 'golden-micro.pth'));
    expect(formatError(() => readTorchCheckpointBuffer(full.subarray(0, full.length / 2), 'half.pth')).message).toMatch(
      /half\.pth: corrupt zip/,
    );
    expect(formatError(() => readTorchCheckpointBuffer(Buffer.from('hello world'), 'x.bin')).message).toMatch(/not a zip archive/);
    const noPkl = zipSync({ 'a/readme.txt': Buffer.from('hi') });
    expect(formatError(() => readTorchCheckpointBuffer(noPkl, 'n.zip')).message).toMatch(/n\.zip: zip archive has no data\.pkl/);
  });

  it('rejects views past the end of their storage, missing storages and bad pickles', () => {
    const past = new Pickle().op(0x7d).str('x').tensor('FloatStorage', '0', 2, 1, [2], [1]).op(0x73).done();
    expect(formatError(() => readTorchCheckpointBuffer(zipSync({ 'r/data.pkl': past, 'r/data/0': f32([1, 2]) }), 'p.pth')).message).toMatch(
      /p\.pth: tensor 'x': view .* reads element 2 but storage data\/0 has 2 F32 elements/,
    );
    expect(formatError(() => readTorchCheckpointBuffer(zipSync({ 'r/data.pkl': past }), 'm.pth')).message).toMatch(
      /tensor 'x': storage entry r\/data\/0 is missing/,
    );
    const short = new Pickle().op(0x7d).str('x').tensor('FloatStorage', '0', 4, 0, [2], [1]).op(0x73).done();
    expect(formatError(() => readTorchCheckpointBuffer(zipSync({ 'r/data.pkl': short, 'r/data/0': f32([1]) }), 's.pth')).message).toMatch(
      /tensor 'x': storage data\/0 has 4 bytes, 16 expected/,
    );
    const badOp = Uint8Array.from([0x80, 2, 0xff, 0x2e]);
    expect(formatError(() => readTorchCheckpointBuffer(zipSync({ 'r/data.pkl': badOp }), 'b.pth')).message).toMatch(
      /b\.pth: r\/data\.pkl: unsupported opcode 0xff at offset 2/,
    );
    const truncated = Uint8Array.from([0x80, 2, 0x58, 10, 0, 0, 0, 0x41]);
    expect(formatError(() => readTorchCheckpointBuffer(zipSync({ 'r/data.pkl': truncated }), 't.pth')).message).toMatch(/truncated/);
    const noTensors = new Pickle().op(0x7d).str('epoch').int(3).op(0x73).done();
    expect(formatError(() => readTorchCheckpointBuffer(zipSync({ 'r/data.pkl': noTensors }), 'e.pth')).message).toMatch(
      /e\.pth: no state dict found.*top-level keys: "epoch"/,
    );
  });

  it('FILE_NOT_FOUND for a missing path', () => {
    expect(() => readTorchCheckpoint('/nonexistent.pth')).toThrow(expect.objectContaining({ code: 'FILE_NOT_FOUND' }) as Error);
  });
});

describe('unpickle', () => {
  it('handles memo, lists, tuples, longs, floats and protocol-4 framing', () => {
    const p = new Pickle();
    p.op(0x5d, 0x94).mark().int(-7).int(70000).op(0x8a, 2, 0x00, 0x80).float(-2.5).op(0x4e, 0x88).op(0x65); // [] MEMOIZE MARK ... APPENDS
    p.op(0x8c, 1, 0x61).op(0x68, 0).op(0x86); // SHORT_BINUNICODE 'a', BINGET 0, TUPLE2
    const bytes = p.done();
    const framed = Uint8Array.from([0x80, 4, 0x95, ...new Uint8Array(8), ...bytes.subarray(2)]);
    const v = unpickle(framed) as unknown[];
    expect(v[0]).toBe('a');
    expect(v[1]).toEqual([-7, 70000, -32768, -2.5, null, true]);
  });
});
