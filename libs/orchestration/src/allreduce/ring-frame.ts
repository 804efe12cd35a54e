import type { IceErrorCode } from '@ice/core';

/**
 * The wire format of the ring all-reduce: length-prefixed binary frames over one TCP connection
 * per ring neighbour. Every frame is a 16-byte little-endian header and a payload:
 *
 *   u32 payload bytes | u8 type | u8 protocol version | u16 ring step | u32 update step | u32 index
 *
 * DATA payloads are float32 (little-endian, as every platform Node runs on) segments of the
 * gradient; HELLO/WELCOME/REJECT payloads are UTF-8 JSON; BEGIN carries the gradient length in
 * `index`; HEARTBEAT and BYE are empty; MARK (shared-memory
 * groups, ring-shm.ts) is empty, with the phase in `ring step` and the rank it speaks for in `index`.
 *
 * Hand-written rather than taken from a library: the framing is 80 lines, and the packages that
 * do it (frame-stream, length-prefixed-stream, it-length-prefixed) allocate a Buffer per message
 * and hide the socket's backpressure behind stream piping, while zeromq brings a native addon
 * (a build step in every image) whose message copies and high-water marks would sit between the
 * gradient and the socket. Here a DATA payload goes to the socket as a view of the gradient and
 * arrives as a view of the socket's read buffer.
 */
export const FRAME_HEADER_BYTES = 16;
export const PROTOCOL_VERSION = 1;

export const FrameType = {
  Hello: 1,
  Welcome: 2,
  Reject: 3,
  Begin: 4,
  Data: 5,
  Heartbeat: 6,
  Bye: 7,
  Mark: 8,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];
const TYPES = new Set<number>(Object.values(FrameType));

export interface FrameHeader {
  type: FrameType;
  /** Ring step s of the all-reduce, 0 … 2(W−1)−1 (DATA only). */
  ringStep: number;
  /** The optimizer update the frame belongs to (BEGIN, DATA). */
  step: number;
  /** DATA: segment index within its chunk; BEGIN: float32 elements of the sender's gradient. */
  index: number;
  /** Payload bytes. */
  length: number;
}

/** A failure of the ring with the IceError code the reducer reports it under (no @ice/core at run time: the transport thread stays light). */
export class RingError extends Error {
  constructor(
    readonly code: IceErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'RingError';
  }
}

const U32 = 0xffff_ffff;

export function encodeHeader(h: Omit<FrameHeader, 'length'>, length: number): Buffer {
  for (const [k, v, max] of [
    ['ringStep', h.ringStep, 0xffff],
    ['step', h.step, U32],
    ['index', h.index, U32],
    ['length', length, U32],
  ] as const) {
    if (!Number.isInteger(v) || v < 0 || v > max)
      throw new RingError('INPUT_INVALID', `frame ${k} ${v} does not fit its field (0 … ${max})`);
  }
  const b = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  b.writeUInt32LE(length, 0);
  b.writeUInt8(h.type, 4);
  b.writeUInt8(PROTOCOL_VERSION, 5);
  b.writeUInt16LE(h.ringStep, 6);
  b.writeUInt32LE(h.step, 8);
  b.writeUInt32LE(h.index, 12);
  return b;
}

function decodeHeader(b: Buffer, at: number, maxPayload: number): FrameHeader {
  const length = b.readUInt32LE(at);
  const type = b.readUInt8(at + 4);
  const version = b.readUInt8(at + 5);
  if (version !== PROTOCOL_VERSION) {
    throw new RingError(
      'CONFIG_INVALID',
      `all-reduce peer speaks protocol version ${version}, this rank ${PROTOCOL_VERSION}: the workers run different code versions (or the port is not an all-reduce peer)`,
    );
  }
  if (!TYPES.has(type)) throw new RingError('INPUT_INVALID', `all-reduce frame of unknown type ${type}`);
  if (length > maxPayload) throw new RingError('INPUT_INVALID', `all-reduce frame of ${length} bytes exceeds the limit of ${maxPayload}`);
  return {
    type: type as FrameType,
    length,
    ringStep: b.readUInt16LE(at + 6),
    step: b.readUInt32LE(at + 8),
    index: b.readUInt32LE(at + 12),
  };
}

/**
 * Cuts a byte stream into frames, in one contiguous buffer of its own: bytes are written (by the
 * socket's read, through space()/commit(), or copied in by push()) right behind the unread ones,
 * so a frame is always whole in one place and its payload is a view, never a copy. Every frame is
 * a multiple of 4 bytes (JSON payloads are padded), so payloads sit 4-byte aligned and float32
 * views of them are free. When the free space runs short, the incomplete frame at the front is
 * moved to the start (at most one frame, rarely); a frame larger than the buffer grows it.
 * `onFrame` gets each payload as a view valid only during the call: a consumer that keeps it copies it.
 */
export class FrameDecoder {
  private buf: Buffer;
  private start = 0;
  private end = 0;

  constructor(
    private readonly onFrame: (h: FrameHeader, payload: Buffer) => void,
    private readonly maxPayload: number,
    /** Bytes of free space offered to each read. */
    private readonly minRead = 64 << 10,
    /** Initial size of the buffer (it grows for a frame that does not fit). */
    capacity = 2 * minRead,
  ) {
    this.buf = alignedBuffer(Math.max(capacity, 2 * minRead));
  }

  /** Where the next read may write (at least `minRead` bytes). */
  space(): Buffer {
    if (this.buf.length - this.end < this.minRead) {
      const live = this.end - this.start;
      if (live + this.minRead > this.buf.length) {
        const bigger = alignedBuffer(2 * (live + this.minRead));
        this.buf.copy(bigger, 0, this.start, this.end);
        this.buf = bigger;
      } else {
        this.buf.copyWithin(0, this.start, this.end);
      }
      this.start = 0;
      this.end = live;
    }
    return this.buf.subarray(this.end);
  }

  /** `n` bytes were written at space(); delivers every frame now complete. Throws RingError on a malformed stream. */
  commit(n: number): void {
    this.end += n;
    while (this.end - this.start >= FRAME_HEADER_BYTES) {
      const h = decodeHeader(this.buf, this.start, this.maxPayload);
      const total = FRAME_HEADER_BYTES + h.length;
      if (this.end - this.start < total) break;
      const at = this.start + FRAME_HEADER_BYTES;
      this.start += total;
      this.onFrame(h, this.buf.subarray(at, at + h.length));
    }
    if (this.start === this.end) this.start = this.end = 0;
  }

  /** Feeds bytes that arrived elsewhere (a socket's 'data' event): copied in, then decoded. */
  push(chunk: Buffer): void {
    for (let at = 0; at < chunk.length;) {
      const room = this.space();
      const n = Math.min(room.length, chunk.length - at);
      chunk.copy(room, 0, at, at + n);
      at += n;
      this.commit(n);
    }
  }
}

/** A Buffer on an ArrayBuffer of its own (so offset 0 is aligned for any typed view). */
function alignedBuffer(bytes: number): Buffer {
  return Buffer.from(new ArrayBuffer(bytes));
}

/** A float32 view of a DATA payload, copying only when the bytes are not 4-byte aligned. */
export function floatsOf(payload: Buffer): Float32Array {
  if (payload.length % 4 !== 0)
    throw new RingError('INPUT_INVALID', `all-reduce data frame of ${payload.length} bytes is not whole float32s`);
  if (payload.byteOffset % 4 === 0) return new Float32Array(payload.buffer, payload.byteOffset, payload.length / 4);
  const copy = new Float32Array(payload.length / 4);
  new Uint8Array(copy.buffer).set(payload);
  return copy;
}

/** JSON, padded with spaces to a multiple of 4 bytes so that the frames after it stay aligned. */
export function jsonPayload(value: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(value), 'utf8');
  const padded = Buffer.alloc(Math.ceil(json.length / 4) * 4, 0x20);
  json.copy(padded);
  return padded;
}

export function parseJsonPayload<T>(payload: Buffer, what: string): T {
  try {
    return JSON.parse(payload.toString('utf8')) as T;
  } catch {
    throw new RingError('INPUT_INVALID', `malformed all-reduce ${what} (not JSON)`);
  }
}
