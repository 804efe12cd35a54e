import { join } from 'node:path';
import { CubDataset } from './cub.dataset';
import { type DatasetFormat } from './dataset-files.util';
import { ImageNetFolderDataset } from './imagenet-folder.dataset';
import { ImageNetSegDataset } from './imagenet-seg.dataset';
import { evenlySpaced, inspectDataset, openDataset } from './open-dataset';
import { VocDataset } from './voc.dataset';
import { makeTempDir, solidRgb, vocXml, writeImage, writePalettePng, writeText } from './formats.testing';
import { writeImageNetSegMat } from './imagenet-seg.writer';

describe('openDataset / inspectDataset', () => {
  const tmp = makeTempDir();
  const imagenet = join(tmp.dir, 'imagenet');
  const seg = join(tmp.dir, 'seg');
  const voc = join(tmp.dir, 'VOC2007');
  const cub = join(tmp.dir, 'CUB_200_2011');

  beforeAll(async () => {
    for (const [split, wnid, n] of [
      ['train', 'n01', 2],
      ['train', 'n02', 1],
      ['val', 'n01', 1],
      ['val', 'n02', 1],
    ] as const) {
      for (let k = 0; k < n; k++) await writeImage(join(imagenet, split, wnid, `${k}.JPEG`), solidRgb(2, 2, [k, 0, 0]), 2, 2);
    }
    writeText(join(imagenet, 'LOC_synset_mapping.txt'), 'n01 tench\nn02 goldfish\n');

    // masks with foreground fractions 1/4, 1/2 and 1 (3 images)
    const masks = [
      [1, 0, 0, 0],
      [1, 1, 0, 0],
      [1, 1, 1, 1],
    ];
    await writeImageNetSegMat(
      join(seg, 'gtsegs_ijcv.mat'),
      masks.map((m) => ({ rgb: solidRgb(2, 2, [1, 2, 3]), mask: new Uint8Array(m), height: 2, width: 2 })),
    );

    for (const id of ['a', 'b', 'c']) await writeImage(join(voc, 'JPEGImages', `${id}.jpg`), solidRgb(2, 2, [5, 5, 5]), 2, 2);
    writePalettePng(join(voc, 'SegmentationClass/a.png'), new Uint8Array([0, 15, 255, 0]), 2, 2); // 1/4 (void is background)
    writePalettePng(join(voc, 'SegmentationClass/b.png'), new Uint8Array([3, 15, 255, 255]), 2, 2); // 2/4
    writeText(join(voc, 'Annotations/a.xml'), vocXml('a.jpg', 2, 2, [{ name: 'person', box: [1, 1, 2, 2] }]));
    writeText(join(voc, 'ImageSets/Main/trainval.txt'), 'a\nb\nc\n');
    writeText(join(voc, 'ImageSets/Main/test.txt'), 'c\n');
    writeText(join(voc, 'ImageSets/Main/person_trainval.txt'), 'a 1\nb -1\nc -1\n');
    writeText(join(voc, 'ImageSets/Segmentation/val.txt'), 'a\nb\nc\n'); // c has no mask
    writeText(join(voc, 'ImageSets/Segmentation/train.txt'), 'a\n');

    writeText(join(cub, 'classes.txt'), '1 001.A\n2 002.B\n3 003.C\n');
    writeText(join(cub, 'images.txt'), '1 001.A/x.jpg\n2 002.B/y.jpg\n');
    writeText(join(cub, 'image_class_labels.txt'), '1 1\n2 2\n');
    writeText(join(cub, 'bounding_boxes.txt'), '1 0 0 1 1\n2 0 0 2 2\n');
    writeText(join(cub, 'train_test_split.txt'), '1 1\n2 0\n');
    await writeImage(join(cub, 'images/001.A/x.jpg'), solidRgb(3, 3, [1, 1, 1]), 3, 3);
    await writeImage(join(cub, 'images/002.B/y.jpg'), solidRgb(3, 3, [1, 1, 1]), 3, 3);
  });
  afterAll(() => tmp.cleanup());

  it('opens each format with its loader', async () => {
    const cases: [DatasetFormat, string, string, { prototype: object }][] = [
      ['imagenet', imagenet, 'val', ImageNetFolderDataset],
      ['imagenet-seg', seg, 'test', ImageNetSegDataset],
      ['voc', voc, 'trainval', VocDataset],
      ['cub', cub, 'test', CubDataset],
    ];
    for (const [format, root, split, cls] of cases) {
      const ds = await openDataset(format, root, split);
      try {
        expect(ds).toBeInstanceOf(cls);
        expect([ds.format, ds.root, ds.split]).toEqual([format, root, split]);
        const s = await ds.get(0);
        expect(s.image.length).toBe(s.height * s.width * 3);
      } finally {
        await ds.close();
      }
    }
    const segVoc = await openDataset('voc', voc, 'val', { task: 'segmentation' });
    expect((await segVoc.get(1)).mask).toBeDefined();
  });

  it('rejects an unknown format and reports a missing root', async () => {
    await expect(openDataset('coco' as DatasetFormat, voc, 'val')).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(inspectDataset('coco' as DatasetFormat, voc)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    for (const format of ['imagenet', 'imagenet-seg', 'voc', 'cub'] as DatasetFormat[]) {
      const missing = join(tmp.dir, `missing-${format}`);
      await expect(openDataset(format, missing, format === 'cub' || format === 'imagenet-seg' ? 'test' : 'val')).rejects.toMatchObject({
        code: 'FILE_NOT_FOUND',
        message: expect.stringContaining(missing) as unknown,
      });
      await expect(inspectDataset(format, missing)).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
    }
  });

  it('inspects ImageNet folders', async () => {
    const info = await inspectDataset('imagenet', imagenet);
    expect(info).toEqual({
      format: 'imagenet',
      root: imagenet,
      splits: { train: 3, val: 2 },
      classes: { count: 2, first: ['tench', 'goldfish'] },
      notes: [],
    });
  });

  it('inspects ImageNet-Segmentation with the foreground fraction over all or a stated cap', async () => {
    const all = await inspectDataset('imagenet-seg', seg);
    expect(all.splits).toEqual({ test: 3 });
    expect(all.classes).toEqual({ count: 0, first: [] });
    expect(all.meanForegroundFraction).toBeCloseTo((0.25 + 0.5 + 1) / 3, 10);
    expect(all.foreground).toMatchObject({ split: 'test', imagesMeasured: 3, imagesInSplit: 3, imagesSkipped: 0, cap: null });
    const capped = await inspectDataset('imagenet-seg', seg, { foregroundSampleCap: 2 });
    expect(capped.foreground).toMatchObject({ imagesMeasured: 2, imagesInSplit: 3, cap: 2 });
    expect(capped.meanForegroundFraction).toBeCloseTo((0.25 + 0.5) / 2, 10); // indices 0 and 1
    expect(JSON.parse(JSON.stringify(capped))).toEqual(capped);
  });

  it('inspects VOC: Main and Segmentation splits, classes, foreground over the val masks', async () => {
    const info = await inspectDataset('voc', voc);
    expect(info.splits).toEqual({ test: 1, trainval: 3 });
    expect(info.segmentationSplits).toEqual({ train: 1, val: 3 });
    expect(info.classes).toEqual({ count: 20, first: ['aeroplane', 'bicycle', 'bird', 'boat', 'bottle'] });
    expect(info.meanForegroundFraction).toBeCloseTo((0.25 + 0.5) / 2, 10);
    expect(info.foreground).toMatchObject({ split: 'val', imagesMeasured: 2, imagesSkipped: 1, imagesInSplit: 3 });
    expect(info.notes.join(' ')).toMatch(/1 mask\(s\) of 'val' missing/);
  });

  it('inspects CUB', async () => {
    const info = await inspectDataset('cub', cub);
    expect(info).toMatchObject({ splits: { train: 1, test: 1 }, classes: { count: 3, first: ['001.A', '002.B', '003.C'] } });
    expect(info.meanForegroundFraction).toBeUndefined();
  });

  it('evenlySpaced picks deterministic, spread indices', () => {
    expect(evenlySpaced(10, 4)).toEqual([0, 2, 5, 7]);
    expect(evenlySpaced(3, 0)).toEqual([0, 1, 2]);
    expect(evenlySpaced(3, 10)).toEqual([0, 1, 2]);
  });
});
