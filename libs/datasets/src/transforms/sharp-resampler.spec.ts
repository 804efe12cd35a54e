import { join } from 'node:path';
import { Rng } from '@ice/core';
import { makeTempDir, vocXml, writeImage, writePalettePng, writeText } from '../formats/formats.testing';
import { decodeImage, probeImage } from '../image/image-io';
import { type Batch, BatchLoader, type BatchLoaderOptions } from '../pipeline/batch.loader';
import type { DatasetSpec } from '../pipeline/pipeline.types';
import {
  type TransformStep,
  applyTransforms,
  applyTransformsEncoded,
  evalTransformSpec,
  trainTransformSpec,
  validateTransformSpec,
} from './augment.transform';

/** A smooth RGB test image (low-frequency gradients and waves): where resamplers should agree. */
function smoothRgb(h: number, w: number): Uint8Array {
  const out = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = (y * w + x) * 3;
      out[p] = 30 + (190 * x) / w;
      out[p + 1] = 128 + 90 * Math.sin(y / 20);
      out[p + 2] = 128 + 80 * Math.cos((x + y) / 25);
    }
  }
  return out;
}

function meanAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

async function collect(opts: BatchLoaderOptions): Promise<Batch[]> {
  const loader = await BatchLoader.open(opts);
  try {
    const out: Batch[] = [];
    for await (const b of loader.epoch(1)) out.push(b);
    return out;
  } finally {
    await loader.close();
  }
}

describe("resampler 'sharp' (native decode → crop → resize) against 'pillow'", () => {
  const tmp = makeTempDir('ice-sharp-');
  const png = join(tmp.dir, 'smooth.png');
  const rotated = join(tmp.dir, 'rotated.jpg');
  const H = 120;
  const W = 160;

  beforeAll(async () => {
    await writeImage(png, smoothRgb(H, W), H, W, { format: 'png' });
    await writeImage(rotated, smoothRgb(H, W), H, W, { orientation: 6 });
  });
  afterAll(() => tmp.cleanup());

  const cases: [string, TransformStep[]][] = [
    ['random-resized-crop 64 + flip', [{ kind: 'random-resized-crop', size: 64 }, { kind: 'horizontal-flip' }]],
    ['random-resized-crop 200×150 (upsampling)', [{ kind: 'random-resized-crop', size: [200, 150] }]],
    ['random-resized-crop bilinear', [{ kind: 'random-resized-crop', size: 48, interpolation: 'bilinear' }]],
    ['resize-center-crop 56', [{ kind: 'resize-center-crop', size: 56 }]],
    ['resize [40, 90]', [{ kind: 'resize', size: [40, 90] }]],
  ];

  it.each(cases)('%s: same shape and random draws, values in [0, 1], mean |diff| < 2/255', async (_name, steps) => {
    for (const file of [png, rotated]) {
      const encoded = await probeImage(file);
      const full = await decodeImage(file);
      expect([encoded.height, encoded.width]).toEqual([full.height, full.width]);
      for (const seed of [1, 2, 3, 4]) {
        const rngS = new Rng(seed);
        const rngP = new Rng(seed);
        const s = await applyTransformsEncoded({ encoded, height: encoded.height, width: encoded.width }, steps, rngS);
        const p = applyTransforms({ image: full.data, height: full.height, width: full.width }, steps, rngP);
        expect([s.height, s.width]).toEqual([p.height, p.width]);
        expect(s.image.length).toBe(s.height * s.width * 3);
        expect(s.image.every((v) => v >= 0 && v <= 1)).toBe(true);
        expect(meanAbsDiff(s.image, p.image)).toBeLessThan(2 / 255);
        expect(rngS.uniform()).toBe(rngP.uniform()); // the same draws were made
      }
    }
  });

  it('carries the mask (nearest, identical to the Pillow path) and boxes through the native crop', async () => {
    const encoded = await probeImage(png);
    const full = await decodeImage(png);
    const mask = new Uint8Array(H * W).map((_, i) => (i % W < W / 2 ? 1 : 0));
    const boxes: [number, number, number, number][] = [[10, 20, 70, 100]];
    const steps = trainTransformSpec(64).steps;
    for (const seed of [5, 6, 7]) {
      const s = await applyTransformsEncoded({ encoded, height: H, width: W, mask, boxes }, steps, new Rng(seed));
      const p = applyTransforms({ image: full.data, height: H, width: W, mask, boxes }, steps, new Rng(seed));
      expect(s.mask).toEqual(p.mask);
      expect(s.boxes).toEqual(p.boxes);
    }
  });

  it('validates the option; train specs default to sharp, eval specs to pillow', () => {
    expect(trainTransformSpec(224).resampler).toBe('sharp');
    expect(evalTransformSpec(224).resampler).toBe('pillow');
    expect(() => validateTransformSpec({ ...trainTransformSpec(8), resampler: 'pil' as 'pillow' })).toThrow(/resampler must be/);
  });
});

describe('the pipeline with the sharp resampler', () => {
  const tmp = makeTempDir('ice-sharp-pipe-');
  const root = join(tmp.dir, 'imagenet');
  const voc = join(tmp.dir, 'VOC');
  const spec: DatasetSpec = { format: 'imagenet', root, split: 'train' };
  const vocSpec: DatasetSpec = { format: 'voc', root: voc, split: 'train', options: { task: 'segmentation' } };

  beforeAll(async () => {
    const sizes: [number, number][] = [
      [60, 80],
      [80, 60],
      [50, 50],
      [64, 96],
      [100, 40],
      [56, 72],
    ];
    for (let k = 0; k < sizes.length; k++) {
      const [h, w] = sizes[k];
      await writeImage(join(root, 'train', k < 3 ? 'n01' : 'n02', `img${k}.JPEG`), smoothRgb(h, w), h, w);
    }
    // VOC: left half red = class 'person' (15), right half blue = background
    const ids = ['a', 'b', 'c'];
    for (const [k, id] of ids.entries()) {
      const [h, w] = [40 + 8 * k, 64];
      const rgb = new Uint8Array(h * w * 3);
      const seg = new Uint8Array(h * w);
      for (let i = 0; i < h * w; i++) {
        const left = i % w < w / 2;
        rgb.set(left ? [230, 20, 20] : [20, 20, 230], i * 3);
        seg[i] = left ? 15 : 0;
      }
      await writeImage(join(voc, 'JPEGImages', `${id}.jpg`), rgb, h, w);
      writePalettePng(join(voc, 'SegmentationClass', `${id}.png`), seg, h, w);
      writeText(join(voc, 'Annotations', `${id}.xml`), vocXml(`${id}.jpg`, w, h, [{ name: 'person', box: [1, 1, w / 2, h] }]));
    }
    writeText(join(voc, 'ImageSets/Segmentation/train.txt'), `${ids.join('\n')}\n`);
  });
  afterAll(() => tmp.cleanup());

  it('gives the same batches with 0, 1 or 2 worker threads', async () => {
    const opts: BatchLoaderOptions = { dataset: spec, transform: trainTransformSpec(32), batchSize: 4, seed: 9, shuffle: true };
    const runs = await Promise.all([0, 1, 2].map((threads) => collect({ ...opts, threads })));
    const key = (bs: Batch[]): unknown =>
      bs.map((b) => [b.indices, Buffer.from(b.x.buffer, b.x.byteOffset, b.x.byteLength).toString('base64')]);
    expect(key(runs[1])).toEqual(key(runs[0]));
    expect(key(runs[2])).toEqual(key(runs[0]));
    expect(runs[0][0].shape).toEqual([4, 3, 32, 32]);
  });

  it('stays close to the Pillow path (same crops), which remains selectable', async () => {
    const base: BatchLoaderOptions = {
      dataset: spec,
      batchSize: 6,
      seed: 3,
      shuffle: false,
      threads: 0,
      transform: trainTransformSpec(40, 'none'),
    };
    const [sharpRun, pillowRun] = await Promise.all([
      collect(base),
      collect({ ...base, transform: { ...base.transform, resampler: 'pillow' } }),
    ]);
    expect(sharpRun[0].indices).toEqual(pillowRun[0].indices);
    expect(meanAbsDiff(sharpRun[0].x, pillowRun[0].x)).toBeLessThan(2 / 255);
    expect(sharpRun[0].x).not.toEqual(pillowRun[0].x);
  });

  it('keeps VOC masks aligned with the image', async () => {
    const batches = await collect({
      dataset: vocSpec,
      transform: trainTransformSpec(24, 'none'),
      batchSize: 3,
      seed: 2,
      threads: 1,
      withMasks: true,
      shuffle: false,
    });
    const b = batches[0];
    const plane = 24 * 24;
    expect(b.masks).toBeDefined();
    const masks = b.masks ?? new Uint8Array(0);
    let checked = 0;
    for (let n = 0; n < b.shape[0]; n++) {
      for (let p = 0; p < plane; p++) {
        const x = p % 24;
        const m = masks[n * plane + p];
        // away from the red/blue edge (and its resampling blur), red ⇔ mask 1
        const neighbours = [x - 2, x + 2].filter((xx) => xx >= 0 && xx < 24).map((xx) => masks[n * plane + p - x + xx]);
        if (neighbours.some((v) => v !== m)) continue;
        const r = b.x[n * 3 * plane + p];
        const bl = b.x[n * 3 * plane + 2 * plane + p];
        expect(m === 1 ? r > bl : bl > r).toBe(true);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(plane);
  });
});
