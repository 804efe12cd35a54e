import { randomUUID } from 'node:crypto';
import * as net from 'node:net';
import * as os from 'node:os';
import type { Redis } from 'ioredis';
import { RingPlan, RingReduction } from './ring-allreduce';
import { floatsOf, FrameType, jsonPayload, parseJsonPayload, RingError, type FrameHeader } from './ring-frame';
import { describeFailure, RingLink, type LinkFailure } from './ring-link';
import { RingRendezvous, type RendezvousEntry, type Round } from './ring-rendezvous';
import { loadSharedMemoryAddon, type Reduction, SharedMemoryReduction, sharedMemoryHost, SharedSegments } from './ring-shm';
import { registeredSlots } from '../workers/worker-slots';

export interface RingGroupOptions {
  /** A connection for the rendezvous (a few commands per group formation; none per step). */
  redis: Redis;
  /** Namespace of the rendezvous keys, e.g. `${queuePrefix}:allreduce`. */
  keyPrefix: string;
  runId: string;
  rank: number;
  worldSize: number;
  /** How long a rank waits for all ranks to join the group, and at each step for the ring's data. */
  timeoutMs: number;
  /** A peer silent for this long (no data, no heartbeat) fails the step; connecting to a peer is bounded by it too. */
  heartbeatTimeoutMs: number;
  /** Address the listener binds (ALLREDUCE_HOST); default 127.0.0.1. */
  host?: string;
  /** Address the other ranks connect to; default the bind address, or this machine's first external IPv4 when binding a wildcard. */
  advertiseHost?: string;
  /** Ports to try in order (ALLREDUCE_PORTS); default an ephemeral port. */
  ports?: { from: number; to: number } | null;
  /** Bytes per DATA frame (default 1 MiB): small enough to pipeline, large enough to keep per-frame costs negligible. */
  segmentBytes?: number;
  /**
   * 'auto' (default): when every rank of the group is on this machine (and the native addon is
   * built), the gradients go through shared memory (ring-shm.ts), the TCP ring carrying only the
   * marks and heartbeats; otherwise, or with 'tcp' (ALLREDUCE_TRANSPORT), through the TCP ring.
   */
  transport?: 'auto' | 'tcp';
  /** The native addon with the shared-memory functions (@ice/native-kernels' ADDON_PATH); without it, TCP only. */
  addonPath?: string;
  /** How often a waiting rank looks at the rendezvous (default 100 ms): a rank that arrives is met within this. */
  pollMs?: number;
  /** Lifetime of the rendezvous keys, refreshed while waiting (default max(600 s, 2 × timeout)). */
  ttlSeconds?: number;
  /** This job's attempt, for error messages that say what happens next. */
  attempt?: { number: number; of: number };
  /**
   * The worker registry's key (`<QUEUE_PREFIX>:workers`): a rank that times out waiting for the
   * others reads the live training slots there, and when there are fewer than worldSize the group
   * can never form, which it says (NO_CAPACITY, not retried) instead of promising a retry.
   */
  workersKey?: string;
  log?: (message: string) => void;
}

interface Hello {
  runId: string;
  roundId: string;
  gen: number;
  rank: number;
  session: string;
  step: number;
  length: number;
}

interface Incoming {
  link: RingLink;
  hello: Hello;
}

/**
 * x / W in place, once, after the sum: the same operation on the same bits on every rank. (A
 * function of its own, so that V8 optimises the loop once rather than running it in the
 * interpreter inside the long async caller: 10 ms instead of 100+ for 6 M floats.)
 */
function divideInPlace(sum: Float32Array, divisor: number): void {
  for (let i = 0; i < sum.length; i++) sum[i] /= divisor;
}

/** A connection attempt of one round that did not work out: the round is abandoned and the ranks join the next. */
class FormationFailure extends Error {}

const DEFAULT_SEGMENT_BYTES = 1 << 20;
export const DEFAULT_RENDEZVOUS_TTL_SECONDS = 600;

/**
 * The data-parallel group of one rank, for one attempt of its job: meets the other ranks through
 * the Redis rendezvous, connects into a ring over TCP (every rank listens; rank r connects to
 * r−1, which sends it the ring's data, and accepts r+1, to which it sends), and runs one ring
 * all-reduce per optimizer update (see RingReduction).
 *
 * Failure is final for a group: a peer that dies (its sockets close), goes silent (heartbeat
 * timeout), leaves, or sends nonsense, a step that takes longer than `timeoutMs`, and a cancel
 * all break the group, close every connection (so the neighbours learn it at once and the whole
 * ring fails within milliseconds) and reject the step with RANK_TIMEOUT (CANCELLED for a cancel).
 * The job's retry resumes from the common checkpoint and forms a new group in a new round, which
 * the returning rank completes the moment it joins.
 */
export class RingGroup {
  readonly rank: number;
  readonly worldSize: number;
  /** Random per group: tells this incarnation of the rank from earlier ones. */
  readonly session = randomUUID();
  private readonly rendezvous: RingRendezvous;
  private readonly segmentFloats: number;
  private server: net.Server | undefined;
  private listening: { host: string; port: number } | undefined;
  private readonly parked = new Map<string, Incoming[]>();
  private acceptWaiter: { roundId: string; take: (c: Incoming) => void } | undefined;
  private joined: Round | undefined;
  private round: Round | undefined;
  private toNext: RingLink | undefined;
  private fromPrev: RingLink | undefined;
  private failure: RingError | undefined;
  private closed = false;
  /** Aborted by close(): stops a formation or a step in progress. */
  private readonly lifetime = new AbortController();
  /** A neighbour said goodbye between steps (its run is over): the next step fails with this, but leaving is still clean. */
  private goodbye: RingError | undefined;
  private busy = false;
  private length = -1;
  private plan: RingPlan | undefined;
  /** Frames of the predecessor that arrived before this rank entered their step (copies). */
  private stash: { h: FrameHeader; payload: Buffer }[] = [];
  private stashBytes = 0;
  private onPredFrame: ((h: FrameHeader, payload: Buffer) => void) | undefined;
  /** Where this rank is in a step: receiving the ring's data, or only waiting for its own last sends to leave. */
  private phase: 'idle' | 'receiving' | 'flushing' = 'idle';
  private currentStep = -1;
  private lastCompleted: number | undefined;
  private breakStep: ((e: RingError) => void) | undefined;
  /** This rank's shared-memory segments: created at formation when it could use them, kept when the whole group can. */
  private shm: SharedSegments | undefined;
  /** Formation and step timings, for logs and the bench; `transport` is how the formed group moves gradients. */
  readonly stats: { formations: number; formMs: number; steps: number; transport?: 'tcp' | 'shm'; shmUnavailable?: string } = {
    formations: 0,
    formMs: 0,
    steps: 0,
  };

  constructor(private readonly o: RingGroupOptions) {
    if (!Number.isInteger(o.worldSize) || o.worldSize < 1)
      throw new RingError('CONFIG_INVALID', `worldSize must be a positive integer, got ${o.worldSize}`);
    if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize)
      throw new RingError('CONFIG_INVALID', `rank must be an integer in [0, ${o.worldSize}), got ${o.rank}`);
    if (!(o.timeoutMs > 0)) throw new RingError('CONFIG_INVALID', `all-reduce timeout must be positive, got ${o.timeoutMs}`);
    if (!(o.heartbeatTimeoutMs > 0))
      throw new RingError('CONFIG_INVALID', `heartbeat timeout must be positive, got ${o.heartbeatTimeoutMs}`);
    const seg = o.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    if (!Number.isInteger(seg) || seg < 4 || seg % 4 !== 0 || seg > 64 << 20)
      throw new RingError('CONFIG_INVALID', `segment size must be a multiple of 4 bytes up to 64 MiB, got ${seg}`);
    if (
      o.ports &&
      !(
        Number.isInteger(o.ports.from) &&
        Number.isInteger(o.ports.to) &&
        0 < o.ports.from &&
        o.ports.from <= o.ports.to &&
        o.ports.to < 65536
      )
    )
      throw new RingError('CONFIG_INVALID', `all-reduce port range ${o.ports.from}-${o.ports.to} is not a range of TCP ports`);
    if (os.endianness() !== 'LE')
      throw new RingError('CONFIG_INVALID', 'the ring all-reduce sends little-endian float32s; this machine is big-endian');
    this.rank = o.rank;
    this.worldSize = o.worldSize;
    this.segmentFloats = seg / 4;
    const ttl = Math.max(o.ttlSeconds ?? DEFAULT_RENDEZVOUS_TTL_SECONDS, Math.ceil((2 * o.timeoutMs) / 1000));
    this.rendezvous = new RingRendezvous(o.redis, o.keyPrefix, o.runId, o.worldSize, ttl);
  }

  private get succ(): number {
    return (this.rank + 1) % this.worldSize;
  }

  private get pred(): number {
    return (this.rank - 1 + this.worldSize) % this.worldSize;
  }

  /** The generation and id of the round this group formed in (undefined before). */
  get formedRound(): Round | undefined {
    return this.round;
  }

  /** Where this rank listens (undefined before the first all-reduce). */
  get address(): { host: string; port: number } | undefined {
    return this.listening;
  }

  /**
   * Replaces `data` by the element-wise sum over all ranks of their `data` for update `step`,
   * bit-identical on every rank. The first call forms the group (waiting up to `timeoutMs` for
   * every rank to join). `data` must stay untouched until the promise settles. `resumable`: the
   * earlier steps this rank holds checkpoints for; when the ranks arrive at different steps they
   * meet at the latest step they all hold (see checkMembers).
   */
  allReduceSum(step: number, data: Float32Array, signal?: AbortSignal, resumable?: readonly number[]): Promise<void> {
    return this.allReduce(step, data, 1, signal, resumable);
  }

  /**
   * As allReduceSum, then divided by W: the mean, the same bits on every rank (shared memory: each
   * chunk's owner divides it once; the TCP ring: every rank divides the same sum).
   */
  allReduceMean(step: number, data: Float32Array, signal?: AbortSignal, resumable?: readonly number[]): Promise<void> {
    return this.allReduce(step, data, this.worldSize, signal, resumable);
  }

  private async allReduce(
    step: number,
    data: Float32Array,
    divisor: number,
    signal?: AbortSignal,
    resumable?: readonly number[],
  ): Promise<void> {
    if (this.closed) throw new RingError('INPUT_INVALID', 'the all-reduce group is closed');
    if (this.failure) throw this.failure;
    if (this.goodbye) throw this.goodbye;
    if (!Number.isSafeInteger(step) || step < 0 || step > 0xffff_ffff)
      throw new RingError('INPUT_INVALID', `all-reduce step must be a non-negative 32-bit integer, got ${step}`);
    if (this.worldSize === 1) return;
    if (this.busy) throw new RingError('INPUT_INVALID', 'one all-reduce at a time per rank');
    this.busy = true;
    try {
      const stop = signal ? AbortSignal.any([signal, this.lifetime.signal]) : this.lifetime.signal;
      if (stop.aborted) throw this.cancelled(step);
      if (!this.round) await this.form(step, data.length, stop, resumable);
      await this.reduce(step, data, divisor, stop);
      if (divisor !== 1 && this.stats.transport !== 'shm') divideInPlace(data, divisor);
      this.stats.steps++;
      // Every rank has mapped every segment by now (each summed its chunk from all of them): the names can go, so
      // that a process that dies later leaves nothing behind in /dev/shm.
      if (this.stats.steps === 1) this.shm?.unlink();
    } finally {
      this.busy = false;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Messages

  private retryNote(): string {
    const a = this.o.attempt;
    if (!a) return 'Retryable (RANK_TIMEOUT): a retry from the last checkpoint forms a new group.';
    if (a.number < a.of)
      return `Attempt ${a.number} of ${a.of} fails; the job is retried from its last checkpoint, and the group re-forms as soon as every rank is back.`;
    return `This was attempt ${a.number} of ${a.of}, the last: the run fails.`;
  }

  private rankError(what: string, details: Record<string, unknown>): RingError {
    const stop = /[.?!]$/.test(what) ? '' : '.';
    return new RingError('RANK_TIMEOUT', `rank ${this.rank} of run ${this.o.runId} ${what}${stop} ${this.retryNote()}`, {
      runId: this.o.runId,
      rank: this.rank,
      worldSize: this.worldSize,
      ...details,
    });
  }

  private cancelled(step: number): RingError {
    const why = this.closed ? 'the all-reduce group was closed' : 'cancelled';
    return new RingError('CANCELLED', `${why} while reducing the gradients of step ${step}`, { step, rank: this.rank });
  }

  // ---------------------------------------------------------------------------------------------
  // Listening

  private async listen(): Promise<void> {
    if (this.listening) return;
    const host = this.o.host ?? '127.0.0.1';
    const candidates: number[] = [];
    if (this.o.ports) for (let p = this.o.ports.from; p <= this.o.ports.to; p++) candidates.push(p);
    else candidates.push(0);
    for (const port of candidates) {
      const server = net.createServer({ noDelay: true }, (s) => this.onConnection(s));
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host, port, exclusive: true }, () => {
            server.off('error', reject);
            resolve();
          });
        });
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (err.code === 'EADDRINUSE' && this.o.ports) continue;
        throw new RingError(
          'CONFIG_INVALID',
          `cannot listen for the all-reduce on ${host}:${port} (ALLREDUCE_HOST/ALLREDUCE_PORTS): ${err.message}`,
        );
      }
      server.on('error', (e) => this.o.log?.(`all-reduce listener: ${e.message}`));
      this.server = server;
      this.listening = { host: advertisedHost(host, this.o.advertiseHost), port: (server.address() as net.AddressInfo).port };
      return;
    }
    throw new RingError(
      'CONFIG_INVALID',
      `no free port for the all-reduce in ALLREDUCE_PORTS ${this.o.ports!.from}-${this.o.ports!.to} on ${host}: every port is taken (a worker needs one per rank job it runs at once)`,
    );
  }

  private linkOptions(peerRank: number): ConstructorParameters<typeof RingLink>[1] {
    // DATA frames are one segment; handshake frames are small JSON.
    return { peerRank, heartbeatTimeoutMs: this.o.heartbeatTimeoutMs, maxPayloadBytes: Math.max(this.segmentFloats * 4, 1 << 16) };
  }

  /** An incoming connection: it must say HELLO within the heartbeat timeout, then waits for its round. */
  private onConnection(socket: net.Socket): void {
    const link = new RingLink(socket, this.linkOptions(-1));
    const timer = setTimeout(() => link.fail({ kind: 'closed', detail: 'no HELLO' }), this.o.heartbeatTimeoutMs);
    timer.unref();
    link.onFailure(() => {
      clearTimeout(timer);
      for (const [id, list] of this.parked) {
        const rest = list.filter((c) => c.link !== link);
        if (rest.length) this.parked.set(id, rest);
        else this.parked.delete(id);
      }
    });
    link.onFrame = (h, payload) => {
      if (h.type !== FrameType.Hello)
        return link.fail({ kind: 'protocol', error: new RingError('INPUT_INVALID', `expected HELLO, got frame type ${h.type}`) });
      clearTimeout(timer);
      link.onFrame = (h2) =>
        link.fail({ kind: 'protocol', error: new RingError('INPUT_INVALID', `unexpected frame type ${h2.type} before WELCOME`) });
      let hello: Hello;
      try {
        hello = parseJsonPayload<Hello>(payload, 'HELLO');
      } catch (e) {
        return link.fail({ kind: 'protocol', error: e as RingError });
      }
      if (hello.runId !== this.o.runId) return void reject(link, `this port belongs to run ${this.o.runId}, not ${String(hello.runId)}`);
      if (this.round || this.closed) return void reject(link, 'this rank is not waiting for connections (its group is formed or over)');
      const c: Incoming = { link, hello };
      if (this.acceptWaiter?.roundId === hello.roundId) return this.acceptWaiter.take(c);
      // A round this rank has not seen complete yet (it polls the rendezvous): keep the connection until it does.
      const list = this.parked.get(hello.roundId) ?? [];
      list.push(c);
      this.parked.set(hello.roundId, list);
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Formation

  private async form(step: number, length: number, signal: AbortSignal | undefined, resumable?: readonly number[]): Promise<void> {
    const started = Date.now();
    const deadline = started + this.o.timeoutMs;
    await this.listen();
    const earlier = [...new Set(resumable ?? [])].filter((s) => Number.isSafeInteger(s) && s >= 0 && s < step).sort((a, b) => a - b);
    this.prepareSharedMemory(length);
    const entry: RendezvousEntry = {
      rank: this.rank,
      ...this.listening!,
      step,
      length,
      session: this.session,
      ...(earlier.length ? { resumable: earlier } : {}),
      ...(this.shm ? { shm: this.shm.entry } : {}),
    };
    // Set before the connections exist: the predecessor may send its first step as soon as the ring is connected.
    this.length = length;
    let problem: string | undefined;
    // After a round that did not connect, running out of time is that problem's doing, whatever the rank waits for then.
    const unconnected = (tries: number): RingError =>
      this.rankError(`could not connect the all-reduce ring at step ${step} within ${this.o.timeoutMs} ms; last problem: ${problem}`, {
        step,
        tries,
      });
    for (let tries = 1; ; tries++) {
      if (signal?.aborted) throw this.cancelled(step);
      if (problem && Date.now() >= deadline) throw unconnected(tries - 1);
      const round = await this.rendezvous.join(entry, randomUUID());
      this.joined = round;
      const members = await this.waitForRound(round, step, deadline, signal, problem ? () => unconnected(tries) : undefined);
      if (!members) continue;
      if (this.checkMembers(members, step, length) === 'others-step-back') {
        // This rank is at the step the group meets at: the ranks ahead reload their earlier
        // checkpoint and join a new round; wait for it rather than racing them to supersede this one.
        await this.waitUntilSuperseded(round, step, deadline, signal);
        continue;
      }
      try {
        await this.connectRing(round, members, step, length, deadline, signal);
      } catch (e) {
        if (!(e instanceof FormationFailure)) throw e;
        problem = e.message;
        this.o.log?.(`all-reduce round ${round.gen} abandoned: ${e.message}`);
        await this.rendezvous.abandon(round.id, randomUUID());
        continue;
      }
      this.useSharedMemoryIf(members);
      this.round = round;
      this.plan = new RingPlan(length, this.worldSize, this.rank, this.segmentFloats);
      this.stats.formations++;
      this.stats.formMs = Date.now() - started;
      // No more connections to take: the port goes back (it matters with a fixed ALLREDUCE_PORTS range).
      this.server?.close();
      for (const list of this.parked.values()) for (const c of list) c.link.fail({ kind: 'closed', detail: 'group formed without it' });
      this.parked.clear();
      this.o.log?.(
        `all-reduce ring formed (round ${round.gen}, ${tries} ${tries === 1 ? 'try' : 'tries'}, ${this.stats.formMs} ms) at step ${step}: ` +
          `rank ${this.rank} listens on ${this.listening!.host}:${this.listening!.port}, sends to rank ${this.succ} at ${members.get(this.succ)!.host}:${members.get(this.succ)!.port}; ` +
          (this.stats.transport === 'shm'
            ? 'gradients through shared memory (every rank on this machine)'
            : `gradients through the TCP ring${this.stats.shmUnavailable ? ` (${this.stats.shmUnavailable})` : ''}`),
      );
      return;
    }
  }

  /** Creates this rank's shared-memory segments for a gradient of `length` floats, when the transport allows and the addon is there. */
  private prepareSharedMemory(length: number): void {
    if (this.shm || this.worldSize === 1) return;
    if ((this.o.transport ?? 'auto') === 'tcp') {
      this.stats.shmUnavailable = 'ALLREDUCE_TRANSPORT=tcp';
      return;
    }
    const host = sharedMemoryHost();
    const { addon, why } = loadSharedMemoryAddon(this.o.addonPath);
    if (!host || !addon) {
      this.stats.shmUnavailable = why ?? 'no /dev/shm here';
      return;
    }
    const made = SharedSegments.create(addon, host, this.session, length);
    this.shm = made.segments;
    if (!this.shm) this.stats.shmUnavailable = `no shared memory: ${made.why}`;
  }

  /** Shared memory when every rank published segments on this machine (all ranks decide alike from the same entries); else the TCP ring. */
  private useSharedMemoryIf(members: Map<number, RendezvousEntry>): void {
    const entries = Array.from({ length: this.worldSize }, (_, r) => members.get(r)!.shm);
    const mine = this.shm?.entry.host;
    if (this.shm && entries.every((e) => e?.host === mine)) {
      this.shm.openPeers(entries as NonNullable<(typeof entries)[number]>[], this.rank);
      this.stats.transport = 'shm';
      return;
    }
    if (this.shm && !this.stats.shmUnavailable) {
      const other = entries.findIndex((e) => e?.host !== mine);
      this.stats.shmUnavailable = entries[other] ? `rank ${other} is on another machine` : `rank ${other} has no shared memory`;
    }
    this.shm?.release();
    this.shm = undefined;
    this.stats.transport = 'tcp';
  }

  /** Polls until round `id` has every rank (→ its entries), or is no longer current (→ null, join again). */
  private async waitForRound(
    round: Round,
    step: number,
    deadline: number,
    signal: AbortSignal | undefined,
    timeoutError?: () => RingError,
  ): Promise<Map<number, RendezvousEntry> | null> {
    const pollMs = this.o.pollMs ?? 100;
    let refreshed = Date.now();
    for (;;) {
      const { current, members } = await this.rendezvous.look(round.id);
      if (!current || current.id !== round.id) return null;
      if (members.size >= this.worldSize) return members;
      if (Date.now() >= deadline) {
        if (timeoutError) throw timeoutError();
        const missing = Array.from({ length: this.worldSize }, (_, r) => r).filter((r) => !members.has(r));
        await this.refuseWithoutSlots(step, missing);
        throw this.rankError(
          `waited ${this.o.timeoutMs} ms at step ${step} for rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (of ${this.worldSize}) to join the all-reduce group; is a worker free for every rank?`,
          { step, missingRanks: missing, round: round.gen },
        );
      }
      if (Date.now() - refreshed > 10_000) {
        await this.rendezvous.refresh(round.id);
        refreshed = Date.now();
      }
      await sleep(Math.min(pollMs, Math.max(1, deadline - Date.now())), signal);
      if (signal?.aborted) throw this.cancelled(step);
    }
  }

  /** Throws NO_CAPACITY (not retried) when the live workers have fewer training slots than the group has ranks. */
  private async refuseWithoutSlots(step: number, missing: number[]): Promise<void> {
    if (!this.o.workersKey) return;
    const c = await registeredSlots(this.o.redis, this.o.workersKey, 'training').catch(() => null);
    if (!c || c.slots >= this.worldSize) return;
    throw new RingError(
      'NO_CAPACITY',
      `rank ${this.rank} of run ${this.o.runId} waited ${this.o.timeoutMs} ms at step ${step} for rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')}: ` +
        `only ${c.slots} training slot${c.slots === 1 ? ' is' : 's are'} registered (${c.workers} live worker${c.workers === 1 ? '' : 's'}) for ${this.worldSize} ranks, so the group cannot form. Not retried: start more workers and submit it again`,
      { runId: this.o.runId, rank: this.rank, worldSize: this.worldSize, step, missingRanks: missing, ...c },
    );
  }

  /** Polls until round `round` is no longer the current one (a rank that stepped back joined again). */
  private async waitUntilSuperseded(round: Round, step: number, deadline: number, signal: AbortSignal | undefined): Promise<void> {
    const pollMs = this.o.pollMs ?? 100;
    for (;;) {
      const { current } = await this.rendezvous.look(round.id);
      if (!current || current.id !== round.id) return;
      if (Date.now() >= deadline)
        throw this.rankError(`waited ${this.o.timeoutMs} ms at step ${step} for the ranks ahead of it to step back to it`, {
          step,
          round: round.gen,
        });
      await sleep(Math.min(pollMs, Math.max(1, deadline - Date.now())), signal);
      if (signal?.aborted) throw this.cancelled(step);
    }
  }

  /**
   * 'ok' when every rank is at `step` with the same gradient length. Ranks at different steps
   * (one stopped between an update and its checkpoint while the others wrote theirs) meet at the
   * latest step every rank holds a checkpoint for: a rank ahead of it throws RANKS_APART with that
   * step, so it reloads and joins again; a rank at it gets 'others-step-back'. No common step: the
   * group cannot meet (RANK_TIMEOUT, as before).
   */
  private checkMembers(members: Map<number, RendezvousEntry>, step: number, length: number): 'ok' | 'others-step-back' {
    const entries = Array.from({ length: this.worldSize }, (_, r) => members.get(r));
    const absent = entries.findIndex((e) => !e);
    if (absent >= 0)
      throw new RingError(
        'INPUT_INVALID',
        `the rendezvous of run ${this.o.runId} is complete without rank ${absent}: its keys were written by another program`,
      );
    const otherLength = entries.find((e) => e!.length !== length);
    if (otherLength) {
      throw new RingError(
        'INPUT_INVALID',
        `step ${step}: rank ${otherLength.rank} has ${otherLength.length} gradient elements, rank ${this.rank} has ${length}: the ranks train different models`,
        { step, rank: this.rank, otherRank: otherLength.rank },
      );
    }
    if (entries.some((e) => e!.step !== step)) {
      const at = entries.map((e) => `rank ${e!.rank} at step ${e!.step}`).join(', ');
      const meet = commonResumeStep(entries.map((e) => [e!.step, ...(e!.resumable ?? [])]));
      if (meet === step) return 'others-step-back';
      if (meet !== undefined) {
        throw new RingError(
          'RANKS_APART',
          `rank ${this.rank} of run ${this.o.runId} is ahead of the group (${at}): it steps back to its checkpoint of step ${meet}, the latest every rank holds`,
          { runId: this.o.runId, rank: this.rank, step, resumeStep: meet, steps: entries.map((e) => e!.step) },
        );
      }
      throw this.rankError(
        `cannot meet the other ranks: they resume at different steps (${at}) and hold no checkpoint of a common step (each keeps its last two), so the group cannot meet`,
        { step, steps: entries.map((e) => e!.step) },
      );
    }
    return 'ok';
  }

  /**
   * Connects to the predecessor and takes the successor's connection, both for round `round`. The
   * ring's data flows from the accepting rank to the connecting one: the receiving end is the
   * socket this rank created, which reads into one reused buffer (`onread`) instead of a fresh
   * Buffer per read — at hundreds of MB/s those allocations cost as much as the sums in GC.
   */
  private async connectRing(
    round: Round,
    members: Map<number, RendezvousEntry>,
    step: number,
    length: number,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const bound = Math.max(1, Math.min(this.o.heartbeatTimeoutMs, deadline - Date.now()));
    const hello: Hello = { runId: this.o.runId, roundId: round.id, gen: round.gen, rank: this.rank, session: this.session, step, length };
    const links: RingLink[] = [];
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(this.cancelled(step));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const pending = { fromPred: true, fromSucc: true };
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const missing = [
          pending.fromPred ? `no WELCOME from rank ${this.pred}` : '',
          pending.fromSucc ? `no connection from rank ${this.succ}` : '',
        ].filter(Boolean);
        reject(new FormationFailure(`the ring did not connect within ${bound} ms (${missing.join(', ')})`));
      }, bound);
    });
    timedOut.catch(() => undefined);
    try {
      const [inc, out] = await Promise.race([
        Promise.all([
          this.connectTo(members.get(this.pred)!, hello, links).then((l) => ((pending.fromPred = false), l)),
          this.acceptFrom(round, members.get(this.succ)!, step, length, links).then((l) => ((pending.fromSucc = false), l)),
        ]),
        aborted,
        timedOut,
      ]);
      this.toNext = out;
      this.fromPrev = inc;
    } catch (e) {
      this.acceptWaiter = undefined;
      for (const l of links) l.fail({ kind: 'closed', detail: 'formation failed' });
      throw e;
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
    this.acceptWaiter = undefined;
    for (const link of [this.toNext, this.fromPrev]) {
      link.onFailure((f) => this.onLinkFailure(link, f));
      link.startHeartbeats();
    }
    // The successor only ever sends heartbeats (and BYE) on its connection; the predecessor's frames are the ring's.
    this.toNext.onFrame = (h) =>
      this.toNext?.fail({
        kind: 'protocol',
        error: new RingError('INPUT_INVALID', `rank ${this.succ} sent frame type ${h.type} on the wrong connection`),
      });
  }

  private async connectTo(peer: RendezvousEntry, hello: Hello, links: RingLink[]): Promise<RingLink> {
    // Reads land in the link's frame decoder directly (see FrameDecoder): no Buffer per read, frames whole and aligned.
    // The socket is created first and connected once the link exists: its handle asks for the first read buffer on connect.
    const reader: { link?: RingLink } = {};
    const onread: net.OnReadOpts = {
      buffer: () => reader.link!.readSpace(),
      callback: (n) => {
        reader.link!.readDone(n);
        return true;
      },
    };
    // net.connect hands `onread` to this constructor; @types/node declares it on the connect options only.
    const socket = new net.Socket({ onread } as net.SocketConstructorOpts);
    const link = new RingLink(socket, { ...this.linkOptions(peer.rank), externalReads: true });
    reader.link = link;
    links.push(link);
    socket.connect({ host: peer.host, port: peer.port, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      link.onFailure((f) =>
        reject(
          new FormationFailure(
            `cannot connect to rank ${peer.rank} at ${peer.host}:${peer.port}: ${describeFailure(f)}; if that rank is alive, ` +
              'its ALLREDUCE_ADVERTISE_HOST / ALLREDUCE_HOST is not reachable from here (or a firewall blocks ALLREDUCE_PORTS)',
          ),
        ),
      );
    });
    return new Promise<RingLink>((resolve, reject) => {
      link.onFailure((f) =>
        reject(new FormationFailure(`rank ${peer.rank} at ${peer.host}:${peer.port} dropped the handshake: ${describeFailure(f)}`)),
      );
      link.onFrame = (h, payload) => {
        if (h.type === FrameType.Welcome) {
          // The predecessor may start its first step right behind the WELCOME, in the same read.
          link.onFrame = (fh, p) => this.fromPredecessor(fh, p);
          return resolve(link);
        }
        if (h.type === FrameType.Reject) {
          const why = (() => {
            try {
              return parseJsonPayload<{ reason: string }>(payload, 'REJECT').reason;
            } catch {
              return 'no reason given';
            }
          })();
          reject(new FormationFailure(`rank ${peer.rank} refused the connection: ${why}`));
          return link.fail({ kind: 'closed', detail: 'refused' });
        }
        link.fail({ kind: 'protocol', error: new RingError('INPUT_INVALID', `expected WELCOME, got frame type ${h.type}`) });
      };
      link.send(FrameType.Hello, {}, jsonPayload(hello));
    });
  }

  private acceptFrom(round: Round, peer: RendezvousEntry, step: number, length: number, links: RingLink[]): Promise<RingLink> {
    return new Promise<RingLink>((resolve) => {
      let accepted = false;
      const take = (c: Incoming): void => {
        if (accepted) return reject(c.link, `rank ${this.rank} already has its connection from rank ${peer.rank}`);
        const h = c.hello;
        let why: string | undefined;
        if (h.rank !== peer.rank) why = `rank ${this.rank} takes its connection from rank ${peer.rank}, not ${h.rank}`;
        else if (h.session !== peer.session)
          why = `rank ${h.rank}'s connection comes from another incarnation than the one in the rendezvous`;
        else if (h.step !== step || h.length !== length)
          why = `rank ${h.rank} is at step ${h.step} with ${h.length} elements, this rank at ${step} with ${length}`;
        if (why) return reject(c.link, why);
        accepted = true;
        links.push(c.link);
        c.link.peerRank = peer.rank;
        c.link.send(FrameType.Welcome);
        resolve(c.link);
      };
      const early = this.parked.get(round.id) ?? [];
      this.parked.delete(round.id);
      for (const c of early) if (!c.link.failed) take(c);
      if (!accepted) this.acceptWaiter = { roundId: round.id, take };
    });
  }

  private linkError(peer: number, f: LinkFailure): RingError {
    const role = peer === this.pred && peer === this.succ ? 'its neighbour' : peer === this.pred ? 'its predecessor' : 'its successor';
    return this.rankError(
      `lost ${role} in the all-reduce ring, rank ${peer}${this.round ? ` (round ${this.round.gen})` : ''}: ${describeFailure(f)}`,
      {
        peerRank: peer,
        failure: f.kind,
      },
    );
  }

  private onLinkFailure(link: RingLink, f: LinkFailure): void {
    const e = this.linkError(link.peerRank, f);
    if (f.kind === 'bye' && this.harmlessGoodbye(link, f.lastStep)) {
      // A neighbour whose run is over leaves between steps: not a failure unless this rank wants another step.
      this.goodbye ??= e;
      return;
    }
    this.breakGroup(e);
  }

  /**
   * A rank says goodbye only between steps, after the last one it completed. Harmless to this
   * rank: between steps; from the successor once it completed the current step (it has all this
   * rank's data and sends nothing); from the predecessor once this rank has all its data.
   * Otherwise the neighbour will never take part in this step, and waiting for it is pointless.
   */
  private harmlessGoodbye(link: RingLink, lastStep: number | undefined): boolean {
    if (this.phase === 'idle') return true;
    if (link === this.toNext) return lastStep === this.currentStep;
    return this.phase === 'flushing';
  }

  /** Breaks the group for good: every connection is dropped, so the neighbours learn it at once; a step in progress fails. */
  private breakGroup(e: RingError): void {
    if (this.failure) return;
    this.failure = e;
    this.shm?.unlink();
    for (const l of [this.toNext, this.fromPrev]) l?.fail({ kind: 'closed', detail: 'group broken' });
    this.breakStep?.(e);
  }

  // ---------------------------------------------------------------------------------------------
  // Steps

  private fromPredecessor(h: FrameHeader, payload: Buffer): void {
    if (this.onPredFrame) return this.onPredFrame(h, payload);
    // The predecessor is one step ahead (it finished the last one first): keep its frames for when this rank gets there.
    this.stashBytes += payload.length;
    const cap = 2 * Math.ceil(Math.max(this.length, 0) / this.worldSize) * 4 + (1 << 16);
    if (this.stashBytes > cap) {
      this.fromPrev?.fail({
        kind: 'protocol',
        error: new RingError(
          'INPUT_INVALID',
          `rank ${this.pred} sent ${this.stashBytes} bytes ahead of this rank, more than one step's share`,
        ),
      });
      return;
    }
    this.stash.push({ h, payload: Buffer.from(payload) });
  }

  private reduce(step: number, data: Float32Array, divisor: number, signal: AbortSignal | undefined): Promise<void> {
    const plan = this.plan!;
    if (data.length !== this.length) {
      return Promise.reject(
        new RingError('INPUT_INVALID', `step ${step}: the gradient has ${data.length} elements, the group was formed for ${this.length}`),
      );
    }
    const out = this.toNext!;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (e?: RingError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.onPredFrame = undefined;
        this.breakStep = undefined;
        this.phase = 'idle';
        if (e) reject(e);
        else resolve();
      };
      const onAbort = (): void => this.breakGroup(this.cancelled(step));
      const timer = setTimeout(() => {
        const { received, expected } = reduction.progress;
        this.breakGroup(
          this.rankError(
            `waited ${this.o.timeoutMs} ms at step ${step} for the ring's data from rank ${this.pred} (${received} of ${expected} segments came; the ranks are alive, but one of them did not reach this step)`,
            { step, waitingFor: this.pred, received, expected },
          ),
        );
      }, this.o.timeoutMs);
      this.breakStep = finish;
      this.currentStep = step;
      signal?.addEventListener('abort', onAbort, { once: true });

      const shm = this.stats.transport === 'shm' ? this.shm : undefined;
      const dataType = shm ? FrameType.Mark : FrameType.Data;
      const reduction: Reduction = shm
        ? new SharedMemoryReduction(plan, data, shm.forReduction(this.stats.steps), shm.addon, divisor, (phase, origin) =>
            out.send(FrameType.Mark, { ringStep: phase, step, index: origin }),
          )
        : new RingReduction(plan, data, (ringStep, segment, payload) =>
            out.send(
              FrameType.Data,
              { ringStep, step, index: segment },
              new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength),
            ),
          );
      let begun = false;
      const protocol = (message: string): void => this.fromPrev?.fail({ kind: 'protocol', error: new RingError('INPUT_INVALID', message) });
      const onFrame = (h: FrameHeader, payload: Buffer): void => {
        if (settled) return;
        if (h.type === FrameType.Begin) {
          if (begun) return protocol(`rank ${this.pred} began step ${h.step} twice`);
          if (h.step !== step) {
            return this.breakGroup(
              this.rankError(
                `is at step ${step} but its predecessor rank ${this.pred} at step ${h.step}: the ranks skipped different updates`,
                {
                  step,
                  peerStep: h.step,
                },
              ),
            );
          }
          if (h.index !== data.length) {
            return this.breakGroup(
              new RingError(
                'INPUT_INVALID',
                `step ${step}: rank ${this.pred} has ${h.index} gradient elements, rank ${this.rank} has ${data.length}: the ranks train different models`,
              ),
            );
          }
          begun = true;
        } else if (h.type === dataType) {
          if (!begun || h.step !== step)
            return protocol(`data of step ${h.step} from rank ${this.pred} ${begun ? 'during' : 'before'} step ${step}`);
          try {
            reduction.receive(h.ringStep, h.index, floatsOf(payload));
          } catch (e) {
            return protocol((e as Error).message);
          }
        } else {
          return protocol(`unexpected frame type ${h.type} from rank ${this.pred}`);
        }
        if (begun && reduction.done) {
          // Everything is in; frames from now on belong to the next step. Resolve once our own sends are with the kernel:
          // they are views of `data`, which the caller may overwrite afterwards.
          this.onPredFrame = undefined;
          this.phase = 'flushing';
          const sent = (): void => {
            this.lastCompleted = step;
            finish();
          };
          out.flushed().then(sent, () => {
            const f = out.failed;
            // A successor that said goodbye after completing this step had all of this rank's data.
            if (f?.kind === 'bye' && f.lastStep === step) return sent();
            finish(this.failure ?? this.rankError(`lost rank ${this.succ} while sending`, { step }));
          });
        }
      };

      if (this.failure) return finish(this.failure);
      if (signal?.aborted) return onAbort();
      this.onPredFrame = onFrame;
      this.phase = 'receiving';
      out.send(FrameType.Begin, { step, index: data.length });
      reduction.start();
      const stashed = this.stash;
      this.stash = [];
      this.stashBytes = 0;
      for (const f of stashed) onFrame(f.h, f.payload);
    });
  }

  // ---------------------------------------------------------------------------------------------

  /**
   * Leaves the group. Clean (formed and never broken): says goodbye to the neighbours and counts
   * itself out of the rendezvous (the last rank out deletes its keys). Otherwise drops the
   * connections and takes back its rendezvous entry if the round is still waiting.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.lifetime.abort();
    this.shm?.release();
    const clean = !!this.round && !this.failure;
    await Promise.all([this.toNext, this.fromPrev].flatMap((l) => (l ? [l.close(clean, this.lastCompleted)] : [])));
    this.server?.close();
    for (const list of this.parked.values()) for (const c of list) c.link.fail({ kind: 'closed', detail: 'closing' });
    this.parked.clear();
    if (this.joined) {
      await this.rendezvous
        .leave(this.joined.id, this.rank, this.session, clean)
        .catch((e: unknown) => this.o.log?.(`all-reduce: leaving the rendezvous failed: ${(e as Error).message}`));
    }
  }
}

/** Tells a connecting rank why it is turned away, then drops the connection. */
function reject(link: RingLink, reason: string): void {
  link.send(FrameType.Reject, {}, jsonPayload({ reason }));
  const drop = (): void => link.fail({ kind: 'closed', detail: `rejected: ${reason}` });
  link.flushed().then(drop, drop);
}

/** The latest step in every rank's list of steps it can resume from (undefined: none in common). */
export function commonResumeStep(perRank: readonly (readonly number[])[]): number | undefined {
  if (!perRank.length) return undefined;
  const common = perRank.slice(1).reduce((acc, steps) => acc.filter((s) => steps.includes(s)), [...perRank[0]]);
  return common.length ? Math.max(...common) : undefined;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

const WILDCARDS = new Set(['0.0.0.0', '::', '']);

/** The address the other ranks should use: given, or the bind address, or (binding every interface) the first external IPv4. */
export function advertisedHost(bind: string, advertise: string | undefined): string {
  if (advertise) return advertise;
  if (!WILDCARDS.has(bind)) return bind;
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (!a.internal && a.family === 'IPv4') return a.address;
  }
  throw new RingError(
    'CONFIG_INVALID',
    `ALLREDUCE_HOST ${bind || '(empty)'} binds every interface but this machine has no external IPv4 address to advertise; set ALLREDUCE_ADVERTISE_HOST`,
  );
}
