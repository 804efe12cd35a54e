import type { Redis } from 'ioredis';
import { RingError } from './ring-frame';
import type { SharedMemoryEntry } from './ring-shm';

/** What a rank publishes about itself for one round of a run. */
export interface RendezvousEntry {
  rank: number;
  /** Where the other ranks reach this rank's listener (the advertised address, not necessarily the bound one). */
  host: string;
  port: number;
  /** The optimizer update this rank is about to reduce (every rank must be at the same one). */
  step: number;
  /** float32 elements of its gradient. */
  length: number;
  /** Earlier steps this rank could resume from instead (checkpoints it still holds); absent: none. */
  resumable?: number[];
  /** Random per process attempt: tells two incarnations of one rank apart. */
  session: string;
  /** Its shared-memory segments, when it can reduce through them (ring-shm.ts); the group uses them when every rank is on one machine. */
  shm?: SharedMemoryEntry;
}

export interface Round {
  /** Generation number, counting up per run while its keys live (for messages). */
  gen: number;
  /** Random id of the round: what a connecting rank must name, so no socket of an older round is ever taken for this one. */
  id: string;
}

/**
 * Redis as the rendezvous store only (as torch.distributed uses a TCPStore): per run, a pointer
 * to the current round (`<prefix>:<run>:round` → {gen, id}) and, per round, one hash of the
 * ranks' entries (`<prefix>:<run>:round:<id>`). Gradients never go through Redis.
 *
 * A rank joins the current round, or opens the next one if the current one is complete (all W
 * ranks in it) — a complete round that a rank joins again is over: one of its members is an
 * earlier incarnation of the joining rank. A member that fails to connect to the others abandons
 * the round (only if it is still current), and everyone waiting on it joins the next. All keys
 * expire (`ttlSeconds`, refreshed while ranks wait); a round that is superseded is deleted by the
 * rank that supersedes it, and when every rank leaves a round cleanly (its run finished) the last
 * one deletes what is left.
 */
export class RingRendezvous {
  constructor(
    private readonly redis: Redis,
    private readonly keyPrefix: string,
    private readonly runId: string,
    private readonly worldSize: number,
    private readonly ttlSeconds: number,
  ) {}

  get currentKey(): string {
    return `${this.keyPrefix}:${this.runId}:round`;
  }

  membersKey(id: string): string {
    return `${this.currentKey}:${id}`;
  }

  private leftKey(id: string): string {
    return `${this.currentKey}:${id}:left`;
  }

  async join(entry: RendezvousEntry, freshId: string): Promise<Round> {
    const [gen, id] = (await this.redis.eval(
      JOIN,
      1,
      this.currentKey,
      `${this.currentKey}:`,
      String(entry.rank),
      String(this.worldSize),
      JSON.stringify(entry),
      String(this.ttlSeconds),
      freshId,
    )) as [number, string];
    return { gen: Number(gen), id };
  }

  /** The current round and the entries of round `id`, read together. */
  async look(id: string): Promise<{ current: Round | null; members: Map<number, RendezvousEntry> }> {
    const res = await this.redis.multi().hmget(this.currentKey, 'gen', 'id').hgetall(this.membersKey(id)).exec();
    if (!res) throw new RingError('RANK_TIMEOUT', 'the rendezvous transaction was aborted');
    const [[e1, cur], [e2, raw]] = res as [[Error | null, (string | null)[]], [Error | null, Record<string, string>]];
    const failed = e1 ?? e2;
    if (failed) throw failed;
    const members = new Map<number, RendezvousEntry>();
    for (const [rank, json] of Object.entries(raw)) members.set(Number(rank), JSON.parse(json) as RendezvousEntry);
    return { current: cur[1] ? { gen: Number(cur[0]), id: cur[1] } : null, members };
  }

  /** Keeps the run's keys alive while ranks wait. */
  async refresh(id: string): Promise<void> {
    await this.redis.multi().expire(this.currentKey, this.ttlSeconds).expire(this.membersKey(id), this.ttlSeconds).exec();
  }

  /** Moves the run past round `id` if it is still current (a member could not connect); true if this call moved it. */
  async abandon(id: string, freshId: string): Promise<boolean> {
    return (await this.redis.eval(ABANDON, 1, this.currentKey, id, freshId, String(this.ttlSeconds))) === 1;
  }

  /**
   * Leaves round `id`. Clean (the rank's run is over): counts it, and the last of the W deletes
   * the run's keys. Not clean: takes this rank's entry back if the round is still waiting for
   * others (so that nobody connects to a listener that is gone); a complete round stays as it is
   * (whoever joins next opens a new one), and expires.
   */
  async leave(id: string, rank: number, session: string, clean: boolean): Promise<void> {
    await this.redis.eval(
      LEAVE,
      3,
      this.currentKey,
      this.membersKey(id),
      this.leftKey(id),
      id,
      String(rank),
      session,
      clean ? '1' : '0',
      String(this.worldSize),
      String(this.ttlSeconds),
    );
  }
}

/** KEYS[1] current; ARGV: members-key prefix, rank, W, entry, ttl, fresh id. */
const JOIN = `
local cur = redis.call('HMGET', KEYS[1], 'gen', 'id')
local gen = tonumber(cur[1]) or 0
local id = cur[2]
if (not id) or redis.call('HLEN', ARGV[1] .. id) >= tonumber(ARGV[3]) then
  -- The complete round is over (its members connected long ago, or are finding out that one of them is gone): drop it.
  if id then redis.call('DEL', ARGV[1] .. id, ARGV[1] .. id .. ':left') end
  gen = gen + 1
  id = ARGV[6]
  redis.call('HSET', KEYS[1], 'gen', gen, 'id', id)
end
local members = ARGV[1] .. id
redis.call('HSET', members, ARGV[2], ARGV[4])
redis.call('EXPIRE', members, ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {gen, id}
`;

/** KEYS[1] current; ARGV: round id, fresh id, ttl. */
const ABANDON = `
local cur = redis.call('HMGET', KEYS[1], 'gen', 'id')
if cur[2] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1] .. ':' .. ARGV[1], KEYS[1] .. ':' .. ARGV[1] .. ':left')
redis.call('HSET', KEYS[1], 'gen', (tonumber(cur[1]) or 0) + 1, 'id', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
`;

/** KEYS: current, members, left; ARGV: round id, rank, session, clean, W, ttl. */
const LEAVE = `
if ARGV[4] == '1' then
  local n = redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], ARGV[6])
  if n >= tonumber(ARGV[5]) then
    redis.call('DEL', KEYS[2], KEYS[3])
    if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then redis.call('DEL', KEYS[1]) end
  end
  return 1
end
if redis.call('HLEN', KEYS[2]) < tonumber(ARGV[5]) then
  local mine = redis.call('HGET', KEYS[2], ARGV[2])
  if mine and cjson.decode(mine).session == ARGV[3] then redis.call('HDEL', KEYS[2], ARGV[2]) end
end
return 0
`;
