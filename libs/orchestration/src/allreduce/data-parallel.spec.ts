/**
 * Data-parallel training of digits-micro, ranks as concurrent executeRun calls in this process,
 * each with a RingGradientReducer (its own transport thread, a TCP ring on loopback, the real
 * Redis for the rendezvous).
 *
 * Rank r of W takes positions r, r+W, r+2W… of each epoch's permutation, so the union of the
 * ranks' batches at stream position p is exactly the single-rank batch at p of W × batchSize
 * samples (in another order). Where the loss is a per-sample mean (classification with label
 * smoothing, no mixup, no drop path), the mean of the ranks' gradients is the gradient of the
 * union batch: two ranks must end with the weights of one rank trained on the union, up to float
 * rounding. The ICE loss is not a per-sample mean (its background gate pools the foreground
 * fraction over the whole batch), so there the test is that the ranks stay bit-identical and learn.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import IORedis from 'ioredis';
import { initBackend, readCheckpointStep, readWeights, type StateDict } from '@ice/core';
import {
  executeRun,
  FINAL_CHECKPOINT,
  LAST_CHECKPOINT,
  parseRunConfig,
  PREV_CHECKPOINT,
  type RunConfigInput,
  type RunProgress,
  type RunResult,
} from '@ice/experiments';
import { RingGradientReducer } from './ring-gradient.reducer';

const REDIS_URL = process.env.E2E_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PRETRAINED = path.resolve(__dirname, '..', '..', '..', '..', 'assets', 'digits-micro-pretrained.safetensors');

describe('data-parallel executeRun (ranks on a TCP ring)', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-dp-'));
  const keyPrefix = `ice-test-dp-${randomBytes(4).toString('hex')}`;
  let redis: IORedis;

  beforeAll(async () => {
    await initBackend();
    redis = new IORedis(REDIS_URL);
  });
  afterAll(async () => {
    const left = await redis.keys(`${keyPrefix}:*`);
    if (left.length) await redis.del(...left);
    await redis.quit();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** All W ranks of one run, concurrently; dirs as the artifact store lays them out. */
  async function trainRanks(
    raw: RunConfigInput,
    dir: string,
    opts: {
      runId?: string;
      worldSize?: number;
      abortAtStep?: number;
      onProgress?: (rank: number, p: RunProgress) => void;
      log?: (rank: number, message: string) => void;
    } = {},
  ): Promise<PromiseSettledResult<RunResult>[]> {
    const W = opts.worldSize ?? 2;
    const config = parseRunConfig({ ...raw, worldSize: W });
    const runId = opts.runId ?? randomUUID();
    const ac = new AbortController();
    return Promise.allSettled(
      Array.from({ length: W }, (_, rank) => rank).map(async (rank) => {
        const reducer = new RingGradientReducer({
          redisUrl: REDIS_URL,
          keyPrefix,
          runId,
          rank,
          worldSize: W,
          timeoutMs: 30_000,
          pollMs: 50,
        });
        try {
          return await executeRun(config, {
            runDir: rank === 0 ? dir : path.join(dir, `rank-${rank}`),
            rank,
            reducer,
            signal: ac.signal,
            progressIntervalMs: 0,
            ...(opts.log ? { log: (m: string) => opts.log!(rank, m) } : {}),
            onProgress: (p) => {
              opts.onProgress?.(rank, p);
              if (p.step === opts.abortAtStep) ac.abort();
            },
          });
        } finally {
          await reducer.close();
        }
      }),
    );
  }

  const weightsOf = (file: string): StateDict => {
    const t = readWeights(file).tensors;
    for (const k of [...t.keys()]) if (k.startsWith('optimizer.')) t.delete(k);
    return t;
  };

  /** Largest |a − b| over the weights; `skip(name, i)` leaves elements out. */
  function maxAbsDiff(a: StateDict, b: StateDict, skip: (name: string, i: number, size: number) => boolean = () => false): number {
    expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
    let m = 0;
    for (const [k, ta] of a) {
      const tb = b.get(k)!;
      expect(tb.shape).toEqual(ta.shape);
      for (let i = 0; i < ta.data.length; i++)
        if (!skip(k, i, ta.data.length)) m = Math.max(m, Math.abs(Number(ta.data[i]) - Number(tb.data[i])));
    }
    return m;
  }

  /**
   * The attention's key bias (the middle third of qkv.bias): softmax over keys ignores a shift
   * common to all keys, so its gradient is zero in exact arithmetic and only float rounding noise
   * (~1e-10) in practice. AdamW normalises gradients, so noise that differs between two summation
   * orders moves these weights by up to lr per step, in either direction: they are compared
   * against that bound, not against 1e-6.
   */
  const isKeyBias = (name: string, i: number, size: number): boolean =>
    /attn\.qkv\.bias$/.test(name) && i >= size / 3 && i < (2 * size) / 3;

  function values<T>(settled: PromiseSettledResult<T>[]): T[] {
    return settled.map((s) => {
      if (s.status === 'rejected') throw s.reason;
      return s.value;
    });
  }

  const classify = (accumSteps: number): RunConfigInput => ({
    mode: 'classify',
    steps: 3,
    checkpointEvery: 2,
    seed: 7,
    data: { batchSize: 4, evalLimit: 8, loaderThreads: 0 },
    optimizer: { accumSteps, warmupSteps: 1, lr: 1e-3, mixup: false },
  });

  /*
   * Tolerance against one rank: the W ranks' mean gradient and the one rank's gradient of the
   * union batch are the same quantity computed in float32 in different orders (per-sample means
   * over 4 then over W ranks, the ring's chunk order, vs one mean over 4W samples), so they differ
   * by rounding, ~1e-7 relative; three AdamW steps of lr 1e-3 carry that into the weights as well
   * under 1e-6, except for the attention key bias (see isKeyBias), bounded by steps × lr.
   */
  it.each([
    [2, 1],
    [2, 2],
    [3, 1],
  ])('%i ranks of batch 4 end bit-identical, with the weights of one rank on the union batch (accumSteps %i)', async (W, accumSteps) => {
    const tensorsBefore = tf.memory().numTensors;
    const dir = path.join(tmp, `union-${W}-${accumSteps}`);
    const [r0, ...others] = values(await trainRanks(classify(accumSteps), dir, { worldSize: W }));
    // Only rank 0 scores and writes final weights; the other ranks end with their last checkpoints.
    expect(r0.metrics.eval_images).toBe(8);
    const rank0 = weightsOf(path.join(dir, FINAL_CHECKPOINT));
    others.forEach((r, i) => {
      expect(r.metrics).toEqual({});
      expect(fs.existsSync(path.join(dir, `rank-${i + 1}`, FINAL_CHECKPOINT))).toBe(false);
      expect(r.checkpoint).toBe(path.join(dir, `rank-${i + 1}`, LAST_CHECKPOINT));
      expect(maxAbsDiff(rank0, weightsOf(r.checkpoint))).toBe(0);
    });
    // Nothing leaked by the reducer path (the models themselves are disposed by executeRun).
    expect(tf.memory().numTensors).toBe(tensorsBefore);

    const single = path.join(tmp, `single-${W}-${accumSteps}`);
    const base = classify(accumSteps);
    await executeRun(parseRunConfig({ ...base, data: { ...base.data, batchSize: 4 * W } }), { runDir: single });
    const union = weightsOf(path.join(single, FINAL_CHECKPOINT));
    expect(maxAbsDiff(rank0, union, isKeyBias)).toBeLessThan(1e-6);
    expect(maxAbsDiff(rank0, union)).toBeLessThan(base.steps! * base.optimizer!.lr!);
    expect(await redis.keys(`${keyPrefix}:*`)).toEqual([]);
  });

  it('keeps the ranks of an ICE run bit-identical while the loss goes down, and resumes both ranks from their checkpoints', async () => {
    const ice: RunConfigInput = {
      steps: 16,
      checkpointEvery: 4,
      seed: 2,
      model: { weights: PRETRAINED },
      data: { batchSize: 8, evalLimit: 8, loaderThreads: 0 },
      optimizer: { warmupSteps: 1, lr: 5e-3 },
    };
    const losses: number[][] = [[], []];
    const dir = path.join(tmp, 'ice');
    values(await trainRanks(ice, dir, { onProgress: (rank, p) => losses[rank].push(p.loss) }));
    expect(losses.map((l) => l.length)).toEqual([16, 16]);
    const final = weightsOf(path.join(dir, FINAL_CHECKPOINT));
    expect(maxAbsDiff(final, weightsOf(path.join(dir, 'rank-1', LAST_CHECKPOINT)))).toBe(0);
    // Each rank reports the loss of its own shard; the group's (their mean) falls, batch noise aside: second half below first.
    const group = losses[0].map((l, i) => (l + losses[1][i]) / 2);
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(group.slice(8))).toBeLessThan(mean(group.slice(0, 8)) - 0.02);

    // Killed after step 6 (the common checkpoint is step 4): both ranks resume from it to the same weights.
    const killed = path.join(tmp, 'ice-killed');
    const runId = randomUUID();
    const outcomes = await trainRanks(ice, killed, { runId, abortAtStep: 6 });
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
    const resumed = values(await trainRanks(ice, killed, { runId }));
    expect(resumed.map((r) => r.resumedFromStep)).toEqual([4, 4]);
    expect(maxAbsDiff(weightsOf(path.join(killed, FINAL_CHECKPOINT)), final)).toBe(0);

    // Stopped after step 10 (checkpoints at 4 and 8), and rank 1 as if it had died between update 8 and its
    // checkpoint: its last is step 4, rank 0's step 8. The group meets at 4 (rank 0 steps back) and ends as above.
    const apart = path.join(tmp, 'ice-apart');
    const apartId = randomUUID();
    expect((await trainRanks(ice, apart, { runId: apartId, abortAtStep: 10 })).map((o) => o.status)).toEqual(['rejected', 'rejected']);
    for (const d of [apart, path.join(apart, 'rank-1')]) expect(readCheckpointStep(path.join(d, PREV_CHECKPOINT))).toBe(4);
    fs.renameSync(path.join(apart, 'rank-1', PREV_CHECKPOINT), path.join(apart, 'rank-1', LAST_CHECKPOINT));
    const logs: string[] = [];
    const met = values(await trainRanks(ice, apart, { runId: apartId, log: (rank, m) => logs.push(`${rank}: ${m}`) }));
    expect(met.map((r) => r.resumedFromStep)).toEqual([4, 4]);
    expect(logs.filter((l) => /stepping back to step 4/.test(l))).toEqual([expect.stringMatching(/^0: rank 0 .* is ahead of the group/)]);
    expect(maxAbsDiff(weightsOf(path.join(apart, FINAL_CHECKPOINT)), final)).toBe(0);
  });

  it('refuses worldSize > 1 without a reducer, and a rank outside the world', async () => {
    const config = parseRunConfig({ steps: 1, worldSize: 2, data: { batchSize: 4, evalLimit: 8, loaderThreads: 0 } });
    await expect(executeRun(config, { runDir: path.join(tmp, 'none') })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringMatching(/needs 2 ranks/) as unknown,
    });
    await expect(executeRun(config, { runDir: path.join(tmp, 'none'), rank: 2 })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});
