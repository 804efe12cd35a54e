import {
  encodeHeader,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameType,
  floatsOf,
  jsonPayload,
  RingError,
  type FrameHeader,
} from './ring-frame';

/** A stream of frames as bytes, with what the decoder must give back. */
function stream(): { bytes: Buffer; frames: { h: Omit<FrameHeader, 'length'>; payload: Buffer }[] } {
  const floats = Float32Array.from({ length: 1000 }, (_, i) => Math.fround(Math.sin(i) * 1e3));
  const frames = [
    { h: { type: FrameType.Hello, ringStep: 0, step: 0, index: 0 }, payload: jsonPayload({ roundId: 'r-1', rank: 3, note: 'ünïcode' }) },
    { h: { type: FrameType.Heartbeat, ringStep: 0, step: 0, index: 0 }, payload: Buffer.alloc(0) },
    { h: { type: FrameType.Begin, ringStep: 0, step: 4_000_000_000, index: 5_717_416 }, payload: Buffer.alloc(0) },
    { h: { type: FrameType.Data, ringStep: 5, step: 17, index: 2 }, payload: Buffer.from(floats.buffer) },
    // JSON of an odd length: padded to a multiple of 4, so the frames behind it stay aligned.
    { h: { type: FrameType.Reject, ringStep: 0, step: 0, index: 0 }, payload: jsonPayload({ reason: 'x' }) },
    { h: { type: FrameType.Data, ringStep: 65535, step: 1, index: 0 }, payload: Buffer.from(floats.subarray(3, 10).slice().buffer) },
    { h: { type: FrameType.Bye, ringStep: 0, step: 0, index: 0 }, payload: Buffer.alloc(0) },
  ];
  const bytes = Buffer.concat(frames.flatMap((f) => [encodeHeader(f.h, f.payload.length), f.payload]));
  return { bytes, frames };
}

function decodeAll(chunks: Buffer[]): { h: FrameHeader; payload: Buffer }[] {
  const got: { h: FrameHeader; payload: Buffer }[] = [];
  // The payload is only valid during the call: copy it, as a consumer that keeps it must.
  const d = new FrameDecoder((h, payload) => got.push({ h, payload: Buffer.from(payload) }), 1 << 20);
  for (const c of chunks) d.push(c);
  return got;
}

describe('ring frames', () => {
  const { bytes, frames } = stream();

  function expectFrames(got: { h: FrameHeader; payload: Buffer }[]): void {
    expect(got).toHaveLength(frames.length);
    got.forEach((g, i) => {
      expect(g.h).toEqual({ ...frames[i].h, length: frames[i].payload.length });
      expect(g.payload.equals(frames[i].payload)).toBe(true);
    });
  }

  it('decodes a stream delivered in one piece', () => {
    expectFrames(decodeAll([bytes]));
  });

  it('decodes a stream delivered one byte at a time (headers and payloads split anywhere)', () => {
    expectFrames(decodeAll(Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1))));
  });

  it('decodes a stream cut at random places', () => {
    let s = 12345;
    for (let trial = 0; trial < 50; trial++) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < bytes.length;) {
        s = (s * 1103515245 + 12345) >>> 0;
        const n = 1 + (s % 700);
        chunks.push(bytes.subarray(at, at + n));
        at += n;
      }
      expectFrames(decodeAll(chunks));
    }
  });

  it('keeps frames whole and aligned in its buffer through compaction and growth, and hands out views (no copies)', () => {
    const got: { h: FrameHeader; payload: Buffer; aligned: boolean }[] = [];
    // A 256-byte buffer offering 64 bytes per read: the stream's 4 KB frame must grow it, the small ones move it.
    const d = new FrameDecoder(
      (h, payload) => got.push({ h, payload: Buffer.from(payload), aligned: payload.byteOffset % 4 === 0 }),
      1 << 20,
      64,
      256,
    );
    let s = 99;
    for (let at = 0; at < bytes.length;) {
      const room = d.space();
      expect(room.length).toBeGreaterThanOrEqual(64);
      s = (s * 1103515245 + 12345) >>> 0;
      // Reads of odd sizes, as loopback's 65483-byte segments give.
      const n = Math.min(room.length, bytes.length - at, 1 + (s % 97));
      bytes.copy(room, 0, at, at + n);
      at += n;
      d.commit(n);
    }
    expectFrames(got);
    expect(got.every((g) => g.aligned)).toBe(true);
  });

  it('reads float payloads as views when aligned and copies them when not', () => {
    const aligned = Buffer.from(new Float32Array([1, 2, 3]).buffer);
    const view = floatsOf(aligned);
    expect(view.buffer).toBe(aligned.buffer);
    const shifted = Buffer.from(new ArrayBuffer(13)).subarray(1);
    aligned.copy(shifted);
    const copy = floatsOf(shifted);
    expect(copy.buffer).not.toBe(shifted.buffer);
    expect(Array.from(copy)).toEqual([1, 2, 3]);
    expect(() => floatsOf(Buffer.alloc(6))).toThrow(/not whole float32s/);
  });

  it('refuses a peer of another protocol version, unknown frame types and oversized frames', () => {
    const h = encodeHeader({ type: FrameType.Data, ringStep: 0, step: 0, index: 0 }, 8);
    const other = Buffer.from(h);
    other.writeUInt8(9, 5);
    const decode =
      (b: Buffer, max = 1 << 20): (() => void) =>
      () =>
        new FrameDecoder(() => undefined, max).push(b);
    expect(decode(other)).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringMatching(/protocol version 9/) }) as Error,
    );
    const unknown = Buffer.from(h);
    unknown.writeUInt8(42, 4);
    expect(decode(unknown)).toThrow(/unknown type 42/);
    expect(decode(h, 4)).toThrow(/8 bytes exceeds the limit of 4/);
    expect(() => encodeHeader({ type: FrameType.Data, ringStep: 70_000, step: 0, index: 0 }, 0)).toThrow(RingError);
    expect(() => encodeHeader({ type: FrameType.Data, ringStep: 0, step: 2 ** 32, index: 0 }, 0)).toThrow(/step/);
    expect(FRAME_HEADER_BYTES).toBe(16);
    expect(jsonPayload({ reason: 'x' }).length % 4).toBe(0);
    expect(JSON.parse(jsonPayload({ reason: 'x' }).toString())).toEqual({ reason: 'x' });
  });
});
