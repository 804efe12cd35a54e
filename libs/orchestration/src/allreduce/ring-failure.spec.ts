import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import * as path from 'node:path';
import IORedis from 'ioredis';
import { RingPlan, ringOrderSum } from './ring-allreduce';
import type { RingError } from './ring-frame';
import { ADDON_PATH } from '@ice/native-kernels';
import { RingGroup } from './ring-group';
import { digest, rankVector, type RankFixtureConfig } from './fixtures/ring-rank.fixture';

/**
 * Failures with a real process on the other end: one rank runs as a child process (fixtures/
 * ring-rank.fixture.ts) that the test kills (SIGKILL: its sockets close at once) or stops
 * (SIGSTOP: its sockets stay open and silent, which only the heartbeat can tell), while the other
 * ranks run as RingGroups in this process. Then the group re-forms when the rank comes back.
 */
const REDIS_URL = process.env.E2E_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const FIXTURE = path.join(__dirname, 'fixtures', 'ring-rank.fixture.ts');

interface RankProcess {
  proc: ChildProcess;
  events: Record<string, unknown>[];
  next(pred: (e: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<void>;
}

function spawnRank(c: RankFixtureConfig): RankProcess {
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'run-ts.js'), FIXTURE, JSON.stringify(c)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const events: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  let buf = '';
  let err = '';
  proc.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      events.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      buf = buf.slice(nl + 1);
      waiters.splice(0).forEach((w) => w());
    }
  });
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  async function next(pred: (e: Record<string, unknown>) => boolean, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = events.find(pred);
      if (hit) return hit;
      if (proc.exitCode !== null || Date.now() > deadline)
        throw new Error(`rank process: no such event; saw ${JSON.stringify(events)}; stderr: ${err}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }
  return { proc, events, next, exited };
}

describe('ring all-reduce failures (a rank in a process of its own)', () => {
  const keyPrefix = `ice-test-ringfail-${randomBytes(4).toString('hex')}`;
  let redis: IORedis;
  const groups: RingGroup[] = [];
  const procs: RankProcess[] = [];

  beforeAll(() => {
    redis = new IORedis(REDIS_URL);
  });
  afterAll(async () => {
    for (const p of procs) {
      if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
      await p.exited;
    }
    await Promise.all(groups.map((g) => g.close()));
    const left = await redis.keys(`${keyPrefix}:*`);
    if (left.length) await redis.del(...left);
    await redis.quit();
  });

  const config = (runId: string, rank: number, o: Partial<RankFixtureConfig> = {}): RankFixtureConfig => ({
    redisUrl: REDIS_URL,
    keyPrefix,
    runId,
    rank,
    worldSize: 3,
    length: 2_000_000,
    startStep: 0,
    steps: 1000,
    timeoutMs: 60_000,
    heartbeatTimeoutMs: 30_000,
    ...o,
  });

  function local(runId: string, rank: number, heartbeatTimeoutMs: number, addonPath?: string): RingGroup {
    const g = new RingGroup({ redis, keyPrefix, runId, rank, worldSize: 3, timeoutMs: 60_000, heartbeatTimeoutMs, pollMs: 50, addonPath });
    groups.push(g);
    return g;
  }

  /** Ranks 0 and 1 here reduce step after step until one fails; resolves with the failures and when they came. */
  function runLocal(gs: RingGroup[], length: number, from: number): Promise<{ error: RingError; at: number; step: number }[]> {
    return Promise.all(
      gs.map(async (g, rank) => {
        for (let step = from; ; step++) {
          try {
            await g.allReduceSum(step, rankVector(rank, step, length));
          } catch (e) {
            return { error: e as RingError, at: Date.now(), step };
          }
        }
      }),
    );
  }

  it.each([
    ['the TCP ring', undefined],
    ['shared memory', ADDON_PATH],
  ])(
    '%s: a rank killed mid-step fails its peers’ step within seconds (not at a timeout), and the group re-forms the moment it comes back',
    async (_, addonPath) => {
      const runId = randomUUID();
      // Heartbeat and step timeouts of 30 and 60 s: a failure in seconds can only come from the closed sockets.
      const gs = [local(runId, 0, 30_000, addonPath), local(runId, 1, 30_000, addonPath)];
      const victim = spawnRank(config(runId, 2, { addonPath }));
      procs.push(victim);
      const failures = runLocal(gs, 2_000_000, 0);
      await victim.next((e) => typeof e.step === 'number' && e.step >= 2);
      victim.proc.kill('SIGKILL');
      const killedAt = Date.now();
      const outcome = await failures;
      for (const { error, at } of outcome) {
        expect(error).toMatchObject({ code: 'RANK_TIMEOUT' });
        expect(error.message).toMatch(/lost its (predecessor|successor) in the all-reduce ring, rank [0-2]/);
        expect(at - killedAt).toBeLessThan(5000);
      }
      // Rank 2 died mid-step or between steps; the others were in the same step or one behind.
      const failedAt = outcome.map((o) => o.step);
      expect(Math.max(...failedAt) - Math.min(...failedAt)).toBeLessThanOrEqual(1);

      // The retry: ranks 0 and 1 form a new group from the common checkpoint (step 2 here) and wait;
      // rank 2's replacement starts a few seconds later and is met as soon as it joins.
      const retry = [local(runId, 0, 30_000, addonPath), local(runId, 1, 30_000, addonPath)];
      const n = 200_000;
      const resumed = retry.map((g, rank) => g.allReduceSum(2, rankVector(rank, 2, n)).then(() => Date.now()));
      await new Promise((r) => setTimeout(r, 2000));
      const back = spawnRank(config(runId, 2, { length: n, startStep: 2, steps: 3, addonPath }));
      procs.push(back);
      const joining = await back.next((e) => e.joining === true);
      const formedAt = Math.max(...(await Promise.all(resumed)));
      expect(formedAt - (joining.at as number)).toBeLessThan(3000);
      expect(retry[0].formedRound!.gen).toBeGreaterThan(gs[0].formedRound!.gen);
      // And the re-formed group computes the right sums.
      for (let step = 3; step < 5; step++) {
        const data = [0, 1].map((r) => rankVector(r, step, n));
        await Promise.all(retry.map((g, r) => g.allReduceSum(step, data[r])));
        const parts = [0, 1, 2].map((r) => rankVector(r, step, n));
        // The TCP ring sums chunk c from rank c round the ring; shared memory in rank order.
        const expected = ringOrderSum(parts, addonPath ? { bounds: [0, n, n, n], worldSize: 3 } : new RingPlan(n, 3, 0, 1 << 18));
        expect(digest(data[0])).toBe(digest(expected));
        expect(digest(data[1])).toBe(digest(expected));
        expect((await back.next((e) => e.step === step)).digest).toBe(digest(expected));
      }
      await back.next((e) => e.done === true);
      expect(retry.map((g) => g.stats.transport)).toEqual(addonPath ? ['shm', 'shm'] : ['tcp', 'tcp']);
    },
    120_000,
  );

  it('a stalled rank (SIGSTOP: sockets open, nothing moves) is detected by the heartbeat timeout', async () => {
    const runId = randomUUID();
    const gs = [local(runId, 0, 1500), local(runId, 1, 1500)];
    const victim = spawnRank(config(runId, 2, { heartbeatTimeoutMs: 1500, length: 500_000 }));
    procs.push(victim);
    const failures = runLocal(gs, 500_000, 0);
    await victim.next((e) => typeof e.step === 'number' && e.step >= 2);
    victim.proc.kill('SIGSTOP');
    const stoppedAt = Date.now();
    try {
      for (const { error, at } of await failures) {
        expect(error).toMatchObject({ code: 'RANK_TIMEOUT' });
        // Rank 2's neighbours hear nothing; a rank whose other neighbour broke the ring sees that connection close instead.
        expect(error.message).toMatch(/no data and no heartbeat for \d+ ms|connection (closed|reset)/);
        expect(at - stoppedAt).toBeLessThan(1500 + 4000);
      }
      const messages = (await failures).map((f) => f.error.message).join('\n');
      expect(messages).toMatch(/rank 2 \(round \d+\): no data and no heartbeat/);
    } finally {
      victim.proc.kill('SIGKILL');
    }
  }, 60_000);
});
