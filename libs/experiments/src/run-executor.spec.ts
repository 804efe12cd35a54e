import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IceError, startThread } from '@ice/core';
import { BatchLoader, batchNCHW, loadMnistSource } from '@ice/datasets';
import { parseRunConfig, type RunConfig } from './run.contract';
import { runOnce } from './run-once';
import {
  batchesPerEpoch,
  batchIndices,
  loadSamples,
  openRunData,
  resolveLoaderThreads,
  TRAIN_CANVASES_PER_DIGIT,
  TrainBatchStream,
} from './run-data';
import { executeRun, FINAL_CHECKPOINT, LAST_CHECKPOINT, runIdentityJson } from './run-executor';

function withThreads(config: RunConfig, loaderThreads: RunConfig['data']['loaderThreads']): RunConfig {
  return { ...config, data: { ...config.data, loaderThreads } };
}

/** OS threads of this process (Linux), or null elsewhere. */
function osThreads(): number | null {
  try {
    const m = /^Threads:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

async function threadsBackTo(baseline: number | null): Promise<number | null> {
  if (baseline === null) return null;
  let n = osThreads() ?? 0;
  // Worker threads exit asynchronously after terminate(); give them a moment.
  for (let k = 0; k < 100 && n > baseline; k++) {
    await new Promise((r) => setTimeout(r, 50));
    n = osThreads() ?? 0;
  }
  return n;
}

function sameBytes(a: string, b: string): boolean {
  return fs.readFileSync(a).equals(fs.readFileSync(b));
}

describe('executeRun on digits', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-run-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const config = parseRunConfig({ steps: 4, checkpointEvery: 2, data: { batchSize: 4, evalLimit: 8 }, seed: 3 });

  it('trains, checkpoints, reports progress and scores the run', async () => {
    const progress: number[] = [];
    const epochs: number[] = [];
    const etas: (number | null)[] = [];
    const dir = path.join(tmp, 'a');
    const r = await executeRun(config, {
      runDir: dir,
      progressIntervalMs: 0,
      onProgress: (p) => {
        progress.push(p.step);
        epochs.push(p.epoch);
        etas.push(p.etaSeconds);
      },
    });
    expect(r.steps).toBe(4);
    expect(r.resumedFromStep).toBeNull();
    expect(progress).toEqual([1, 2, 3, 4]);
    // No ETA from the first report (its window is start-up); then one from the measured rate, 0 at the end.
    expect(etas[0]).toBeNull();
    expect(etas.slice(1, 3)).toEqual([expect.any(Number), expect.any(Number)]);
    expect(etas[3]).toBe(0);
    // Epochs of the run's own training stream (batches of 4 of the digits' train canvases).
    const perEpoch = openRunData(config, 32).batchesPerEpoch;
    expect(epochs).toEqual([1, 2, 3, 4].map((s) => s / perEpoch));
    expect(fs.existsSync(path.join(dir, FINAL_CHECKPOINT))).toBe(true);
    expect(r.metrics.eval_images).toBe(8);
    expect(r.metrics.top1).toBeGreaterThanOrEqual(0);
    expect(r.metrics.fg_fraction).toBeGreaterThanOrEqual(0);
  });

  it('resumes a killed run from its last checkpoint to the same final weights', async () => {
    const dir = path.join(tmp, 'b');
    const ac = new AbortController();
    // Stop after step 2 (a checkpoint is written at step 2), as a killed worker would.
    await expect(
      executeRun(config, { runDir: dir, progressIntervalMs: 0, signal: ac.signal, onProgress: (p) => void (p.step === 2 && ac.abort()) }),
    ).rejects.toThrow(IceError);
    const resumed = await executeRun(config, { runDir: dir });
    expect(resumed.resumedFromStep).toBe(2);
    const a = fs.readFileSync(path.join(tmp, 'a', FINAL_CHECKPOINT));
    const b = fs.readFileSync(path.join(dir, FINAL_CHECKPOINT));
    expect(b.equals(a)).toBe(true);
  });

  it('is cancelled promptly with a CANCELLED error', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(executeRun(config, { runDir: path.join(tmp, 'c'), signal: ac.signal })).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('refuses to resume a checkpoint of another configuration', async () => {
    const dir = path.join(tmp, 'a');
    expect(fs.existsSync(path.join(dir, LAST_CHECKPOINT))).toBe(true);
    await expect(executeRun({ ...config, seed: 4 }, { runDir: dir })).rejects.toThrow(/another configuration/);
  });

  it('reuses or resumes a run only from the same starting weights content, not just the same path', async () => {
    const w = path.join(tmp, 'start.safetensors');
    fs.copyFileSync(path.join(tmp, 'a', FINAL_CHECKPOINT), w);
    const dir = path.join(tmp, 'from-weights');
    const cfg = { ...config, steps: 2, checkpointEvery: 1, model: { ...config.model, weights: w } };
    const first = await runOnce(cfg, dir, 'w');
    const again = await runOnce(cfg, dir, 'w');
    expect(again).toEqual(first); // read back from result.json
    fs.copyFileSync(path.join(dir, FINAL_CHECKPOINT), w); // new content at the same path
    await expect(runOnce(cfg, dir, 'w')).rejects.toThrow(/started from other weights than .*start\.safetensors/);
    fs.rmSync(w);
    await expect(runOnce(cfg, dir, 'w')).rejects.toThrow(/cannot read the starting weights/);
  });

  it('resumes with another loader thread count to the same final weights (the thread count is not part of the run identity)', async () => {
    expect(runIdentityJson(withThreads(config, 2))).toBe(runIdentityJson(withThreads(config, 0)));
    expect(runIdentityJson(config)).not.toContain('loaderThreads');
    const dir = path.join(tmp, 'd');
    const ac = new AbortController();
    const logs: string[] = [];
    await expect(
      executeRun(withThreads(config, 2), {
        runDir: dir,
        progressIntervalMs: 0,
        signal: ac.signal,
        onProgress: (p) => void (p.step === 2 && ac.abort()),
      }),
    ).rejects.toMatchObject({ code: 'CANCELLED', message: expect.stringContaining('at step 2') as unknown });
    const resumed = await executeRun(withThreads(config, 0), { runDir: dir, log: (m) => logs.push(m) });
    expect(resumed.resumedFromStep).toBe(2);
    expect(logs).toContainEqual(expect.stringContaining('built on the training thread'));
    expect(sameBytes(path.join(dir, FINAL_CHECKPOINT), path.join(tmp, 'a', FINAL_CHECKPOINT))).toBe(true);
  });

  it('gives bit-identical weights with the batches built on 0, 1 or 2 loader threads (micro-batches of accumulated steps too)', async () => {
    const accum = parseRunConfig({
      steps: 3,
      checkpointEvery: 100,
      data: { batchSize: 4, evalLimit: 8 },
      optimizer: { accumSteps: 2 },
      seed: 5,
    });
    const finals: string[] = [];
    for (const threads of [0, 1, 2]) {
      const dir = path.join(tmp, `threads-${threads}`);
      const logs: string[] = [];
      const r = await executeRun(withThreads(accum, threads), { runDir: dir, log: (m) => logs.push(m) });
      expect(r.steps).toBe(3);
      expect(logs).toContainEqual(
        expect.stringContaining(threads === 0 ? 'built on the training thread' : `${threads} loader thread(s), prefetched`),
      );
      finals.push(path.join(dir, FINAL_CHECKPOINT));
    }
    expect(sameBytes(finals[1], finals[0])).toBe(true);
    expect(sameBytes(finals[2], finals[0])).toBe(true);
  });

  it('stops the loader threads when the run completes, fails, hits a NaN loss or is cancelled', async () => {
    const opened: BatchLoader[] = [];
    const realOpen = BatchLoader.open.bind(BatchLoader);
    const spy = jest.spyOn(BatchLoader, 'open').mockImplementation(async (o) => {
      const l = await realOpen(o);
      opened.push(l);
      return l;
    });
    try {
      const two = withThreads(config, 2);
      const baseline = osThreads();
      const outcomes: string[] = [];
      const attempt = async (name: string, run: () => Promise<unknown>): Promise<void> => {
        const before = opened.length;
        try {
          await run();
          outcomes.push(`${name}: ok`);
        } catch (e) {
          outcomes.push(`${name}: ${e instanceof IceError ? e.code : String(e)}`);
        }
        expect(opened.length).toBe(before + 1);
        const loader = opened[opened.length - 1];
        expect(loader.threads).toBe(2);
        // closed: it refuses new epochs, and its threads are gone
        expect(() => loader.epoch(0)).toThrow(/closed/);
        const after = await threadsBackTo(baseline);
        if (baseline !== null) expect({ name, threads: after }).toEqual({ name, threads: baseline });
      };
      await attempt('completes', () => executeRun(two, { runDir: path.join(tmp, 'leak-done') }));
      await attempt('fails', () =>
        executeRun(two, {
          runDir: path.join(tmp, 'leak-error'),
          progressIntervalMs: 0,
          onProgress: () => {
            throw new IceError('INPUT_INVALID', 'progress sink failed');
          },
        }),
      );
      const nan = parseRunConfig({ ...two, optimizer: { ...two.optimizer, lr: 1e12, warmupSteps: 0 } });
      await attempt('nan', () => executeRun(nan, { runDir: path.join(tmp, 'leak-nan') }));
      const ac = new AbortController();
      const long = { ...two, steps: 1000 };
      await attempt('cancel', () =>
        executeRun(long, {
          runDir: path.join(tmp, 'leak-cancel'),
          progressIntervalMs: 0,
          signal: ac.signal,
          onProgress: (p) => void (p.step === 3 && ac.abort()),
        }),
      );
      expect(outcomes).toEqual(['completes: ok', 'fails: INPUT_INVALID', 'nan: NON_FINITE_LOSS', 'cancel: CANCELLED']);
    } finally {
      spy.mockRestore();
    }
  });

  it('trains inside a worker thread, the loader threads nested in it, to the same weights', async () => {
    const dir = path.join(tmp, 'nested');
    const cfg = withThreads(config, 2);
    const worker = startThread(path.join(__dirname, 'testing', 'execute-run.thread.ts'), { data: { config: cfg, dir } });
    const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
    const reply = await new Promise<{ ok: boolean; steps?: number; logs?: string[]; error?: string }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    expect(reply.error).toBeUndefined();
    expect(reply).toMatchObject({ ok: true, steps: 4 });
    expect(reply.logs).toContainEqual(expect.stringContaining('2 loader thread(s), prefetched'));
    // Nothing is left running in the thread: it exits on its own once the run is over.
    expect(await exited).toBe(0);
    expect(sameBytes(path.join(dir, FINAL_CHECKPOINT), path.join(tmp, 'a', FINAL_CHECKPOINT))).toBe(true);
  });
});

describe('the training batch stream', () => {
  const config = parseRunConfig({ data: { batchSize: 16 }, seed: 7 });
  const imgSize = 32;
  const length = TRAIN_CANVASES_PER_DIGIT * loadMnistSource().refs('train').length;
  const perEpoch = batchesPerEpoch(length, 16);

  it('is positioned by (epoch, batch), continues mid-epoch and across epochs, and matches the samples on any thread count', async () => {
    expect(perEpoch).toBe(Math.floor(length / 16));
    const open = (threads: number, startPosition: number): Promise<TrainBatchStream> =>
      TrainBatchStream.open({ config, imgSize, mean: 0.5, std: 0.5, startPosition, threads });
    const take = async (s: TrainBatchStream, n: number): Promise<Awaited<ReturnType<TrainBatchStream['next']>>[]> => {
      const out = [];
      try {
        for (let k = 0; k < n; k++) out.push(await s.next());
      } finally {
        await s.close();
      }
      return out;
    };
    // From the second-to-last batch of epoch 0 into epoch 1, on 2 threads; from the last, on this thread.
    const a = await take(await open(2, perEpoch - 2), 3);
    const b = await take(await open(0, perEpoch - 1), 2);
    expect(a.map((x) => [x.position, x.epoch, x.step])).toEqual([
      [perEpoch - 2, 0, perEpoch - 2],
      [perEpoch - 1, 0, perEpoch - 1],
      [perEpoch, 1, 0],
    ]);
    expect(b.map((x) => x.position)).toEqual([perEpoch - 1, perEpoch]);
    for (const [x, y] of [
      [a[1], b[0]],
      [a[2], b[1]],
    ] as const) {
      expect(y.indices).toEqual(x.indices);
      expect(y.labels).toEqual(x.labels);
      expect(Buffer.from(y.x.buffer, y.x.byteOffset, y.x.byteLength).equals(Buffer.from(x.x.buffer, x.x.byteOffset, x.x.byteLength))).toBe(
        true,
      );
    }
    // The indices are the pure function of (seed, position), the pixels those of the dataset's samples.
    const { train } = openRunData(config, imgSize);
    for (const x of a) {
      expect(x.indices).toEqual(batchIndices(length, config.seed, x.position, 16));
      const ref = batchNCHW(await loadSamples(train, x.indices), 0.5, 0.5);
      expect(x.shape).toEqual(ref.shape);
      expect(x.labels).toEqual(ref.labels);
      expect(Array.from(x.x)).toEqual(Array.from(ref.x));
    }
    // Epoch 1 is another permutation than epoch 0.
    expect(batchIndices(length, config.seed, perEpoch, 16)).not.toEqual(batchIndices(length, config.seed, 0, 16));
  });

  it('gives up waiting as soon as the signal aborts, and closes without hanging', async () => {
    const s = await TrainBatchStream.open({ config, imgSize, mean: 0.5, std: 0.5, startPosition: 0, threads: 1 });
    try {
      const ac = new AbortController();
      const pending = s.next(ac.signal);
      ac.abort();
      await expect(pending).rejects.toMatchObject({ code: 'CANCELLED' });
      await expect(s.next(ac.signal)).rejects.toMatchObject({ code: 'CANCELLED' });
    } finally {
      await s.close();
    }
    await s.close(); // idempotent
    await expect(s.next()).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('resolves the thread count setting and refuses batches larger than an epoch', () => {
    expect(resolveLoaderThreads(0)).toBe(0);
    expect(resolveLoaderThreads(3)).toBe(3);
    const auto = resolveLoaderThreads('auto');
    expect(auto).toBeGreaterThanOrEqual(1);
    expect(auto).toBeLessThanOrEqual(Math.max(1, os.availableParallelism() - 1));
    expect(parseRunConfig({}).data.loaderThreads).toBe('auto');
    expect(parseRunConfig({ data: { loaderThreads: 0 } }).data.loaderThreads).toBe(0);
    expect(() => parseRunConfig({ data: { loaderThreads: -1 } })).toThrow(/data.loaderThreads/);
    expect(() => parseRunConfig({ data: { loaderThreads: 'many' } })).toThrow(/data.loaderThreads/);
    expect(() => batchesPerEpoch(10, 16)).toThrow(/batchSize/);
  });
});
