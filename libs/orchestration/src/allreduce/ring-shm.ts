import * as fs from 'node:fs';
import type { RingPlan } from './ring-allreduce';
import { RingError } from './ring-frame';

/**
 * The all-reduce between ranks that share a machine, through POSIX shared memory (as NCCL's SHM
 * transport does within a node) instead of loopback TCP: each rank writes its gradient into its
 * own segment, rank r sums chunk r of every rank's segment in rank order, and every rank copies
 * the finished chunks from their owners' segments. Per rank that is about 2.5·4N bytes of memory
 * traffic, against 2·4N bytes through the kernel's TCP stack each way for the ring (bench:allreduce
 * prints both side by side).
 *
 * The ring's TCP connections stay: they carry the step's BEGIN and small MARK frames (phase 0 "my
 * gradient is in my segment", phase 1 "my chunk's sum is in my segment", relayed round the ring
 * until every rank has seen every rank's), the heartbeats, and the failures — a dead or silent
 * peer breaks the group exactly as in the TCP ring.
 *
 * Determinism: chunk c is ((x_0 + x_1) + x_2) + … in rank order, computed once by rank c and
 * copied by the others, so every rank gets the same bits, and they equal meanInRankOrder's sum for
 * any W (the TCP ring's order differs for W ≥ 3).
 *
 * Each rank keeps two segments and alternates them per all-reduce: a rank may start writing the
 * next gradient while a slower one still copies chunks of this one, but never two ahead (a rank
 * completes all-reduce k only after every rank has summed its chunk of k, i.e. finished k − 1).
 */

/** The shared-memory functions of the native addon (libs/native-kernels/native/ice_kernels.c). */
export interface SharedMemoryAddon {
  shmCreate(name: string, bytes: number): ArrayBuffer;
  shmOpen(name: string, bytes: number): ArrayBuffer;
  shmUnlink(name: string): boolean;
  sumInOrder(buffers: ArrayBuffer[], byteOffset: number, count: number, dst: number, divisor: number): void;
}

/** The addon at `path` if it loads and has the shared-memory functions (an addon built before them does not). */
export function loadSharedMemoryAddon(path: string | undefined): { addon?: SharedMemoryAddon; why?: string } {
  if (!path) return { why: 'no native addon given' };
  if (!fs.existsSync(path)) return { why: `the native addon is not built (${path})` };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const a = require(path) as Partial<SharedMemoryAddon>;
    if (typeof a.shmCreate !== 'function' || typeof a.sumInOrder !== 'function')
      return { why: 'the native addon predates shared memory (rebuild: node libs/native-kernels/scripts/build.js)' };
    return { addon: a as SharedMemoryAddon };
  } catch (e) {
    return { why: `the native addon does not load: ${(e as Error).message.split('\n')[0]}` };
  }
}

/**
 * Which ranks can share memory: the same kernel boot and the same /dev/shm mount (two containers
 * on one machine share the boot id but, unless started with a shared IPC namespace, not /dev/shm).
 * Undefined where there is no /dev/shm.
 */
export function sharedMemoryHost(): string | undefined {
  try {
    const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const st = fs.statSync('/dev/shm');
    return `${boot}:${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

const SEGMENT_PREFIX = '/ice-allreduce-';

/**
 * Unlinks the segments of processes that are gone. A rank unlinks its names once the group has
 * run its first all-reduce (or when it closes or breaks), but a process killed before that leaves
 * them in /dev/shm; the pid in the name tells whose they are.
 */
function sweepOrphans(addon: SharedMemoryAddon): void {
  let names: string[];
  try {
    names = fs.readdirSync('/dev/shm').filter((f) => f.startsWith(SEGMENT_PREFIX.slice(1)));
  } catch {
    return;
  }
  for (const f of names) {
    const pid = Number(f.slice(SEGMENT_PREFIX.length - 1).split('-')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || alive(pid)) continue;
    try {
      addon.shmUnlink(`/${f}`);
    } catch {
      // another rank swept it first, or it is not ours to remove
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}

/** What a rank publishes in the rendezvous when it can reduce through shared memory. */
export interface SharedMemoryEntry {
  host: string;
  /** Its segments are `${name}-0` and `${name}-1`. */
  name: string;
}

/** This rank's two segments (created at formation, before it publishes their name) and, once formed, the other ranks'. */
export class SharedSegments {
  private peers: ArrayBuffer[][] | undefined;
  private unlinked = false;

  private constructor(
    readonly addon: SharedMemoryAddon,
    readonly entry: SharedMemoryEntry,
    readonly bytes: number,
    private readonly own: ArrayBuffer[],
  ) {}

  /** Creates this rank's segments; undefined with the reason when it cannot (no room in /dev/shm, …). */
  static create(addon: SharedMemoryAddon, host: string, session: string, length: number): { segments?: SharedSegments; why?: string } {
    sweepOrphans(addon);
    const name = `${SEGMENT_PREFIX}${process.pid}-${session}`;
    const bytes = Math.max(4, length * 4);
    const made: string[] = [];
    try {
      const own = [0, 1].map((p) => {
        const b = addon.shmCreate(`${name}-${p}`, bytes);
        made.push(`${name}-${p}`);
        return b;
      });
      return { segments: new SharedSegments(addon, { host, name }, bytes, own) };
    } catch (e) {
      for (const n of made) addon.shmUnlink(n);
      return { why: (e as Error).message };
    }
  }

  /** Maps every rank's segments (this rank's own among them), by the names in the rendezvous. */
  openPeers(entries: readonly SharedMemoryEntry[], rank: number): void {
    this.peers = [0, 1].map((p) =>
      entries.map((e, r) => {
        if (r === rank) return this.own[p];
        try {
          return this.addon.shmOpen(`${e.name}-${p}`, this.bytes);
        } catch (err) {
          throw new RingError(
            'CONFIG_INVALID',
            `rank ${rank} cannot map rank ${r}'s all-reduce segment ${e.name}-${p} although both report the same machine: ${(err as Error).message}. ` +
              'Set ALLREDUCE_TRANSPORT=tcp on the workers if their /dev/shm is not shared',
          );
        }
      }),
    );
  }

  /** The W segments (index = rank) used by the k-th all-reduce of the group. */
  forReduction(k: number): ArrayBuffer[] {
    if (!this.peers) throw new RingError('INPUT_INVALID', 'shared segments used before the group formed');
    return this.peers[k % 2];
  }

  /** Removes this rank's names (the mappings, its own and the other ranks', stay valid while they are referenced). */
  unlink(): void {
    if (this.unlinked) return;
    this.unlinked = true;
    for (const p of [0, 1]) {
      try {
        this.addon.shmUnlink(`${this.entry.name}-${p}`);
      } catch {
        // already gone, or /dev/shm unmounted: nothing left to clean
      }
    }
  }

  /** Unlinks and drops every mapping (they are unmapped when collected). */
  release(): void {
    this.unlink();
    this.peers = undefined;
  }
}

/** The common shape of one all-reduce on one rank, driven by the predecessor's frames (RingReduction, SharedMemoryReduction). */
export interface Reduction {
  readonly done: boolean;
  readonly progress: { received: number; expected: number };
  start(): void;
  /** One frame from the predecessor: a DATA segment (ring) or a MARK (shared memory). */
  receive(ringStep: number, index: number, payload: Float32Array): void;
}

/**
 * One all-reduce through shared memory on one rank. `send(phase, origin)` sends a MARK to the
 * successor; a rank forwards every mark except those its successor originated, so each rank
 * receives W − 1 marks per phase, one per other rank. With `divisor` W the result is the mean: the
 * owner of a chunk divides it once, in the native sum, and the others copy those bits.
 */
export class SharedMemoryReduction implements Reduction {
  private readonly seen = [new Set<number>(), new Set<number>()];
  private summed = false;
  private gathered = false;
  private readonly views: Float32Array[];

  constructor(
    private readonly plan: RingPlan,
    private readonly data: Float32Array,
    private readonly segments: ArrayBuffer[],
    private readonly addon: SharedMemoryAddon,
    private readonly divisor: number,
    private readonly send: (phase: number, origin: number) => void,
  ) {
    if (data.length !== plan.length)
      throw new RingError('INPUT_INVALID', `ring plan is for ${plan.length} elements, the data has ${data.length}`);
    if (segments.length !== plan.worldSize)
      throw new RingError('INPUT_INVALID', `${segments.length} shared segments for ${plan.worldSize} ranks`);
    this.views = segments.map((b) => new Float32Array(b, 0, plan.length));
  }

  get done(): boolean {
    return this.gathered;
  }

  get progress(): { received: number; expected: number } {
    return { received: this.seen[0].size + this.seen[1].size, expected: 2 * (this.plan.worldSize - 1) };
  }

  start(): void {
    this.views[this.plan.rank].set(this.data);
    this.send(0, this.plan.rank);
    this.advance();
  }

  receive(phase: number, origin: number, payload: Float32Array): void {
    const { worldSize: W, rank } = this.plan;
    if (phase !== 0 && phase !== 1) throw new RingError('INPUT_INVALID', `MARK of phase ${phase}: phases are 0 and 1`);
    if (!Number.isInteger(origin) || origin < 0 || origin >= W || origin === rank)
      throw new RingError('INPUT_INVALID', `MARK from rank ${origin}: not another rank of ${W}`);
    if (payload.length !== 0) throw new RingError('INPUT_INVALID', `MARK with ${payload.length} floats: marks carry none`);
    if (this.seen[phase].has(origin)) throw new RingError('INPUT_INVALID', `MARK of phase ${phase} from rank ${origin} received twice`);
    this.seen[phase].add(origin);
    if (origin !== (rank + 1) % W) this.send(phase, origin);
    this.advance();
  }

  private advance(): void {
    const { worldSize: W, rank, bounds } = this.plan;
    if (!this.summed && this.seen[0].size === W - 1) {
      // Every rank's gradient is in its segment: sum chunk `rank` in rank order into this rank's segment, and take it.
      const [a, b] = [bounds[rank], bounds[rank + 1]];
      this.addon.sumInOrder(this.segments, a * 4, b - a, rank, this.divisor);
      this.data.set(this.views[rank].subarray(a, b), a);
      this.summed = true;
      this.send(1, rank);
    }
    if (this.summed && !this.gathered && this.seen[1].size === W - 1) {
      for (let c = 0; c < W; c++) if (c !== rank) this.data.set(this.views[c].subarray(bounds[c], bounds[c + 1]), bounds[c]);
      this.gathered = true;
    }
  }
}
