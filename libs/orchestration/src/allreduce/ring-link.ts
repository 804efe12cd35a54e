import type * as net from 'node:net';
import { encodeHeader, FRAME_HEADER_BYTES, FrameDecoder, FrameType, RingError, type FrameHeader } from './ring-frame';

export interface RingLinkOptions {
  /** The rank at the other end (for messages). */
  peerRank: number;
  /** Silence (no byte at all) from the peer for this long fails the link. */
  heartbeatTimeoutMs: number;
  /** Largest payload accepted. */
  maxPayloadBytes: number;
  /** Bytes handed to the socket before waiting for 'drain' (the kernel buffer comes on top). */
  sendWindowBytes?: number;
  /**
   * The socket was created with `onread: { buffer: () => link.readSpace(), callback: (n) => link.readDone(n) }`:
   * it reads straight into the decoder's buffer. Otherwise the link listens to 'data' (a fresh
   * Buffer per read, copied into the decoder): fine for the little that flows that way.
   */
  externalReads?: boolean;
}

/** Why a link stopped: the peer closed or reset it, went silent, said goodbye, or spoke nonsense. */
export type LinkFailure =
  | { kind: 'closed'; detail: string }
  | { kind: 'silent'; silentMs: number }
  /** The peer left on purpose; `lastStep` is the last all-reduce it completed (none if undefined). */
  | { kind: 'bye'; lastStep: number | undefined }
  | { kind: 'protocol'; error: RingError };

const DEFAULT_SEND_WINDOW = 4 << 20;

interface Outgoing {
  header: Buffer;
  payload?: Uint8Array;
}

/**
 * One TCP connection to a ring neighbour. Frames go out in order through a queue that respects
 * the socket's backpressure (at most `sendWindowBytes` waiting in Node, then 'drain'); frames
 * come in through a FrameDecoder. Once started, heartbeats go out every quarter of the timeout,
 * and any byte from the peer counts as a sign of life, so a dead peer is seen at once (the
 * kernel closes its sockets) and a stalled or unreachable one within `heartbeatTimeoutMs`.
 */
export class RingLink {
  onFrame: (h: FrameHeader, payload: Buffer) => void = () => undefined;
  private failureHandler: ((f: LinkFailure) => void) | undefined;
  private failure: LinkFailure | undefined;
  private readonly decoder: FrameDecoder;
  private readonly queue: Outgoing[] = [];
  private queueHead = 0;
  private waitingForDrain = false;
  private inFlight = 0;
  private flushWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private heartbeat: NodeJS.Timeout | undefined;
  private lastHeard = Date.now();
  private closing = false;
  bytesSent = 0;
  bytesReceived = 0;

  constructor(
    readonly socket: net.Socket,
    private readonly o: RingLinkOptions,
  ) {
    socket.setNoDelay(true);
    this.decoder = new FrameDecoder(
      (h, p) => {
        if (h.type === FrameType.Heartbeat) return;
        if (h.type === FrameType.Bye) return this.fail({ kind: 'bye', lastStep: h.index === 1 ? h.step : undefined });
        this.onFrame(h, p);
      },
      o.maxPayloadBytes,
      64 << 10,
      // A link that carries the ring's data reads a few segments at a time; the others carry heartbeats.
      o.externalReads ? 4 * (o.maxPayloadBytes + FRAME_HEADER_BYTES) : 128 << 10,
    );
    if (!o.externalReads) socket.on('data', (chunk: Buffer) => this.received(chunk));
    socket.on('error', (e: NodeJS.ErrnoException) =>
      this.fail({ kind: 'closed', detail: e.code === 'ECONNRESET' || e.code === 'EPIPE' ? 'connection reset' : e.message }),
    );
    socket.on('close', () => this.fail({ kind: 'closed', detail: 'connection closed' }));
    socket.on('drain', () => {
      this.waitingForDrain = false;
      this.pump();
    });
  }

  /** Bytes from the peer, through a 'data' event. */
  received(chunk: Buffer): void {
    this.decode(chunk.length, () => this.decoder.push(chunk));
  }

  /** Where the socket's next read writes (`onread.buffer`). */
  readSpace(): Buffer {
    return this.decoder.space();
  }

  /** The socket wrote `n` bytes at readSpace() (`onread.callback`). */
  readDone(n: number): void {
    this.decode(n, () => this.decoder.commit(n));
  }

  private decode(n: number, feed: () => void): void {
    this.lastHeard = Date.now();
    this.bytesReceived += n;
    if (this.failure) return;
    try {
      feed();
    } catch (e) {
      const error = e instanceof RingError ? e : new RingError('INPUT_INVALID', (e as Error).message);
      this.fail({ kind: 'protocol', error });
    }
  }

  /** The rank at the other end; -1 until an incoming connection has said who it is. */
  get peerRank(): number {
    return this.o.peerRank;
  }

  set peerRank(rank: number) {
    this.o.peerRank = rank;
  }

  /** The first failure (later ones are consequences); called at most once. */
  onFailure(handler: (f: LinkFailure) => void): void {
    this.failureHandler = handler;
    if (this.failure) handler(this.failure);
  }

  get failed(): LinkFailure | undefined {
    return this.failure;
  }

  /** Starts sending heartbeats and watching for the peer's silence. */
  startHeartbeats(): void {
    if (this.heartbeat) return;
    this.lastHeard = Date.now();
    const every = Math.max(20, Math.floor(this.o.heartbeatTimeoutMs / 4));
    this.heartbeat = setInterval(() => {
      const silentMs = Date.now() - this.lastHeard;
      if (silentMs > this.o.heartbeatTimeoutMs) return this.fail({ kind: 'silent', silentMs });
      // A link busy with data needs no heartbeat; the peer hears the data.
      if (this.queue.length - this.queueHead === 0) this.send(FrameType.Heartbeat);
    }, every);
    this.heartbeat.unref();
  }

  /**
   * Queues a frame. `payload` is sent as it is when its turn comes, without a copy: the caller
   * leaves those bytes alone until flushed() resolves.
   */
  send(type: FrameType, fields: { ringStep?: number; step?: number; index?: number } = {}, payload?: Uint8Array): void {
    if (this.failure || this.closing) return;
    const header = encodeHeader(
      { type, ringStep: fields.ringStep ?? 0, step: fields.step ?? 0, index: fields.index ?? 0 },
      payload?.byteLength ?? 0,
    );
    this.queue.push({ header, payload });
    this.pump();
  }

  /** Resolves once every queued frame has been handed to the kernel; rejects if the link fails first. */
  flushed(): Promise<void> {
    if (this.failure) return Promise.reject(this.failureError());
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve, reject) => this.flushWaiters.push({ resolve, reject }));
  }

  private idle(): boolean {
    return this.queue.length === this.queueHead && this.inFlight === 0;
  }

  private pump(): void {
    const window = this.o.sendWindowBytes ?? DEFAULT_SEND_WINDOW;
    while (this.queueHead < this.queue.length && !this.waitingForDrain && !this.failure) {
      const f = this.queue[this.queueHead];
      this.queue[this.queueHead++] = undefined as unknown as Outgoing;
      const done = (e?: Error | null): void => {
        this.inFlight--;
        if (e) this.fail({ kind: 'closed', detail: e.message });
        else if (this.idle()) this.resolveFlush();
      };
      this.socket.cork();
      this.inFlight++;
      this.socket.write(f.header, done);
      if (f.payload && f.payload.byteLength) {
        this.inFlight++;
        this.socket.write(f.payload, done);
      }
      this.socket.uncork();
      this.bytesSent += f.header.length + (f.payload?.byteLength ?? 0);
      // write() says false past the socket's small high-water mark; keep going up to our window, then wait for 'drain'.
      if (this.socket.writableLength >= window) this.waitingForDrain = true;
    }
    if (this.queueHead === this.queue.length) {
      this.queue.length = 0;
      this.queueHead = 0;
      if (this.idle()) this.resolveFlush();
    }
  }

  private resolveFlush(): void {
    const w = this.flushWaiters;
    this.flushWaiters = [];
    for (const x of w) x.resolve();
  }

  private failureError(): RingError {
    const f = this.failure!;
    return new RingError('RANK_TIMEOUT', `link to rank ${this.o.peerRank} failed: ${describeFailure(f)}`);
  }

  fail(f: LinkFailure): void {
    if (this.failure) return;
    this.failure = f;
    this.stopHeartbeats();
    const w = this.flushWaiters;
    this.flushWaiters = [];
    for (const x of w) x.reject(this.failureError());
    this.socket.destroy();
    this.failureHandler?.(f);
  }

  private stopHeartbeats(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  /**
   * Goodbye (the peer learns that this rank left on purpose, after completing all-reduce
   * `lastStep`) and close; or just drop the connection.
   */
  async close(graceful: boolean, lastStep?: number): Promise<void> {
    this.stopHeartbeats();
    if (this.failure || this.socket.destroyed) return;
    if (graceful) {
      this.send(FrameType.Bye, lastStep === undefined ? {} : { step: lastStep, index: 1 });
      this.closing = true;
      await Promise.race([this.flushed().catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]);
      this.socket.end();
    }
    this.failure = { kind: 'closed', detail: 'closed by this rank' };
    this.socket.destroy();
  }
}

export function describeFailure(f: LinkFailure): string {
  switch (f.kind) {
    case 'closed':
      return `${f.detail} (its process died or its job stopped)`;
    case 'silent':
      return `no data and no heartbeat for ${f.silentMs} ms (its process is stalled, or the network between the ranks is down)`;
    case 'bye':
      return `it left the group (its run ended or failed outside the all-reduce${f.lastStep === undefined ? '' : `; its last all-reduce was step ${f.lastStep}`})`;
    case 'protocol':
      return f.error.message;
  }
}
