/**
 * The work of one pipeline task, identical in a worker thread and inline: open the dataset (once
 * per thread and spec), read the batch's samples, augment each with its own Rng (seeded from seed,
 * epoch and dataset index, so results do not depend on batching or on the thread), and pack them
 * into one normalised NCHW batch. File-backed images go through sharp natively (decode, crop and
 * resize in one libvips pipeline) unless the transform spec asks for resampler 'pillow'. A sample
 * that cannot be read or transformed is recorded as skipped (with its path) instead of failing the
 * batch; a problem of the configuration (no fixed output size, masks asked of a dataset without
 * them) fails it.
 */
import { IceError, Rng } from '@ice/core';
import type { Box, EncodedSampleSource, EncodedVisionSample, VisionDataset, VisionSample } from '../dataset.types';
import {
  type EncodedAugSample,
  applyTransforms,
  applyTransformsEncoded,
  resolveNormalize,
  transformOutputSize,
  validateTransformSpec,
  writeNormalizedCHW,
} from '../transforms/augment.transform';
import type { AugSample } from '../transforms/geometry.transform';
import { type OpenedDataset, datasetSpecKey, errorPath, openDatasetSpec, sampleSeed } from './dataset-spec.util';
import type { BatchTask, BuiltBatch, DatasetDescription, DatasetSpec, SkippedSample } from './pipeline.types';

interface GoodSample {
  index: number;
  id: string;
  label: number;
  aug: AugSample;
}

/** Thrown inside a sample's processing for problems that are the configuration's, not the data's. */
class ConfigProblem extends IceError {
  constructor(message: string) {
    super('CONFIG_INVALID', message);
  }
}

function pathOf(ds: VisionDataset, index: number): string | undefined {
  const candidate: unknown = (ds as { pathOf?: unknown }).pathOf;
  if (typeof candidate !== 'function') return undefined;
  try {
    const p: unknown = (candidate as (i: number) => unknown).call(ds, index);
    return typeof p === 'string' ? p : undefined;
  } catch {
    return undefined;
  }
}

/** The dataset as a source of undecoded samples (file-backed image formats), or undefined. */
function encodedSourceOf(ds: VisionDataset): EncodedSampleSource | undefined {
  const candidate = (ds as Partial<EncodedSampleSource>).getEncoded;
  return typeof candidate === 'function' ? { getEncoded: (i) => candidate.call(ds, i) } : undefined;
}

/** Runs fn over items with at most `limit` in flight; results in item order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const k = next++;
      out[k] = await fn(items[k]);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  return out;
}

export class BatchBuilder {
  private readonly opened = new Map<string, Promise<OpenedDataset>>();

  private dataset(spec: DatasetSpec): Promise<OpenedDataset> {
    const key = datasetSpecKey(spec);
    let p = this.opened.get(key);
    if (!p) {
      p = openDatasetSpec(spec);
      this.opened.set(key, p);
      // A failed open is not cached: the next task tries again (and reports the error again).
      p.catch(() => this.opened.delete(key));
    }
    return p;
  }

  async describe(spec: DatasetSpec): Promise<DatasetDescription> {
    const { dataset } = await this.dataset(spec);
    return { name: dataset.name, split: dataset.split, length: dataset.length, classes: [...dataset.classes] };
  }

  async build(task: BatchTask): Promise<BuiltBatch> {
    const t0 = performance.now();
    const timing = (): BuiltBatch['timing'] => ({ finishedAt: Date.now(), buildMs: performance.now() - t0 });
    validateTransformSpec(task.transform);
    const { dataset } = await this.dataset(task.dataset);
    const norm = resolveNormalize(task.transform.normalize);
    const fixedSize = transformOutputSize(task.transform.steps);
    const useSharp = (task.transform.resampler ?? 'sharp') === 'sharp';
    const encodedSource = encodedSourceOf(dataset);

    const results = await mapLimit(task.indices, task.sampleConcurrency, async (index): Promise<GoodSample | SkippedSample> => {
      try {
        const rng = new Rng(sampleSeed(task.seed, task.epoch, index));
        if (useSharp && encodedSource) {
          // Native path: header only here; decode + crop + resize in one sharp pipeline.
          const s: EncodedVisionSample = await encodedSource.getEncoded(index);
          if (task.withMasks && !s.mask) throw new ConfigProblem(`masks were asked for, but ${dataset.name} sample ${s.id} has none`);
          const input: EncodedAugSample = { encoded: s.encoded, height: s.height, width: s.width };
          if (task.withMasks) input.mask = s.mask;
          if (task.withBoxes) input.boxes = s.boxes ?? [];
          const aug = await applyTransformsEncoded(input, task.transform.steps, rng);
          return { index, id: s.id, label: s.label, aug };
        }
        const s: VisionSample = await dataset.get(index);
        if (task.withMasks && !s.mask) throw new ConfigProblem(`masks were asked for, but ${dataset.name} sample ${s.id} has none`);
        const input: AugSample = { image: s.image, height: s.height, width: s.width };
        if (task.withMasks) input.mask = s.mask;
        if (task.withBoxes) input.boxes = s.boxes ?? [];
        const aug = applyTransforms(input, task.transform.steps, rng);
        return { index, id: s.id, label: s.label, aug };
      } catch (err) {
        if (err instanceof ConfigProblem) throw err;
        const path = errorPath(err) ?? pathOf(dataset, index);
        return {
          index,
          ...(path !== undefined ? { path } : {}),
          code: err instanceof IceError ? err.code : 'UNKNOWN',
          message: err instanceof Error ? err.message : String(err),
        };
      }
    });

    const good = results.filter((r): r is GoodSample => 'aug' in r);
    const skipped = results.filter((r): r is SkippedSample => !('aug' in r));
    if (good.length === 0) {
      return {
        x: new Float32Array(0),
        shape: [0, 3, fixedSize?.[0] ?? 0, fixedSize?.[1] ?? 0],
        labels: new Int32Array(0),
        indices: [],
        ids: [],
        skipped,
        repeated: 0,
        timing: timing(),
      };
    }
    const [h, w] = fixedSize ?? [good[0].aug.height, good[0].aug.width];
    for (const g of good) {
      if (g.aug.height !== h || g.aug.width !== w) {
        throw new IceError(
          'CONFIG_INVALID',
          `sample ${g.id} is ${g.aug.height}×${g.aug.width} after the transforms, but the batch is ${h}×${w}: add a sizing ` +
            'step (random-resized-crop, resize-center-crop, or resize to [h, w])',
        );
      }
    }
    const rows = [...good];
    let repeated = 0;
    if (task.onBadSample === 'repeat') {
      for (let k = 0; rows.length < task.indices.length; k++, repeated++) rows.push(good[k % good.length]);
    }

    const n = rows.length;
    const plane = h * w;
    const x = new Float32Array(n * 3 * plane);
    const labels = new Int32Array(n);
    const masks = task.withMasks ? new Uint8Array(n * plane) : undefined;
    const boxes: Box[][] | undefined = task.withBoxes ? [] : undefined;
    rows.forEach((r, b) => {
      writeNormalizedCHW(r.aug.image, h, w, norm, x, b * 3 * plane);
      labels[b] = r.label;
      if (masks && r.aug.mask) masks.set(r.aug.mask, b * plane);
      if (boxes) boxes.push(r.aug.boxes ?? []);
    });
    return {
      x,
      shape: [n, 3, h, w],
      labels,
      indices: rows.map((r) => r.index),
      ids: rows.map((r) => r.id),
      ...(masks ? { masks } : {}),
      ...(boxes ? { boxes } : {}),
      skipped,
      repeated,
      timing: timing(),
    };
  }

  async close(): Promise<void> {
    const all = [...this.opened.values()];
    this.opened.clear();
    for (const p of all) {
      try {
        await (await p).close();
      } catch {
        // a dataset that failed to open has nothing to close
      }
    }
  }
}
