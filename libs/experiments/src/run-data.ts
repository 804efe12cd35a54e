import { DigitsDataset, loadMnistSource, type VisionDataset, type VisionSample } from '@ice/datasets';
import { IceError, Rng } from '@ice/core';
import type { RunConfig } from './run-config';

/**
 * Which samples a run sees at each step, as a pure function of (seed, step): a resumed run, or a
 * job redelivered to another worker, sees exactly the batches it would have seen. Epoch e is a
 * permutation of the split seeded by (seed, e); rank r of w takes every w-th position, so the
 * ranks of a data-parallel run see disjoint slices of each epoch.
 */
export function batchIndices(length: number, seed: number, step: number, batchSize: number, rank = 0, worldSize = 1): number[] {
  const out: number[] = [];
  let cachedEpoch = -1;
  let perm: number[] = [];
  for (let b = 0; b < batchSize; b++) {
    const pos = (step * batchSize + b) * worldSize + rank; // global position in the stream of samples
    const epoch = Math.floor(pos / length);
    if (epoch !== cachedEpoch) {
      perm = new Rng(seed * 100_003 + epoch).permutation(length);
      cachedEpoch = epoch;
    }
    out.push(perm[pos - epoch * length]);
  }
  return out;
}

/** The run's training and evaluation splits at the model's input size. */
export function openRunData(config: RunConfig, imgSize: number): { train: VisionDataset; evaluation: VisionDataset } {
  switch (config.data.format) {
    case 'digits':
      return {
        // 20 canvases per training digit (other sizes, places, clutter): a fixed set of 8,006 images
        // is too small for a ViT trained from scratch, and fresh canvases cost nothing.
        train: new DigitsDataset({ split: 'train', canvasSize: imgSize, seed: config.seed, length: 20 * loadMnistSource().refs('train').length }),
        // Evaluation images do not depend on the run's seed: every cell of a sweep is scored on the same images.
        evaluation: new DigitsDataset({ split: 'test', canvasSize: imgSize, seed: 0 }),
      };
    case 'imagenet':
    case 'voc':
    case 'cub':
      throw new IceError('CONFIG_INVALID', `training on ${config.data.format} needs the file-backed input pipeline, which is not wired into runs yet; use data.format "digits"`);
  }
}

export async function loadSamples(ds: VisionDataset, indices: readonly number[]): Promise<VisionSample[]> {
  return Promise.all(indices.map(async (i) => ds.get(i)));
}
