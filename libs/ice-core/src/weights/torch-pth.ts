/**
 * Reader for PyTorch checkpoints in the zip format `torch.save` writes since 1.6:
 * `<root>/data.pkl` (a pickle whose tensors refer to storages by persistent id) and
 * `<root>/data/<key>` (each storage's raw little-endian bytes).
 *
 * The unpickler is hand-written on purpose: it only builds data (dicts, lists, lazy tensor
 * references, opaque stand-ins for unknown classes) and never runs anything a pickle names, so a
 * hostile checkpoint cannot execute code; and the npm pickle parsers neither model torch's
 * persistent storages nor type their output.
 */
import { unzipSync } from 'fflate';
import { IceError } from '../errors';
import { decodeTensorBytes, readWeightsFileBytes } from './safetensors';
import { DTYPE_BYTES, DType, StateDict, TensorRecord, numel } from './state-dict';

// ---------------------------------------------------------------------------------------------
// Python values

/** A module-level name (class or function) referenced by the pickle. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An instance of a class this reader does not model (e.g. argparse.Namespace): kept, not interpreted. */
export class PyObject {
  /** What BUILD set (usually the instance __dict__ as a Map). */
  state: unknown = undefined;
  constructor(
    readonly cls: string,
    readonly args: readonly unknown[],
  ) {}
}

/** A storage named by a persistent id; its bytes are the zip entry `data/<key>`. */
export class TorchStorage {
  constructor(
    readonly key: string,
    readonly dtype: DType,
    /** Elements of `dtype` as recorded in the persistent id. */
    readonly numel: number,
    readonly location: string,
  ) {}
}

/**
 * A tensor as the pickle describes it: a strided view of a storage. Data is read only for the
 * tensors that end up in the returned state dict, so optimizer state in a training checkpoint
 * costs nothing to skip.
 */
export class TorchTensor {
  isParameter = false;
  constructor(
    readonly storage: TorchStorage,
    readonly dtype: DType,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}
}

type PersistentLoad = (pid: unknown) => unknown;

// ---------------------------------------------------------------------------------------------
// unpickler

const TORCH_STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'F32',
  DoubleStorage: 'F64',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
  UntypedStorage: 'U8',
};

const TORCH_DTYPES: Record<string, DType> = {
  float32: 'F32',
  float: 'F32',
  float64: 'F64',
  double: 'F64',
  float16: 'F16',
  half: 'F16',
  bfloat16: 'BF16',
  int64: 'I64',
  long: 'I64',
  int32: 'I32',
  int: 'I32',
  int16: 'I16',
  short: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};

/** dtype of a storage class (torch.FloatStorage, torch.storage.UntypedStorage) or a torch dtype (torch.float32). */
function torchDType(g: unknown): DType | undefined {
  if (!(g instanceof PyGlobal)) return undefined;
  if (g.module === 'torch' || g.module === 'torch.storage' || g.module === 'torch.cuda') {
    return TORCH_STORAGE_DTYPES[g.name] ?? (g.module === 'torch' ? TORCH_DTYPES[g.name] : undefined);
  }
  return undefined;
}

class PickleError extends Error {}

function asIndexList(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || !v.every((x): x is number => Number.isSafeInteger(x) && (x as number) >= 0)) {
    throw new PickleError(`${what} is not a tuple of non-negative integers: ${describe(v)}`);
  }
  return v;
}

function asIndex(v: unknown, what: string): number {
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw new PickleError(`${what} is not a non-negative integer: ${describe(v)}`);
  return v as number;
}

function describe(v: unknown): string {
  if (v instanceof PyGlobal) return v.qualifiedName;
  if (v instanceof PyObject) return `<${v.cls} object>`;
  if (v instanceof Map) return `dict(${v.size})`;
  if (typeof v === 'bigint') return v.toString();
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Narrows to a Python dict without letting `any` (what `instanceof Map` gives an unknown) leak out. */
function isDict(v: unknown): v is Map<unknown, unknown> {
  return v instanceof Map;
}

function isDictClass(name: string): boolean {
  return name === 'collections.OrderedDict' || name === 'builtins.dict' || name === '__builtin__.dict';
}

/** Calls a global the way unpickling would, but only for the few callables we model. */
function callGlobal(func: unknown, args: readonly unknown[]): unknown {
  if (!(func instanceof PyGlobal)) return new PyObject(`<call of ${describe(func)}>`, args);
  const name = func.qualifiedName;
  if (isDictClass(name)) {
    const m = new Map<unknown, unknown>();
    // OrderedDict(items) when a pickler passes the items as an argument instead of SETITEMS.
    if (Array.isArray(args[0])) for (const kv of args[0] as unknown[]) if (Array.isArray(kv) && kv.length === 2) m.set(kv[0], kv[1]);
    return m;
  }
  switch (name) {
    case 'torch._utils._rebuild_tensor':
    case 'torch._utils._rebuild_tensor_v2': {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      const [storage, offset, size, stride] = args;
      if (!(storage instanceof TorchStorage)) throw new PickleError(`${name}: first argument is not a storage: ${describe(storage)}`);
      return makeTensor(storage, storage.dtype, offset, size, stride);
    }
    case 'torch._utils._rebuild_tensor_v3': {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata]) over untyped bytes
      const [storage, offset, size, stride, , , dt] = args;
      if (!(storage instanceof TorchStorage)) throw new PickleError(`${name}: first argument is not a storage: ${describe(storage)}`);
      const dtype = torchDType(dt);
      if (!dtype) throw new PickleError(`${name}: unsupported dtype ${describe(dt)}`);
      return makeTensor(storage, dtype, offset, size, stride);
    }
    case 'torch._utils._rebuild_parameter':
    case 'torch._utils._rebuild_parameter_with_state': {
      const t = args[0];
      if (t instanceof TorchTensor) t.isParameter = true;
      return t;
    }
    case 'torch._tensor._rebuild_from_type_v2':
    case 'torch._tensor._rebuild_from_type': {
      // (func, new_type, args, state): a tensor subclass; the tensor itself is func(*args).
      const inner = args[2];
      return callGlobal(args[0], Array.isArray(inner) ? inner : []);
    }
    case '_codecs.encode': {
      // Protocol 2 pickles `bytes` as _codecs.encode(str, 'latin1').
      if (typeof args[0] === 'string') return Uint8Array.from(args[0], (c) => c.charCodeAt(0) & 0xff);
      return new PyObject(name, args);
    }
    default:
      return new PyObject(name, args);
  }
}

function makeTensor(storage: TorchStorage, dtype: DType, offset: unknown, size: unknown, stride: unknown): TorchTensor {
  const shape = asIndexList(size, 'tensor size');
  const strides = asIndexList(stride, 'tensor stride');
  if (shape.length !== strides.length) {
    throw new PickleError(`tensor size [${shape.join(', ')}] and stride [${strides.join(', ')}] differ in rank`);
  }
  return new TorchTensor(storage, dtype, asIndex(offset, 'storage offset'), shape, strides);
}

/**
 * Unpickles protocol 0-4 data (torch.save writes protocol 2). `persistentLoad` maps persistent ids
 * (torch's storages) to values. Dicts become Maps, tuples and lists arrays, unknown classes PyObject.
 */
export function unpickle(data: Uint8Array, persistentLoad?: PersistentLoad): unknown {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const text = new TextDecoder('utf-8');
  let pos = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const need = (n: number): number => {
    if (pos + n > data.length) throw new PickleError(`truncated: needs ${n} more bytes at offset ${pos}`);
    const p = pos;
    pos += n;
    return p;
  };
  const u8 = (): number => data[need(1)];
  const u16 = (): number => view.getUint16(need(2), true);
  const u32 = (): number => view.getUint32(need(4), true);
  const u64 = (): number => {
    const v = view.getBigUint64(need(8), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new PickleError(`length ${v} too large`);
    return Number(v);
  };
  const bytes = (n: number): Uint8Array => data.subarray(need(n), pos);
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) throw new PickleError(`truncated: unterminated line at offset ${pos}`);
    const s = text.decode(data.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0) throw new PickleError(`stack underflow at offset ${pos - 1}`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) throw new PickleError(`stack underflow at offset ${pos - 1}`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) throw new PickleError(`no MARK before offset ${pos - 1}`);
    stack = prev;
    return items;
  };
  const long = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const setItems = (dict: unknown, items: unknown[]): void => {
    if (!(dict instanceof Map)) {
      if (dict instanceof PyObject) return; // a dict subclass we do not model: keep it opaque
      throw new PickleError(`SETITEM(S) on a non-dict ${describe(dict)}`);
    }
    for (let i = 0; i + 1 < items.length; i += 2) dict.set(items[i], items[i + 1]);
  };
  const append = (list: unknown, items: unknown[]): void => {
    if (Array.isArray(list)) list.push(...items);
    else if (!(list instanceof PyObject)) throw new PickleError(`APPEND(S) on a non-list ${describe(list)}`);
  };
  const resolvePersistent = (pid: unknown): unknown => {
    if (!persistentLoad) throw new PickleError('persistent id without a persistent_load handler');
    return persistentLoad(pid);
  };

  for (;;) {
    const at = pos;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) throw new PickleError(`unsupported pickle protocol ${data[pos - 1]}`);
        break;
      case 0x95: // FRAME: framing is only a read-ahead hint
        u64();
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        if (stack.length > 0) pop();
        else popMark();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(view.getInt32(need(4), true));
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(long(bytes(u8())));
        break;
      case 0x8b: // LONG4
        stack.push(long(bytes(u32())));
        break;
      case 0x49: {
        // INT (protocol 0; also the old True/False spelling)
        const s = line();
        stack.push(s === '01' ? true : s === '00' ? false : Number.parseInt(s, 10));
        break;
      }
      case 0x4c: {
        // LONG (protocol 0)
        const s = line().replace(/L$/, '');
        const v = BigInt(s);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: // BINFLOAT (big-endian, as Python writes it)
        stack.push(view.getFloat64(need(8), false));
        break;
      case 0x46: // FLOAT
        stack.push(Number.parseFloat(line()));
        break;
      case 0x58: // BINUNICODE
        stack.push(text.decode(bytes(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text.decode(bytes(u8())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(text.decode(bytes(u64())));
        break;
      case 0x56: // UNICODE (raw-unicode-escape; plain text in practice)
        stack.push(line());
        break;
      case 0x54: // BINSTRING
        stack.push(Buffer.from(bytes(u32())).toString('latin1'));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(Buffer.from(bytes(u8())).toString('latin1'));
        break;
      case 0x53: {
        // STRING (quoted repr)
        const s = line();
        stack.push(s.length >= 2 && (s[0] === "'" || s[0] === '"') ? s.slice(1, -1) : s);
        break;
      }
      case 0x42: // BINBYTES
        stack.push(bytes(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(bytes(u64()).slice());
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        stack.push([a, b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push([a, b, c]);
        break;
      }
      case 0x74: // TUPLE
      case 0x6c: {
        // LIST
        const items = popMark();
        stack.push(items);
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        append(top(), [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        append(top(), items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: {
        // DICT
        const items = popMark();
        const m = new Map<unknown, unknown>();
        setItems(m, items);
        stack.push(m);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x8f: // EMPTY_SET (sets become arrays: nothing in a checkpoint needs set semantics)
        stack.push([]);
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        append(top(), items);
        break;
      }
      case 0x91: // FROZENSET
        stack.push(popMark());
        break;
      case 0x63: {
        // GLOBAL
        const module = line();
        stack.push(new PyGlobal(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw new PickleError('STACK_GLOBAL operands are not strings');
        stack.push(new PyGlobal(module, name));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const func = pop();
        stack.push(callGlobal(func, Array.isArray(args) ? args : [args]));
        break;
      }
      case 0x81: {
        // NEWOBJ: cls.__new__(cls, *args); same modelling as a call
        const args = pop();
        const cls = pop();
        stack.push(callGlobal(cls, Array.isArray(args) ? args : [args]));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        pop(); // kwargs
        const args = pop();
        const cls = pop();
        stack.push(callGlobal(cls, Array.isArray(args) ? args : [args]));
        break;
      }
      case 0x69: {
        // INST (protocol 0)
        const module = line();
        const name = line();
        stack.push(callGlobal(new PyGlobal(module, name), popMark()));
        break;
      }
      case 0x6f: {
        // OBJ (protocol 1)
        const items = popMark();
        const cls = items.shift();
        stack.push(callGlobal(cls, items));
        break;
      }
      case 0x62: {
        // BUILD: only opaque objects keep their state; dict attributes (OrderedDict._metadata) are not needed
        const state = pop();
        const obj = top();
        if (obj instanceof PyObject) obj.state = state;
        break;
      }
      case 0x51: // BINPERSID
        stack.push(resolvePersistent(pop()));
        break;
      case 0x50: // PERSID
        stack.push(resolvePersistent(line()));
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x70: // PUT
        memo.set(Number.parseInt(line(), 10), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: // LONG_BINGET
      case 0x67: {
        // GET
        const idx = op === 0x68 ? u8() : op === 0x6a ? u32() : Number.parseInt(line(), 10);
        if (!memo.has(idx)) throw new PickleError(`memo key ${idx} not defined (offset ${at})`);
        stack.push(memo.get(idx));
        break;
      }
      default:
        throw new PickleError(`unsupported opcode 0x${op.toString(16).padStart(2, '0')} at offset ${at}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// the zip container

export interface TorchCheckpoint {
  /** The selected state dict, materialised (contiguous, little-endian, F16/BF16 as Float32Array). */
  tensors: StateDict;
  /**
   * The whole unpickled object: Maps for dicts, arrays for tuples/lists, TorchTensor for tensors
   * (lazy: their data is not read), PyObject for instances of other classes (e.g. argparse.Namespace).
   */
  root: unknown;
  /** Where the state dict was found: '' for the top level, else the key ('model', 'state_dict', ...). */
  stateDictKey: string;
}

export interface ReadTorchOptions {
  /** Take the state dict from this top-level key (e.g. 'model_ema') instead of guessing. */
  key?: string;
}

/** Keys that training scripts commonly wrap the model's state dict in, in the order tried. */
const STATE_DICT_KEYS = ['model', 'state_dict', 'model_state_dict'];

function fail(source: string, problem: string): IceError {
  return new IceError('WEIGHTS_FORMAT', `${source}: ${problem}`, { file: source });
}

function isZip(buf: Uint8Array): boolean {
  return (
    buf.length >= 4 && buf[0] === 0x50 && buf[1] === 0x4b && (buf[2] === 0x03 || buf[2] === 0x05) && (buf[3] === 0x04 || buf[3] === 0x06)
  );
}

function unzip(buf: Uint8Array, source: string, filter: (name: string) => boolean): Record<string, Uint8Array> {
  try {
    return unzipSync(buf, { filter: (f) => filter(f.name) });
  } catch (e) {
    throw fail(source, `corrupt zip archive (${(e as Error).message})`);
  }
}

function hasTensor(m: Map<unknown, unknown>): boolean {
  for (const v of m.values()) if (v instanceof TorchTensor) return true;
  return false;
}

function topLevelKeys(root: unknown): string {
  if (!(root instanceof Map)) return `top level is ${describe(root)}`;
  return `top-level keys: ${[...root.keys()].map((k) => describe(k)).join(', ') || '(none)'}`;
}

function selectStateDict(root: unknown, source: string, key?: string): { dict: Map<unknown, unknown>; key: string } {
  if (key !== undefined) {
    const v = isDict(root) ? root.get(key) : undefined;
    if (!isDict(v)) {
      throw fail(source, `no state dict under key '${key}' (${topLevelKeys(root)})`);
    }
    return { dict: v, key };
  }
  if (isDict(root)) {
    for (const k of STATE_DICT_KEYS) {
      const v = root.get(k);
      if (isDict(v) && hasTensor(v)) return { dict: v, key: k };
    }
    if (hasTensor(root)) return { dict: root, key: '' };
  }
  throw fail(
    source,
    `no state dict found: expected a dict of tensors at the top level or under 'model'/'state_dict' (${topLevelKeys(root)})`,
  );
}

/** Copies a strided view out of its storage into contiguous row-major bytes, then decodes them. */
function materialize(t: TorchTensor, storageBytes: Uint8Array, name: string, source: string): TensorRecord {
  const es = DTYPE_BYTES[t.dtype];
  const n = numel(t.shape);
  const shape = [...t.shape];
  if (n === 0) return { dtype: t.dtype, shape, data: decodeTensorBytes(new Uint8Array(0), t.dtype, 0) };
  const available = Math.floor(storageBytes.length / es);
  let last = t.offset;
  for (let d = 0; d < shape.length; d++) last += (shape[d] - 1) * t.stride[d];
  if (last >= available) {
    throw fail(
      source,
      `tensor '${name}': view (offset ${t.offset}, size [${shape.join(', ')}], stride [${t.stride.join(', ')}]) reads ` +
        `element ${last} but storage data/${t.storage.key} has ${available} ${t.dtype} elements`,
    );
  }
  let contiguous = true;
  for (let d = shape.length - 1, expect = 1; d >= 0; d--) {
    if (shape[d] !== 1 && t.stride[d] !== expect) contiguous = false;
    expect *= shape[d];
  }
  if (contiguous) {
    return { dtype: t.dtype, shape, data: decodeTensorBytes(storageBytes.subarray(t.offset * es, (t.offset + n) * es), t.dtype, n) };
  }
  // General strided gather: an odometer over all but the innermost dimension.
  const out = new Uint8Array(n * es);
  const rank = shape.length;
  const inner = shape[rank - 1];
  const innerStride = t.stride[rank - 1];
  const idx = new Array<number>(rank).fill(0);
  let dst = 0;
  for (let done = 0; done < n; done += inner) {
    let src = t.offset;
    for (let d = 0; d < rank - 1; d++) src += idx[d] * t.stride[d];
    if (innerStride === 1) {
      out.set(storageBytes.subarray(src * es, (src + inner) * es), dst);
      dst += inner * es;
    } else {
      for (let i = 0; i < inner; i++, dst += es) {
        const s = (src + i * innerStride) * es;
        out.set(storageBytes.subarray(s, s + es), dst);
      }
    }
    for (let d = rank - 2; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return { dtype: t.dtype, shape, data: decodeTensorBytes(out, t.dtype, n) };
}

/** Parses a zip-format torch checkpoint already in memory; `source` names it in error messages. */
export function readTorchCheckpointBuffer(buf: Uint8Array, source = '<buffer>', opts: ReadTorchOptions = {}): TorchCheckpoint {
  if (!isZip(buf)) {
    if (buf.length >= 2 && buf[0] === 0x80 && buf[1] <= 5) {
      throw fail(
        source,
        'legacy (non-zip) PyTorch serialization is not supported; re-save it with torch.save() from torch >= 1.6 (zip format) or convert it to safetensors',
      );
    }
    throw fail(source, 'not a zip archive, so not a PyTorch checkpoint (torch.save zip format)');
  }

  // Pass 1: find the archive root (torch names it after the file; 'archive/' is only one choice)
  // by locating data.pkl at the shallowest depth.
  const names: string[] = [];
  const head = unzip(buf, source, (name) => {
    names.push(name);
    return /(^|\/)(data\.pkl|byteorder)$/.test(name);
  });
  const pkls = names.filter((n) => /(^|\/)data\.pkl$/.test(n));
  if (pkls.length === 0) throw fail(source, 'zip archive has no data.pkl: not a PyTorch checkpoint');
  const depth = (n: string): number => n.split('/').length;
  const minDepth = Math.min(...pkls.map(depth));
  const roots = pkls.filter((n) => depth(n) === minDepth);
  if (roots.length > 1) throw fail(source, `ambiguous checkpoint: several data.pkl entries (${roots.join(', ')})`);
  const prefix = roots[0].slice(0, -'data.pkl'.length);
  const byteorder = head[`${prefix}byteorder`];
  if (byteorder && new TextDecoder().decode(byteorder).trim() !== 'little') {
    throw fail(source, `big-endian checkpoints are not supported (byteorder '${new TextDecoder().decode(byteorder).trim()}')`);
  }

  const storages = new Map<string, TorchStorage>();
  const persistentLoad = (pid: unknown): unknown => {
    if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) {
      throw new PickleError(`unsupported persistent id ${describe(pid)}`);
    }
    const [, type, key, location, count] = pid as unknown[];
    const dtype = torchDType(type);
    if (!dtype) throw new PickleError(`unsupported storage type ${describe(type)}`);
    const k = typeof key === 'string' ? key : describe(key);
    let s = storages.get(k);
    if (!s) {
      s = new TorchStorage(k, dtype, asIndex(count, 'storage size'), typeof location === 'string' ? location : String(location));
      storages.set(k, s);
    }
    return s;
  };
  let root: unknown;
  try {
    root = unpickle(head[roots[0]], persistentLoad);
  } catch (e) {
    if (e instanceof PickleError) throw fail(source, `${roots[0]}: ${e.message}`);
    throw e;
  }

  const { dict, key } = selectStateDict(root, source, opts.key);
  const wanted = new Map<string, TorchTensor>();
  for (const [k, v] of dict) {
    const name = typeof k === 'string' ? k : describe(k);
    if (v instanceof TorchTensor) wanted.set(name, v);
    else if (v instanceof PyObject && v.cls.startsWith('torch.')) {
      throw fail(source, `tensor '${name}': unsupported tensor kind ${v.cls} (quantized/sparse tensors are not supported)`);
    }
    // Other values (e.g. '_extra_state', ints) are not weights.
  }
  if (wanted.size === 0) throw fail(source, `the state dict${key ? ` under '${key}'` : ''} contains no tensors`);

  // Pass 2: decompress only the storages the selected tensors use.
  const needed = new Set([...wanted.values()].map((t) => `${prefix}data/${t.storage.key}`));
  const blobs = unzip(buf, source, (name) => needed.has(name));
  const tensors: StateDict = new Map();
  for (const [name, t] of wanted) {
    const blob = blobs[`${prefix}data/${t.storage.key}`];
    if (!blob) throw fail(source, `tensor '${name}': storage entry ${prefix}data/${t.storage.key} is missing from the archive`);
    const storageBytes = t.storage.numel * DTYPE_BYTES[t.storage.dtype];
    if (blob.length < storageBytes) {
      throw fail(source, `tensor '${name}': storage data/${t.storage.key} has ${blob.length} bytes, ${storageBytes} expected (truncated?)`);
    }
    tensors.set(name, materialize(t, blob, name, source));
  }
  return { tensors, root, stateDictKey: key };
}

export function readTorchCheckpoint(file: string, opts: ReadTorchOptions = {}): TorchCheckpoint {
  return readTorchCheckpointBuffer(readWeightsFileBytes(file), file, opts);
}
