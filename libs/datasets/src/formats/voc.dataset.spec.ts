import { join } from 'node:path';
import { VOC_CLASSES, VocDataset, parseVocAnnotation } from './voc.dataset';
import { codeOf, makeTempDir, solidRgb, vocXml, writeImage, writePalettePng, writeText } from './formats.testing';

const PERSON = VOC_CLASSES.indexOf('person');
const DOG = VOC_CLASSES.indexOf('dog');
const CAT = VOC_CLASSES.indexOf('cat');

/** 6×8 label map: a person (15) block with a void (255) border, a dog (12) pixel pair, background. */
function seg1(): Uint8Array {
  const m = new Uint8Array(6 * 8);
  for (let y = 1; y <= 4; y++) for (let x = 1; x <= 4; x++) m[y * 8 + x] = y === 1 || y === 4 || x === 1 || x === 4 ? 255 : PERSON + 1;
  m[5 * 8 + 6] = DOG + 1;
  m[5 * 8 + 7] = DOG + 1;
  return m;
}

describe('VocDataset', () => {
  const tmp = makeTempDir();
  const root = join(tmp.dir, 'VOCdevkit/VOC2012');

  beforeAll(async () => {
    await writeImage(join(root, 'JPEGImages/2007_000001.jpg'), solidRgb(6, 8, [100, 150, 200]), 6, 8);
    await writeImage(join(root, 'JPEGImages/2007_000002.jpg'), solidRgb(5, 4, [10, 20, 30]), 5, 4);
    await writeImage(join(root, 'JPEGImages/2008_000003.jpg'), solidRgb(3, 3, [0, 0, 0]), 3, 3);
    writeText(join(root, 'JPEGImages/2008_000004.jpg'), 'corrupt');
    writePalettePng(join(root, 'SegmentationClass/2007_000001.png'), seg1(), 6, 8);
    writePalettePng(join(root, 'SegmentationClass/2007_000002.png'), new Uint8Array(5 * 3), 5, 3); // wrong size on purpose
    writeText(
      join(root, 'Annotations/2007_000001.xml'),
      vocXml('2007_000001.jpg', 8, 6, [
        { name: 'person', box: [2, 2, 5, 5], difficult: true },
        { name: 'dog', box: [7, 6, 8, 6], truncated: true },
      ]),
    );
    writeText(join(root, 'Annotations/2007_000002.xml'), vocXml('2007_000002.jpg', 4, 5, [{ name: 'cat', box: [1, 1, 4, 5] }]));
    writeText(join(root, 'ImageSets/Main/trainval.txt'), '2007_000001\n2007_000002\n2008_000003\n2008_000004\n');
    writeText(join(root, 'ImageSets/Main/cat_trainval.txt'), '2007_000001 -1\n2007_000002  1\n');
    writeText(join(root, 'ImageSets/Segmentation/val.txt'), '2007_000001\r\n2008_000003\r\n');
    writeText(join(root, 'ImageSets/Segmentation/train.txt'), '2007_000002\n');
  });
  afterAll(() => tmp.cleanup());

  it('reads objects (1-based as in the XML), 0-based inclusive boxes, label of the first non-difficult object', async () => {
    const ds = new VocDataset(root, 'trainval');
    expect([ds.length, ds.task, ds.classes]).toEqual([4, 'detection', [...VOC_CLASSES]]);
    const s = await ds.get(0);
    expect([s.id, s.imageId, s.height, s.width]).toEqual(['voc/2007_000001', '2007_000001', 6, 8]);
    expect(s.objects).toEqual([
      { name: 'person', classIndex: PERSON, bndbox: [2, 2, 5, 5], difficult: true, truncated: false },
      { name: 'dog', classIndex: DOG, bndbox: [7, 6, 8, 6], difficult: false, truncated: true },
    ]);
    expect(s.boxes).toEqual([
      [1, 1, 4, 4],
      [6, 5, 7, 5],
    ]);
    expect(s.label).toBe(DOG);
    expect(s.labels).toEqual([DOG, PERSON].sort((a, b) => a - b));
    expect(Math.abs(s.image[2] - 200 / 255)).toBeLessThan(0.03);
  });

  it('reads the palette mask as indices: segmentation keeps 255, mask is binary with void as background', async () => {
    const s = await new VocDataset(root, 'trainval').get(0);
    expect(Array.from(s.segmentation ?? [])).toEqual(Array.from(seg1()));
    const expected = Array.from(seg1()).map((v) => (v !== 0 && v !== 255 ? 1 : 0));
    expect(Array.from(s.mask ?? [])).toEqual(expected);
    expect(expected.filter((v) => v === 1).length).toBe(4 + 2);
  });

  it('without annotation or mask: no objects, label -1, no mask; difficult objects can be dropped from boxes', async () => {
    const ds = new VocDataset(root, 'trainval', { includeDifficult: false });
    const s = await ds.get(2);
    expect([s.objects, s.boxes, s.label, s.labels, s.mask, s.segmentation]).toEqual([[], [], -1, [], undefined, undefined]);
    const first = await ds.get(0);
    expect(first.boxes).toEqual([[6, 5, 7, 5]]);
    expect(first.objects.length).toBe(2);
  });

  it('segmentation task uses ImageSets/Segmentation and requires the mask', async () => {
    const val = new VocDataset(root, 'val', { task: 'segmentation' });
    expect(val.ids).toEqual(['2007_000001', '2008_000003']);
    expect((await val.get(0)).segmentation?.length).toBe(48);
    const missing = join(root, 'SegmentationClass/2008_000003.png');
    await expect(val.get(1)).rejects.toMatchObject({ code: 'FILE_NOT_FOUND', message: expect.stringContaining(missing) as unknown });
    const train = new VocDataset(root, 'train', { task: 'segmentation' });
    await expect(train.get(0)).rejects.toMatchObject({
      code: 'INPUT_INVALID',
      message: expect.stringContaining('5×3 but its image is 5×4') as unknown,
    });
  });

  it('a corrupt JPEG fails in get() as IMAGE_CORRUPT naming the file', async () => {
    const ds = new VocDataset(root, 'trainval');
    await expect(ds.get(3)).rejects.toMatchObject({
      code: 'IMAGE_CORRUPT',
      message: expect.stringContaining('2008_000004.jpg') as unknown,
    });
  });

  it('errors: missing root, JPEGImages, split list', () => {
    const nope = join(tmp.dir, 'nope');
    expect(codeOf(() => new VocDataset(nope, 'val'))).toMatch(new RegExp(`^FILE_NOT_FOUND: .*${nope}`));
    const bare = join(tmp.dir, 'bare');
    writeText(join(bare, 'README'), 'x');
    expect(codeOf(() => new VocDataset(bare, 'val'))).toMatch(/^FILE_NOT_FOUND: VOC JPEGImages folder/);
    expect(codeOf(() => new VocDataset(root, 'test'))).toMatch(/^FILE_NOT_FOUND: .*ImageSets\/Main\/test\.txt/);
  });

  describe('custom class list (VOC layout)', () => {
    const custom = join(tmp.dir, 'widgets');
    beforeAll(async () => {
      writeText(join(custom, 'classes.txt'), '__background__\nwidget\ngadget\n');
      await writeImage(join(custom, 'JPEGImages/a.jpg'), solidRgb(2, 2, [9, 9, 9]), 2, 2);
      await writeImage(join(custom, 'JPEGImages/b.jpg'), solidRgb(2, 2, [9, 9, 9]), 2, 2);
      writePalettePng(join(custom, 'SegmentationClass/a.png'), new Uint8Array([0, 2, 1, 255]), 2, 2);
      writePalettePng(join(custom, 'SegmentationClass/b.png'), new Uint8Array([0, 3, 0, 0]), 2, 2);
      writeText(join(custom, 'Annotations/a.xml'), vocXml('a.jpg', 2, 2, [{ name: 'gadget', box: [2.0, 1.0, 2.0, 1.0] }]));
      writeText(join(custom, 'Annotations/b.xml'), vocXml('b.jpg', 2, 2, [{ name: 'dog', box: [1, 1, 1, 1] }]));
      writeText(join(custom, 'ImageSets/Segmentation/train.txt'), 'a\nb\n');
    });

    it('takes classes from classes.txt (background line dropped)', async () => {
      const ds = new VocDataset(custom, 'train', { task: 'segmentation' });
      expect(ds.classes).toEqual(['widget', 'gadget']);
      const a = await ds.get(0);
      expect([a.label, a.boxes]).toEqual([1, [[1, 0, 1, 0]]]);
      expect(Array.from(a.mask ?? [])).toEqual([0, 1, 1, 0]);
    });

    it('rejects unknown class names and out-of-range mask labels, naming the file', async () => {
      const ds = new VocDataset(custom, 'train', { task: 'segmentation' });
      await expect(ds.get(1)).rejects.toMatchObject({
        code: 'INPUT_INVALID',
        message: expect.stringMatching(/b\.xml.*"dog" is not in the class list/) as unknown,
      });
      const ds2 = new VocDataset(custom, 'train', { task: 'segmentation', classes: ['widget', 'gadget', 'dog'] });
      await expect(ds2.get(1)).resolves.toMatchObject({ label: 2 });
      const ds3 = new VocDataset(custom, 'train', { task: 'segmentation', classes: ['widget', 'dog'] });
      await expect(ds3.get(1)).rejects.toMatchObject({
        code: 'INPUT_INVALID',
        message: expect.stringMatching(/b\.png has label 3/) as unknown,
      });
    });
  });

  it('parseVocAnnotation: malformed XML and missing boxes are INPUT_INVALID', () => {
    expect(codeOf(() => parseVocAnnotation('<annotation><object><name>cat</name></object></annotation>', 'x.xml', VOC_CLASSES))).toMatch(
      /^INPUT_INVALID: annotation x\.xml, object 1: no <bndbox>/,
    );
    expect(codeOf(() => parseVocAnnotation('<foo/>', 'y.xml', VOC_CLASSES))).toMatch(
      /^INPUT_INVALID: annotation y\.xml has no <annotation>/,
    );
    expect(
      codeOf(() =>
        parseVocAnnotation(
          '<annotation><object><name>cat</name><bndbox><xmin>a</xmin></bndbox></object></annotation>',
          'z.xml',
          VOC_CLASSES,
        ),
      ),
    ).toMatch(/xmin is not a number/);
    expect(parseVocAnnotation('<annotation><filename>e.jpg</filename></annotation>', 'e.xml', VOC_CLASSES)).toEqual([]);
    expect(codeOf(() => parseVocAnnotation('<annotation><object><name>cat</name>', 'w.xml', VOC_CLASSES))).toMatch(
      /^INPUT_INVALID: cannot parse annotation w\.xml/,
    );
    const xml =
      '<annotation><object><name> cat </name><bndbox><xmin>1.0</xmin><ymin>2</ymin><xmax>3.5</xmax><ymax>4</ymax></bndbox></object></annotation>';
    expect(parseVocAnnotation(xml, 'f.xml', VOC_CLASSES)).toEqual([
      { name: 'cat', classIndex: CAT, bndbox: [1, 2, 3.5, 4], difficult: false, truncated: false },
    ]);
  });
});
