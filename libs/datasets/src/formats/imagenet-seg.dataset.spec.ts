import { join } from 'node:path';
import { ImageNetSegDataset } from './imagenet-seg.dataset';
import { Hdf5Reader, isHdf5File } from './hdf5.reader';
import { makeTempDir, writeText } from './formats.testing';
import { type ImageNetSegMatSample, writeImageNetSegMat } from './imagenet-seg.writer';

/** An H×W image whose every value is distinct enough to catch any transposition mistake. */
function sample(height: number, width: number, seed: number): ImageNetSegMatSample {
  const rgb = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) rgb[(y * width + x) * 3 + c] = (seed + y * 50 + x * 7 + c * 2) % 256;
  const mask = new Uint8Array(height * width);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) mask[y * width + x] = x >= y ? 1 : 0; // not symmetric under transposition
  return { rgb, mask, height, width };
}

describe('ImageNetSegDataset (gtsegs_ijcv.mat, MATLAB v7.3)', () => {
  const tmp = makeTempDir();
  const dir = join(tmp.dir, 'imagenet-seg');
  const file = join(dir, 'gtsegs_ijcv.mat');
  const samples = [sample(3, 5, 1), sample(4, 2, 100), sample(6, 7, 200)];

  beforeAll(async () => {
    await writeImageNetSegMat(file, samples);
  });
  afterAll(() => tmp.cleanup());

  it('the fixture is a real MATLAB v7.3 file: text header, HDF5 superblock at 512, reference cells', async () => {
    const { readFileSync } = await import('node:fs');
    const bytes = readFileSync(file);
    expect(bytes.subarray(0, 10).toString('latin1')).toBe('MATLAB 7.3');
    expect(bytes.subarray(512, 516).toString('latin1')).toBe('\x89HDF');
    expect(isHdf5File(file)).toBe(true);
    const r = await Hdf5Reader.open(file);
    try {
      expect(await r.info('/value/img')).toEqual({ shape: [3, 1], matlabClass: 'cell', isReference: true });
      const img = await r.deref('/value/img', [1]);
      expect(img.shape).toEqual([3, 2, 4]); // (3, W, H)
      const cell = await r.info('/value/gt');
      expect(cell.isReference).toBe(true);
      expect((await r.deref('/value/gt', [0, 0])).shape).toEqual([5, 3]); // (W, H)
    } finally {
      await r.close();
    }
  });

  it('reads images (3,W,H) → H×W×3 and masks (W,H) → H×W, label -1, no classes', async () => {
    const ds = await ImageNetSegDataset.open(dir);
    try {
      expect([ds.length, ds.split, ds.classes]).toEqual([3, 'test', []]);
      for (let i = 0; i < samples.length; i++) {
        const s = await ds.get(i);
        const want = samples[i];
        expect([s.id, s.index, s.label, s.height, s.width]).toEqual([`imagenet-seg/${i}`, i, -1, want.height, want.width]);
        expect(Array.from(s.image)).toEqual(Array.from(want.rgb).map((v) => Math.fround(v / 255)));
        expect(Array.from(s.mask)).toEqual(Array.from(want.mask));
      }
      expect(Array.from((await ds.getMask(2)).data)).toEqual(Array.from(samples[2].mask));
      await expect(ds.get(3)).rejects.toMatchObject({ code: 'INPUT_INVALID' });
    } finally {
      await ds.close();
    }
    await expect(ds.get(0)).rejects.toMatchObject({ code: 'INPUT_INVALID', message: expect.stringContaining('closed') as unknown });
  });

  it('accepts the .mat path itself as root', async () => {
    const ds = await ImageNetSegDataset.open(file, 'test');
    expect(ds.length).toBe(3);
    await ds.close();
  });

  it('errors: missing file, not HDF5, wrong layout, wrong split', async () => {
    const empty = join(tmp.dir, 'empty');
    await expect(ImageNetSegDataset.open(empty)).rejects.toMatchObject({
      code: 'FILE_NOT_FOUND',
      message: expect.stringContaining(empty) as unknown,
    });
    const v5 = join(tmp.dir, 'v5', 'gtsegs_ijcv.mat');
    writeText(v5, `MATLAB 5.0 MAT-file${' '.repeat(2000)}`);
    await expect(ImageNetSegDataset.open(v5)).rejects.toMatchObject({
      code: 'INPUT_INVALID',
      message: expect.stringContaining('-v7.3') as unknown,
    });
    const noGt = join(tmp.dir, 'nogt.mat');
    await writeImageNetSegMat(noGt, samples.slice(0, 1), { omitGt: true });
    await expect(ImageNetSegDataset.open(noGt)).rejects.toMatchObject({
      code: 'INPUT_INVALID',
      message: expect.stringMatching(/nogt\.mat is not an ImageNet-Segmentation file.*\/value\/gt/) as unknown,
    });
    await expect(ImageNetSegDataset.open(dir, 'val')).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});
