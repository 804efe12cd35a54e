import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { IceError } from '@ice/core';
import { DIGIT_CLASSES, DigitsDataset } from '../digits/digits.dataset';
import { readLabelPng } from '../image/image-io';
import { inspectDataset } from '../formats/open-dataset';
import { VOC_CLASSES, VocDataset } from '../formats/voc.dataset';
import { makeTempDir } from '../formats/formats.testing';
import { digitsVocId, exportDigitsToVoc, vocAnnotationXml, vocColormap } from './voc-export';

describe('exportDigitsToVoc', () => {
  const tmp = makeTempDir('ice-voc-export-');
  const out = join(tmp.dir, 'digits-voc');
  const opts = { canvasSize: 40, seed: 9 };
  const progress: number[] = [];
  let result: Awaited<ReturnType<typeof exportDigitsToVoc>>;

  beforeAll(async () => {
    result = await exportDigitsToVoc({ outDir: out, splits: ['train', 'val'], limit: 4, ...opts, onProgress: (d) => progress.push(d) });
  });
  afterAll(() => tmp.cleanup());

  it('writes the VOC layout, split lists (with trainval) and the custom class list', () => {
    expect(result).toEqual({ outDir: out, classes: [...DIGIT_CLASSES], splits: { train: 4, val: 4, trainval: 8 }, images: 8 });
    expect(progress).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(readdirSync(join(out, 'JPEGImages')).sort()).toEqual(
      [0, 1, 2, 3].flatMap((i) => [`train_00000${i}.jpg`, `val_00000${i}.jpg`]).sort(),
    );
    expect(readFileSync(join(out, 'classes.txt'), 'utf8')).toBe('0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n');
    expect(readFileSync(join(out, 'ImageSets/Segmentation/val.txt'), 'utf8')).toBe('val_000000\nval_000001\nval_000002\nval_000003\n');
    expect(readFileSync(join(out, 'ImageSets/Main/trainval.txt'), 'utf8').split('\n').filter(Boolean)).toHaveLength(8);
  });

  it('round-trips through the VOC loader: same labels, masks (digit + 1 on a palette PNG) and boxes', async () => {
    for (const split of ['train', 'val'] as const) {
      const digits = new DigitsDataset({ split, ...opts });
      const voc = new VocDataset(out, split, { task: 'segmentation' });
      expect(voc.classes).toEqual([...DIGIT_CLASSES]);
      expect(voc.length).toBe(4);
      for (let i = 0; i < 4; i++) {
        const want = digits.get(i);
        const got = await voc.get(i);
        expect(got.imageId).toBe(digitsVocId(split, i));
        expect([got.height, got.width]).toEqual([40, 40]);
        expect(got.label).toBe(want.label);
        expect(got.labels).toEqual([want.label]);
        expect(got.boxes).toEqual(want.boxes);
        expect(got.objects.map((o) => o.name)).toEqual(want.boxes.map(() => String(want.label)));
        expect(Array.from(got.mask!)).toEqual(Array.from(want.mask));
        expect(Array.from(got.segmentation!)).toEqual(Array.from(want.mask, (m) => (m ? want.label + 1 : 0)));
        // JPEG is lossy but close
        let err = 0;
        for (let k = 0; k < want.image.length; k++) err += Math.abs(got.image[k] - want.image[k]);
        expect(err / want.image.length).toBeLessThan(0.03);
      }
    }
    const png = await readLabelPng(join(out, 'SegmentationClass', 'val_000000.png'));
    expect(png.palette?.slice(0, 3)).toEqual(vocColormap().slice(0, 3));
    expect(vocColormap()[15]).toEqual([192, 128, 128]); // VOC 'person'
  });

  it('is read by inspectDataset as a VOC set with its own classes and a foreground fraction', async () => {
    const info = await inspectDataset('voc', out);
    expect(info.splits).toMatchObject({ train: 4, val: 4, trainval: 8 });
    expect(info.segmentationSplits).toMatchObject({ train: 4, val: 4 });
    expect(info.classes.count).toBe(10);
    expect(info.meanForegroundFraction).toBeGreaterThan(0.01);
    expect(info.meanForegroundFraction).toBeLessThan(0.6);
  });

  it('reads with the detection task too (ImageSets/Main, per-class lists ignored as splits)', async () => {
    const det = new VocDataset(out, 'trainval');
    expect(det.length).toBe(8);
    const cls = readFileSync(join(out, 'ImageSets/Main', `${DIGIT_CLASSES[(await det.get(0)).label]}_trainval.txt`), 'utf8');
    expect(cls.split('\n')[0]).toBe('train_000000  1');
  });

  it('writes XML that escapes names and marks boxes touching the border as truncated', () => {
    const xml = vocAnnotationXml('a', 10, 8, [{ name: 'a<b', box: [0, 2, 3, 4] }]);
    expect(xml).toContain('<name>a&lt;b</name>');
    expect(xml).toContain('<truncated>1</truncated>');
    expect(xml).toContain('<xmin>1</xmin>');
    expect(VOC_CLASSES).toHaveLength(20);
  });

  it('rejects bad options', async () => {
    await expect(exportDigitsToVoc({ outDir: out, limit: 0 })).rejects.toThrow(IceError);
    await expect(exportDigitsToVoc({ outDir: out, splits: ['nope' as 'train'] })).rejects.toThrow(/split/);
  });
});
