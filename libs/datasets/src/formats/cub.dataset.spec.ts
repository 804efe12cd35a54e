import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { CubDataset } from './cub.dataset';
import { codeOf, makeTempDir, solidRgb, writeImage, writeText } from './formats.testing';

const A1 = '001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg';
const A2 = '001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg';
const B1 = '002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg';
const B2 = '002.Laysan_Albatross/Laysan_Albatross_0003_1033.jpg';

function writeCub(root: string): void {
  writeText(join(root, 'classes.txt'), '1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n');
  writeText(join(root, 'images.txt'), `1 ${A1}\n2 ${A2}\n3 ${B1}\n4 ${B2}\n`);
  writeText(join(root, 'image_class_labels.txt'), '1 1\n2 1\n3 2\n4 2\n');
  writeText(join(root, 'bounding_boxes.txt'), '1 1.0 2.0 5.0 3.0\n2 0.0 0.0 4.0 4.0\n3 2.5 1.0 3.0 2.0\n4 0.0 1.0 2.0 2.0\n');
  writeText(join(root, 'train_test_split.txt'), '1 0\n2 1\n3 1\n4 0\n');
}

describe('CubDataset', () => {
  const tmp = makeTempDir();
  const root = join(tmp.dir, 'CUB_200_2011');

  beforeAll(async () => {
    writeCub(root);
    await writeImage(join(root, 'images', A1), solidRgb(6, 8, [30, 60, 90]), 6, 8);
    await writeImage(join(root, 'images', A2), solidRgb(4, 4, [30, 60, 90]), 4, 4);
    await writeImage(join(root, 'images', B1), solidRgb(5, 7, [90, 60, 30]), 5, 7, { colourspace: 'b-w' });
    writeText(join(root, 'images', B2), 'corrupt');
  });
  afterAll(() => tmp.cleanup());

  it('splits by train_test_split.txt in images.txt order, 0-based labels, class names from classes.txt', async () => {
    const train = new CubDataset(root, 'train');
    const test = new CubDataset(root, 'test');
    expect(train.classes).toEqual(['001.Black_footed_Albatross', '002.Laysan_Albatross']);
    expect([train.length, test.length]).toEqual([2, 2]);
    const t0 = await train.get(0);
    expect([t0.id, t0.imageId, t0.label, t0.height, t0.width]).toEqual([`cub/${A2}`, 2, 0, 4, 4]);
    const t1 = await train.get(1);
    expect([t1.imageId, t1.label, t1.height, t1.width, t1.image.length]).toEqual([3, 1, 5, 7, 5 * 7 * 3]); // greyscale JPEG → RGB
  });

  it('boxes: raw [x, y, w, h] kept, contract box = [x, y, x+w-1, y+h-1]', async () => {
    const s = await new CubDataset(root, 'test').get(0);
    expect(s.bboxXywh).toEqual([1, 2, 5, 3]);
    expect(s.boxes).toEqual([[1, 2, 5, 4]]);
    const f = await new CubDataset(root, 'train').get(1);
    expect(f.boxes).toEqual([[2.5, 1, 4.5, 2]]);
  });

  it('a corrupt image fails in get() as IMAGE_CORRUPT naming the file', async () => {
    await expect(new CubDataset(root, 'test').get(1)).rejects.toMatchObject({
      code: 'IMAGE_CORRUPT',
      message: expect.stringContaining(B2) as unknown,
    });
  });

  it('errors: missing root, missing index file, inconsistent index, unknown split', () => {
    const nope = join(tmp.dir, 'nope');
    expect(codeOf(() => new CubDataset(nope, 'train'))).toMatch(new RegExp(`^FILE_NOT_FOUND: .*${nope}`));
    expect(codeOf(() => new CubDataset(root, 'val'))).toMatch(/^CONFIG_INVALID: .*only 'train' and 'test'/);
    const broken = join(tmp.dir, 'broken');
    writeCub(broken);
    rmSync(join(broken, 'bounding_boxes.txt'));
    expect(codeOf(() => new CubDataset(broken, 'train'))).toMatch(
      new RegExp(`^FILE_NOT_FOUND: CUB bounding boxes not found: .*${join(broken, 'bounding_boxes.txt')}`),
    );
    writeText(join(broken, 'bounding_boxes.txt'), '1 1 2 3 4\n2 1 1 1 1\n3 1 1 1 1\n');
    expect(codeOf(() => new CubDataset(broken, 'train'))).toMatch(/^INPUT_INVALID: .*bounding_boxes\.txt: no entry for image id 4/);
    writeText(join(broken, 'bounding_boxes.txt'), '1 1 2 3\n');
    expect(codeOf(() => new CubDataset(broken, 'train'))).toMatch(/^INPUT_INVALID: .*bounding_boxes\.txt:1: expected 4 value/);
    writeCub(broken);
    writeText(join(broken, 'image_class_labels.txt'), '1 1\n2 1\n3 3\n4 2\n');
    expect(codeOf(() => new CubDataset(broken, 'train'))).toMatch(/image 3 has class 3, expected 1\.\.2/);
    writeCub(broken);
    expect(codeOf(() => new CubDataset(broken, 'train'))).toMatch(/^FILE_NOT_FOUND: CUB images folder/);
  });
});
