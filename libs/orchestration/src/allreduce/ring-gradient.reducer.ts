import type { Worker } from 'node:worker_threads';
import type * as tf from '@tensorflow/tfjs-core';
import {
  flattenGradients,
  IceError,
  moduleBeside,
  startThread,
  unflattenGradients,
  type GradientLayout,
  type GradientReducer,
  type IceErrorCode,
} from '@ice/core';
import { ADDON_PATH, copyTensorData } from '@ice/native-kernels';
import type { FromTransport, ToTransport, TransportOptions } from './ring-transport.thread';

export interface RingGradientReducerOptions {
  redisUrl: string;
  /** Namespace of the rendezvous keys, e.g. `${queuePrefix}:allreduce`. */
  keyPrefix: string;
  runId: string;
  rank: number;
  worldSize: number;
  /** How long a rank waits for every rank to join the group (their jobs included), and at each step for the ring's data. */
  timeoutMs: number;
  /** A peer silent this long (no data, no heartbeat) fails the step (default 10 s). */
  heartbeatTimeoutMs?: number;
  /** Bind address of the listener (ALLREDUCE_HOST, default 127.0.0.1). */
  host?: string;
  /** Address the other ranks connect to (ALLREDUCE_ADVERTISE_HOST); see RingGroupOptions. */
  advertiseHost?: string;
  /** Fixed port range (ALLREDUCE_PORTS); default an ephemeral port. */
  ports?: { from: number; to: number } | null;
  /** ALLREDUCE_TRANSPORT: 'auto' (default) reduces through shared memory when every rank is on this machine; 'tcp' never. */
  transport?: 'auto' | 'tcp';
  /** The native addon with the shared-memory functions; default @ice/native-kernels' build. */
  addonPath?: string;
  segmentBytes?: number;
  pollMs?: number;
  /** This job's attempt, so that a failure says whether it is retried. */
  attempt?: { number: number; of: number };
  /** The worker registry's key, so that a group that can never form says so (see RingGroupOptions). */
  workersKey?: string;
  log?: (message: string) => void;
}

export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 10_000;

interface Pending {
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * Data-parallel gradient averaging over a ring of TCP connections, Redis serving only as the
 * rendezvous (see RingGroup): each rank flattens its gradient (in name order) into a
 * SharedArrayBuffer, the transport thread replaces it in place by the mean over the ranks
 * (RingGroup.allReduceMean) — identical operations on identical bits on every rank, so every
 * rank gets the same tensors.
 *
 * When every rank is on this machine the group reduces through shared memory (ring-shm.ts), in
 * rank order: the mean is `meanInRankOrder`'s bits. Through the TCP ring the sum of chunk c runs
 * from rank c round the ring (RingReduction), not in rank order: for W ≥ 3 the mean differs from
 * `meanInRankOrder` by float32 rounding only (≤ 2(W−1) units in the last place of Σ|x_r| / W);
 * for W = 2 it is the same bits.
 *
 * One rank alone (W = 1) starts no thread and talks to nobody: the mean is a copy.
 *
 * No overlap of the read-back with the ring (reducing early buckets while later gradients are
 * still read back): measured, it cannot pay here. `tf.variableGrads` returns every gradient at
 * once, already computed (the loss read-back waits for them), so reading them back is a copy out
 * of the backend — 4 ms for DeiT-Tiny's 5.9 M floats on wasm beside 14 ms (shared memory) to
 * 37 ms (TCP ring) of all-reduce at W = 2 and a second of compute per step; overlapping could hide
 * at most those 4 ms (bench:allreduce and bench:train-scaling print the split). The overlap that
 * pays on GPUs — reducing while the backward pass still runs, as DDP does — needs per-layer
 * gradient hooks that tfjs does not have, and on CPU ranks that fill every core it would only
 * move the all-reduce's copies and sums onto cores the backward pass is using.
 */
export class RingGradientReducer implements GradientReducer {
  readonly rank: number;
  readonly worldSize: number;
  private worker: Worker | undefined;
  private dead: Error | undefined;
  private shared: SharedArrayBuffer | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closing: Promise<void> | undefined;
  private busy = false;
  private resumable: number[] = [];
  /** Time of the last all-reduce, split into reading the gradients back, the ring, and building the mean tensors (ms); how the group moves gradients. */
  readonly lastTimings: { flattenMs: number; ringMs: number; unflattenMs: number; formMs: number; transport?: 'tcp' | 'shm' } = {
    flattenMs: 0,
    ringMs: 0,
    unflattenMs: 0,
    formMs: 0,
  };

  constructor(private readonly o: RingGradientReducerOptions) {
    if (!Number.isInteger(o.worldSize) || o.worldSize < 1)
      throw new IceError('CONFIG_INVALID', `worldSize must be a positive integer, got ${o.worldSize}`);
    if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize)
      throw new IceError('CONFIG_INVALID', `rank must be an integer in [0, ${o.worldSize}), got ${o.rank}`);
    if (!(o.timeoutMs > 0)) throw new IceError('CONFIG_INVALID', `all-reduce timeout must be positive, got ${o.timeoutMs}`);
    if (o.heartbeatTimeoutMs !== undefined && !(o.heartbeatTimeoutMs > 0))
      throw new IceError('CONFIG_INVALID', `heartbeat timeout must be positive, got ${o.heartbeatTimeoutMs}`);
    this.rank = o.rank;
    this.worldSize = o.worldSize;
  }

  /** Earlier steps this rank holds checkpoints for, told to the group when it forms (GradientReducer). */
  setResumableSteps(steps: readonly number[]): void {
    this.resumable = [...steps]; // checked where the group forms (RingGroup.form)
  }

  async allReduceMean(step: number, grads: Map<string, tf.Tensor>, signal?: AbortSignal): Promise<Map<string, tf.Tensor>> {
    if (!Number.isSafeInteger(step) || step < 0)
      throw new IceError('INPUT_INVALID', `all-reduce step must be a non-negative integer, got ${step}`);
    if (this.worldSize === 1) {
      const { layout, data } = flattenGradients(grads);
      return unflattenGradients(layout, data);
    }
    if (this.closing) throw new IceError('INPUT_INVALID', 'RingGradientReducer is closed');
    if (this.dead) throw this.dead;
    if (this.busy) throw new IceError('INPUT_INVALID', 'RingGradientReducer: one all-reduce at a time per rank');
    if (signal?.aborted) throw new IceError('CANCELLED', `cancelled before reducing the gradients of step ${step}`);
    this.busy = true;
    try {
      const t0 = performance.now();
      const { layout, sum } = this.flattenShared(grads);
      const t1 = performance.now();
      await this.ring(step, sum, signal);
      const t2 = performance.now();
      // The mean arrives in place: the shared buffer is rewritten by the next step's flatten only, and the tensors copy
      // it (no 4N-byte allocation per step for the collector to chase during the next step's compute).
      const out = unflattenGradients(layout, sum);
      this.lastTimings.flattenMs = t1 - t0;
      this.lastTimings.ringMs = t2 - t1;
      this.lastTimings.unflattenMs = performance.now() - t2;
      return out;
    } finally {
      this.busy = false;
    }
  }

  /** The gradients in name order (as flattenGradients lays them out) written straight into the buffer shared with the transport thread. */
  private flattenShared(grads: Map<string, tf.Tensor>): { layout: GradientLayout; sum: Float32Array } {
    const names = [...grads.keys()].sort();
    const shapes = names.map((n) => grads.get(n)!.shape.slice());
    const size = names.reduce((s, n) => s + grads.get(n)!.size, 0);
    if (!this.shared || this.shared.byteLength !== size * 4) this.shared = new SharedArrayBuffer(size * 4);
    const sum = new Float32Array(this.shared, 0, size);
    let offset = 0;
    for (const n of names) {
      const g = grads.get(n)!;
      if (g.dtype !== 'float32') throw new IceError('INPUT_INVALID', `gradient ${n} is ${g.dtype}, expected float32`);
      copyTensorData(g, sum, offset); // not dataSync: no 4N bytes of garbage per step (see copyTensorData)
      offset += g.size;
    }
    return { layout: { names, shapes, size }, sum };
  }

  private ring(step: number, sum: Float32Array, signal: AbortSignal | undefined): Promise<void> {
    const worker = this.thread();
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        worker.postMessage({ type: 'abort', id } satisfies ToTransport);
        settle(() =>
          reject(new IceError('CANCELLED', `cancelled while reducing the gradients of step ${step}`, { step, rank: this.rank })),
        );
      };
      const settle = (fn: () => void): void => {
        if (!this.pending.delete(id)) return;
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      this.pending.set(id, { resolve: () => settle(resolve), reject: (e) => settle(() => reject(e)) });
      signal?.addEventListener('abort', onAbort, { once: true });
      worker.postMessage({
        type: 'reduce',
        id,
        step,
        length: sum.length,
        buffer: sum.buffer as SharedArrayBuffer,
        ...(this.resumable.length ? { resumable: this.resumable } : {}),
      } satisfies ToTransport);
    });
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const { log: _log, ...rest } = this.o;
    const options: TransportOptions = {
      ...rest,
      addonPath: this.o.addonPath ?? ADDON_PATH,
      heartbeatTimeoutMs: this.o.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS,
    };
    const worker = startThread(moduleBeside(__filename, 'ring-transport.thread'), { data: { options } });
    worker.on('message', (m: FromTransport) => {
      switch (m.type) {
        case 'log':
          this.o.log?.(m.message);
          return;
        case 'reduced':
          if (m.formMs !== undefined) this.lastTimings.formMs = m.formMs;
          if (m.transport) this.lastTimings.transport = m.transport;
          this.pending.get(m.id)?.resolve();
          return;
        case 'failed': {
          const e = m.error.code
            ? new IceError(m.error.code as IceErrorCode, m.error.message, m.error.details)
            : new Error(m.error.message);
          this.pending.get(m.id)?.reject(e);
          return;
        }
        case 'closed':
          return;
      }
    });
    const lost = (why: string): void => {
      if (this.closing) return;
      this.dead = new Error(`the all-reduce transport thread of rank ${this.rank} ${why}`);
      for (const p of [...this.pending.values()]) p.reject(this.dead);
    };
    worker.on('error', (e) => lost(`failed: ${e.message}`));
    worker.on('exit', (code) => lost(`exited (code ${code})`));
    this.worker = worker;
    return worker;
  }

  /** Leaves the group (a clean goodbye if it never failed) and stops the transport thread. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const worker = this.worker;
      if (!worker) return;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage({ type: 'close' } satisfies ToTransport);
      const timer = setTimeout(() => void worker.terminate(), 5000);
      await exited;
      clearTimeout(timer);
      for (const p of [...this.pending.values()]) p.reject(new IceError('CANCELLED', 'the all-reduce was closed'));
    })();
    return this.closing;
  }
}
