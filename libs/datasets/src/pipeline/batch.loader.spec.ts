import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { IceError } from '@ice/core';
import { makeTempDir, writeImage } from '../formats/formats.testing';
import { trainTransformSpec, type TransformSpec } from '../transforms/augment.transform';
import { type Batch, BatchLoader, type BatchLoaderOptions, type EpochSummary } from './batch.loader';
import { epochBatches, epochOrder, sampleSeed } from './dataset-spec.util';
import type { DatasetSpec } from './pipeline.types';

const DIGITS: DatasetSpec = { format: 'digits', split: 'val', options: { length: 40, canvasSize: 32, seed: 5 } };

async function collect(opts: BatchLoaderOptions, epoch = 0): Promise<{ batches: Batch[]; summary: EpochSummary }> {
  const loader = await BatchLoader.open(opts);
  try {
    const run = loader.epoch(epoch);
    const batches: Batch[] = [];
    for await (const b of run) batches.push(b);
    return { batches, summary: run.summary };
  } finally {
    await loader.close();
  }
}

function comparable(batches: Batch[]): unknown[] {
  return batches.map((b) => ({
    step: b.step,
    shape: b.shape,
    indices: b.indices,
    ids: b.ids,
    labels: Array.from(b.labels),
    x: Buffer.from(b.x.buffer, b.x.byteOffset, b.x.byteLength).toString('base64'),
    masks: b.masks ? Buffer.from(b.masks).toString('base64') : null,
    boxes: b.boxes,
  }));
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return e instanceof IceError ? `${e.code}: ${e.message}` : `other: ${String(e)}`;
  }
  return 'no error';
}

describe('epoch order and sharding', () => {
  it('gives each rank a disjoint, equal slice of the seeded epoch permutation', () => {
    const w = 3;
    const shards = [0, 1, 2].map((r) => epochOrder(100, 7, 4, r, w));
    expect(shards.map((s) => s.length)).toEqual([33, 33, 33]);
    const all = shards.flat();
    expect(new Set(all).size).toBe(99);
    expect(all.every((i) => Number.isInteger(i) && i >= 0 && i < 100)).toBe(true);
    expect(epochOrder(100, 7, 4, 1, w)).toEqual(shards[1]);
    expect(epochOrder(100, 7, 5, 1, w)).not.toEqual(shards[1]);
    expect(epochOrder(100, 8, 4, 1, w)).not.toEqual(shards[1]);
    expect(epochOrder(6, 0, 0, 1, 2, false)).toEqual([1, 3, 5]);
  });

  it('cuts batches, keeping or dropping the last partial one', () => {
    expect(epochBatches([1, 2, 3, 4, 5], 2, false)).toEqual([[1, 2], [3, 4], [5]]);
    expect(epochBatches([1, 2, 3, 4, 5], 2, true)).toEqual([
      [1, 2],
      [3, 4],
    ]);
  });

  it('rejects impossible shards', () => {
    expect(() => epochOrder(10, 0, 0, 2, 2)).toThrow(/rank/);
    expect(() => epochOrder(2, 0, 0, 0, 3)).toThrow(/worldSize/);
  });

  it('seeds each sample by (seed, epoch, index) only', () => {
    expect(sampleSeed(1, 2, 3)).toBe(sampleSeed(1, 2, 3));
    expect(new Set([sampleSeed(1, 2, 3), sampleSeed(1, 2, 4), sampleSeed(1, 3, 3), sampleSeed(2, 2, 3)]).size).toBe(4);
  });
});

describe('BatchLoader', () => {
  const transform: TransformSpec = trainTransformSpec(24, 'inception');
  const base: BatchLoaderOptions = {
    dataset: DIGITS,
    transform,
    batchSize: 8,
    seed: 3,
    withMasks: true,
    withBoxes: true,
    log: () => undefined,
  };

  it('yields the same batches in order with 0, 1 or 2 worker threads and any prefetch depth', async () => {
    const inline = await collect({ ...base, threads: 0 });
    const one = await collect({ ...base, threads: 1, prefetch: 1 });
    const two = await collect({ ...base, threads: 2, prefetch: 5 });
    expect(inline.batches.map((b) => b.step)).toEqual([0, 1, 2, 3, 4]);
    expect(inline.batches[0].shape).toEqual([8, 3, 24, 24]);
    expect(inline.batches[0].masks?.length).toBe(8 * 24 * 24);
    expect(inline.batches[0].boxes?.length).toBe(8);
    expect(comparable(one.batches)).toEqual(comparable(inline.batches));
    expect(comparable(two.batches)).toEqual(comparable(inline.batches));
    expect(inline.summary).toMatchObject({ complete: true, batches: 5, samples: 40, skipped: 0, droppedBatches: 0 });
    // the epoch order is the seeded permutation, cut into batches
    expect(inline.batches.flatMap((b) => b.indices)).toEqual(epochOrder(40, 3, 0));
    // normalised with 0.5 / 0.5 into [-1, 1]
    expect(inline.batches[0].x.every((v) => v >= -1 && v <= 1)).toBe(true);
  });

  it('starts an epoch mid-way with the same batches and steps as a full pass, on any thread count', async () => {
    const full = await collect({ ...base, threads: 0, dropLast: true, batchSize: 6 });
    expect(full.batches.map((b) => b.step)).toEqual([0, 1, 2, 3, 4, 5]);
    for (const threads of [0, 2]) {
      const loader = await BatchLoader.open({ ...base, threads, dropLast: true, batchSize: 6 });
      try {
        const run = loader.epoch(0, { startBatch: 4 });
        const tail: Batch[] = [];
        for await (const b of run) tail.push(b);
        expect(comparable(tail)).toEqual(comparable(full.batches.slice(4)));
        expect(run.summary).toMatchObject({ complete: true, startBatch: 4, plannedBatches: 2, batches: 2 });
        const empty: Batch[] = [];
        for await (const b of loader.epoch(0, { startBatch: 6 })) empty.push(b);
        expect(empty).toEqual([]);
        expect(() => loader.epoch(0, { startBatch: 7 })).toThrow(/startBatch/);
        expect(() => loader.epoch(0, { startBatch: -1 })).toThrow(/startBatch/);
      } finally {
        await loader.close();
      }
    }
  });

  it('changes with the epoch and the seed, and shards disjointly across ranks', async () => {
    const loader = await BatchLoader.open({ ...base, threads: 0, withMasks: false, withBoxes: false });
    try {
      const idx = async (e: number): Promise<number[]> => {
        const out: number[] = [];
        for await (const b of loader.epoch(e)) out.push(...b.indices);
        return out;
      };
      const e0 = await idx(0);
      expect(await idx(0)).toEqual(e0);
      expect(await idx(1)).not.toEqual(e0);
    } finally {
      await loader.close();
    }
    const ranks = await Promise.all([0, 1].map((rank) => collect({ ...base, threads: 1, worldSize: 2, rank, batchSize: 6 }, 2)));
    const [a, b] = ranks.map((r) => r.batches.flatMap((x) => x.indices));
    expect(a.length).toBe(20);
    expect(b.length).toBe(20);
    expect(a.filter((i) => b.includes(i))).toEqual([]);
    expect(new Set([...a, ...b]).size).toBe(40);
    expect(ranks[0].batches.map((x) => x.shape[0])).toEqual([6, 6, 6, 2]);
  });

  describe('on ImageNet-layout JPEGs with a corrupt one', () => {
    const tmp = makeTempDir('ice-pipeline-');
    const root = join(tmp.dir, 'imagenet');
    const corrupt = join(root, 'train', 'n02', 'b_corrupt.JPEG');
    const spec: DatasetSpec = { format: 'imagenet', root, split: 'train' };

    beforeAll(async () => {
      const sizes: [number, number][] = [
        [30, 40],
        [40, 30],
        [25, 25],
        [32, 48],
        [50, 20],
        [28, 36],
      ];
      for (let k = 0; k < 6; k++) {
        const [h, w] = sizes[k];
        const rgb = new Uint8Array(h * w * 3).map((_, i) => (i * 37 + k * 11) % 256);
        await writeImage(join(root, 'train', k < 3 ? 'n01' : 'n02', `img${k}.JPEG`), rgb, h, w);
      }
      // a real JPEG cut short: the header is fine, the scan data ends early
      const good = readFileSync(join(root, 'train', 'n02', 'img3.JPEG'));
      writeFileSync(corrupt, good.subarray(0, Math.floor(good.length / 2)));
    });
    afterAll(() => tmp.cleanup());

    it('skips the unreadable image, logs its path, counts it, and keeps the batch full', async () => {
      const logs: string[] = [];
      const { batches, summary } = await collect({
        dataset: spec,
        transform: trainTransformSpec(16),
        batchSize: 7,
        threads: 1,
        shuffle: false,
        log: (m) => logs.push(m),
      });
      expect(batches.length).toBe(1);
      expect(batches[0].shape).toEqual([7, 3, 16, 16]);
      expect(summary).toMatchObject({ complete: true, skipped: 1, repeated: 1, samples: 7 });
      const corruptIndex = 3; // n01: img0..img2, then n02: b_corrupt, img3, …
      expect(summary.skippedSamples).toEqual([expect.objectContaining({ index: corruptIndex, path: corrupt, code: 'IMAGE_CORRUPT' })]);
      expect(batches[0].indices).toEqual([0, 1, 2, 4, 5, 6, 0]);
      expect(logs).toHaveLength(1);
      expect(logs[0]).toContain(corrupt);
      // 'shrink' yields the smaller batch instead
      const shrink = await collect({
        dataset: spec,
        transform: trainTransformSpec(16),
        batchSize: 7,
        threads: 0,
        shuffle: false,
        onBadSample: 'shrink',
        log: () => undefined,
      });
      expect(shrink.batches[0].shape[0]).toBe(6);
      // a batch of nothing but the bad image is dropped, the epoch goes on
      const alone = await collect({
        dataset: spec,
        transform: trainTransformSpec(16),
        batchSize: 1,
        threads: 2,
        shuffle: false,
        log: () => undefined,
      });
      expect(alone.summary).toMatchObject({ complete: true, plannedBatches: 7, batches: 6, droppedBatches: 1, skipped: 1 });
      expect(alone.batches.map((b) => b.step)).toEqual([0, 1, 2, 4, 5, 6]);
    });

    it('reports configuration problems as errors: missing root, no sizing step', async () => {
      const missing = join(tmp.dir, 'nope');
      expect(
        await codeOf(
          BatchLoader.open({ dataset: { ...spec, root: missing }, transform: trainTransformSpec(16), batchSize: 2, threads: 1 }),
        ),
      ).toMatch(new RegExp(`^FILE_NOT_FOUND: .*${missing}`));
      const loader = await BatchLoader.open({
        dataset: spec,
        transform: { steps: [], normalize: 'imagenet' },
        batchSize: 3,
        threads: 1,
        shuffle: false,
      });
      try {
        expect(
          await codeOf(
            (async () => {
              for await (const _ of loader.epoch(0)) {
                // consume
              }
            })(),
          ),
        ).toMatch(/^CONFIG_INVALID: .*sizing step/);
      } finally {
        await loader.close();
      }
      expect(await codeOf(BatchLoader.open({ dataset: DIGITS, transform: transform, batchSize: 2, threads: 0, worldSize: 50 }))).toMatch(
        /^CONFIG_INVALID/,
      );
    });
  });

  it('keeps building the prefetched batches while this thread is blocked (as in a synchronous training step)', async () => {
    const loader = await BatchLoader.open({ ...base, withMasks: false, withBoxes: false, threads: 1, prefetch: 4 });
    try {
      const it = loader.epoch(0)[Symbol.asyncIterator]();
      await it.next();
      const blockEnd = Date.now() + 2000;
      while (Date.now() < blockEnd) {
        // busy: no event loop turn, so the pool cannot hand out new tasks now
      }
      const later: Batch[] = [];
      for (let k = 0; k < 3; k++) {
        const r = await it.next();
        if (!r.done) later.push(r.value);
      }
      // all three were finished by the worker during the block
      expect(later.map((b) => b.timing.finishedAt <= blockEnd)).toEqual([true, true, true]);
      await it.return?.();
    } finally {
      await loader.close();
    }
  });

  it('shuts down without hanging: mid-epoch close and early break', async () => {
    const loader = await BatchLoader.open({
      ...base,
      dataset: { format: 'digits', split: 'train', options: { length: 400, canvasSize: 32 } },
      batchSize: 4,
      threads: 2,
      prefetch: 6,
    });
    const run = loader.epoch(0);
    const it = run[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    const t0 = Date.now();
    await loader.close();
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(await codeOf(it.next())).toMatch(/^CANCELLED/);
    expect(() => loader.epoch(1)).toThrow(/closed/);
    await loader.close(); // idempotent

    const again = await BatchLoader.open({ ...base, threads: 1, prefetch: 3 });
    let seen = 0;
    for await (const _ of again.epoch(0)) {
      if (++seen === 2) break;
    }
    const t1 = Date.now();
    await again.close();
    expect(Date.now() - t1).toBeLessThan(5000);
  });

  it('closes quietly while finished batches are on their way back (no unhandled pool error)', async () => {
    const logs: string[] = [];
    for (let k = 0; k < 3; k++) {
      const loader = await BatchLoader.open({
        ...base,
        withMasks: false,
        withBoxes: false,
        threads: 1,
        prefetch: 4,
        log: (m) => logs.push(m),
      });
      const it = loader.epoch(0)[Symbol.asyncIterator]();
      await it.next();
      // Blocked as in a training step that ends in an error: the worker finishes and posts the
      // prefetched batches meanwhile, and the loader is closed before this thread reads them.
      const end = Date.now() + 300;
      while (Date.now() < end) {
        // busy
      }
      await loader.close();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(logs).toEqual([]);
  });
});
