import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ImageNetFolderDataset } from './imagenet-folder.dataset';
import { codeOf, makeTempDir, solidRgb, writeImage, writeText } from './formats.testing';

describe('ImageNetFolderDataset', () => {
  const tmp = makeTempDir();
  const root = join(tmp.dir, 'imagenet');
  const C1: [number, number, number] = [200, 10, 10];
  const C2: [number, number, number] = [10, 200, 10];

  beforeAll(async () => {
    // Deliberately created out of order; names chosen to exercise code-point sorting.
    await writeImage(join(root, 'train/n02000000/a.JPEG'), solidRgb(4, 6, C2), 4, 6);
    await writeImage(join(root, 'train/n02000000/B.JPEG'), solidRgb(5, 3, C2), 5, 3);
    await writeImage(join(root, 'train/n02000000/sub/c.jpeg'), solidRgb(2, 2, C2), 2, 2);
    await writeImage(join(root, 'train/n01000000/x.JPEG'), solidRgb(3, 3, C1), 3, 3);
    writeText(join(root, 'train/n01000000/notes.txt'), 'not an image');
    await writeImage(join(root, 'val/n01000000/v1.JPEG'), solidRgb(3, 3, C1), 3, 3);
    await writeImage(join(root, 'val/n02000000/v2.png'), solidRgb(3, 3, C2), 3, 3, { format: 'png' });
    writeText(join(root, 'val/n02000000/broken.JPEG'), 'garbage bytes');
    writeText(join(root, 'LOC_synset_mapping.txt'), 'n01000000 tench, Tinca tinca\nn02000000 goldfish, Carassius auratus\n');
  });
  afterAll(() => tmp.cleanup());

  it('orders classes and files like torchvision ImageFolder', () => {
    const ds = new ImageNetFolderDataset(root, 'train');
    expect(ds.classes).toEqual(['n01000000', 'n02000000']);
    expect(ds.classNames).toEqual(['tench, Tinca tinca', 'goldfish, Carassius auratus']);
    expect(ds.length).toBe(4);
    // 'B' < 'a' in code points; a sub-folder's files come after its parent's
    expect([0, 1, 2, 3].map((i) => ds.pathOf(i).slice(root.length + 1))).toEqual([
      'train/n01000000/x.JPEG',
      'train/n02000000/B.JPEG',
      'train/n02000000/a.JPEG',
      'train/n02000000/sub/c.jpeg',
    ]);
  });

  it('decodes samples lazily with labels, ids and sizes', async () => {
    const ds = new ImageNetFolderDataset(root, 'train');
    const s = await ds.get(1);
    expect(s.id).toBe('imagenet/train/n02000000/B.JPEG');
    expect([s.label, s.wnid, s.height, s.width]).toEqual([1, 'n02000000', 5, 3]);
    expect(s.image.length).toBe(5 * 3 * 3);
    expect(Math.abs(s.image[1] - C2[1] / 255)).toBeLessThan(0.03);
    expect((await ds.get(0)).label).toBe(0);
  });

  it('val split: wnid folders, PNG inside, a corrupt file fails only in get()', async () => {
    const ds = new ImageNetFolderDataset(root, 'val');
    expect(ds.length).toBe(3);
    expect(ds.pathOf(1).endsWith('broken.JPEG')).toBe(true);
    expect((await ds.get(2)).label).toBe(1);
    await expect(ds.get(1)).rejects.toMatchObject({ code: 'IMAGE_CORRUPT', message: expect.stringContaining('broken.JPEG') as unknown });
    await expect(ds.get(3)).rejects.toMatchObject({ code: 'INPUT_INVALID' });
  });

  it('falls back to wnids without a mapping file; a given mapping path must exist', () => {
    const other = join(tmp.dir, 'nomap');
    mkdirSync(join(other, 'train/n09999999'), { recursive: true });
    writeText(join(other, 'train/n09999999/z.jpg'), 'x');
    expect(new ImageNetFolderDataset(other, 'train').classNames).toEqual(['n09999999']);
    const missing = join(other, 'missing-map.txt');
    expect(codeOf(() => new ImageNetFolderDataset(other, 'train', { synsetMapping: missing }))).toMatch(
      new RegExp(`^FILE_NOT_FOUND: .*${missing}`),
    );
  });

  it('errors: missing root, missing split, flat or empty class folders', () => {
    const nope = join(tmp.dir, 'nope');
    expect(codeOf(() => new ImageNetFolderDataset(nope, 'train'))).toMatch(new RegExp(`^FILE_NOT_FOUND: .*${nope}`));
    expect(codeOf(() => new ImageNetFolderDataset(root, 'test'))).toMatch(/^FILE_NOT_FOUND: .*test/);
    const flat = join(tmp.dir, 'flat');
    writeText(join(flat, 'val/ILSVRC2012_val_00000001.JPEG'), 'x');
    expect(codeOf(() => new ImageNetFolderDataset(flat, 'val'))).toMatch(/^INPUT_INVALID: no class folders/);
    mkdirSync(join(flat, 'train/n01000000'), { recursive: true });
    expect(codeOf(() => new ImageNetFolderDataset(flat, 'train'))).toMatch(/^INPUT_INVALID: no image files in class folder\(s\) n01000000/);
  });
});
