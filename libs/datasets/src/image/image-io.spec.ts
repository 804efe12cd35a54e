import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { IceError } from '@ice/core';
import sharp from 'sharp';
import { vocColormap } from '../export/voc-export';
import { makeTempDir, solidRgb, splitRgb, writeImage, writePalettePng, writeText } from '../formats/formats.testing';
import { decodeImage, decodeImageU8, readLabelPng, resizeImage, resizeMaskNearest } from './image-io';
import { resizeU8 } from './pil-resample';

const RED: [number, number, number] = [220, 20, 30];
const BLUE: [number, number, number] = [20, 40, 230];

function pixel(img: { data: ArrayLike<number>; width: number }, y: number, x: number): number[] {
  const i = (y * img.width + x) * 3;
  return [img.data[i], img.data[i + 1], img.data[i + 2]];
}

function near(a: number[], b: number[], tol: number): boolean {
  return a.every((v, k) => Math.abs(v - b[k]) <= tol);
}

async function expectIceError(p: Promise<unknown>, code: string, text: string): Promise<void> {
  const err: unknown = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(IceError);
  expect((err as IceError).code).toBe(code);
  expect((err as IceError).message).toContain(text);
}

describe('image-io', () => {
  const tmp = makeTempDir();
  afterAll(() => tmp.cleanup());

  it('decodes a lossless PNG to RGB float HWC in [0, 1] (v / 255)', async () => {
    const path = join(tmp.dir, 'rgb.png');
    const rgb = new Uint8Array(2 * 3 * 3).map((_, i) => i * 13);
    await writeImage(path, rgb, 2, 3, { format: 'png' });
    const img = await decodeImage(path);
    expect([img.height, img.width]).toEqual([2, 3]);
    expect(img.data).toBeInstanceOf(Float32Array);
    expect(Array.from(img.data)).toEqual(Array.from(rgb).map((v) => Math.fround(v / 255)));
  });

  it('honours EXIF orientation (6 = rotate 90° clockwise), or not when asked', async () => {
    const path = join(tmp.dir, 'rot.jpg');
    // stored 8 high × 16 wide: left half red, right half blue
    await writeImage(path, splitRgb(8, 16, RED, BLUE), 8, 16, { orientation: 6 });
    expect((await sharp(path).metadata()).orientation).toBe(6);
    const img = await decodeImageU8(path);
    expect([img.height, img.width, img.orientation, img.storedHeight, img.storedWidth]).toEqual([16, 8, 6, 8, 16]);
    // rotating 90° clockwise puts the stored left half on top
    expect(near(pixel(img, 2, 4), RED, 12)).toBe(true);
    expect(near(pixel(img, 13, 4), BLUE, 12)).toBe(true);
    const raw = await decodeImageU8(path, { autoOrient: false });
    expect([raw.height, raw.width]).toEqual([8, 16]);
    expect(near(pixel(raw, 4, 2), RED, 12)).toBe(true);
  });

  it('replicates a 1-channel greyscale JPEG to RGB', async () => {
    const path = join(tmp.dir, 'grey.jpg');
    await writeImage(path, solidRgb(6, 5, [90, 90, 90]), 6, 5, { colourspace: 'b-w' });
    const meta = await sharp(path).metadata();
    expect([meta.channels, meta.space]).toEqual([1, 'b-w']);
    const img = await decodeImageU8(path);
    expect(img.data.length).toBe(6 * 5 * 3);
    for (let i = 0; i < 30; i++) {
      expect(img.data[3 * i]).toBe(img.data[3 * i + 1]);
      expect(img.data[3 * i]).toBe(img.data[3 * i + 2]);
      expect(Math.abs(img.data[3 * i] - 90)).toBeLessThanOrEqual(2);
    }
  });

  it('converts a CMYK JPEG to sRGB', async () => {
    const path = join(tmp.dir, 'cmyk.jpg');
    const colour: [number, number, number] = [200, 120, 60];
    await writeImage(path, solidRgb(8, 8, colour), 8, 8, { colourspace: 'cmyk' });
    const meta = await sharp(path).metadata();
    expect([meta.channels, meta.space]).toEqual([4, 'cmyk']);
    const img = await decodeImageU8(path);
    expect(img.data.length).toBe(8 * 8 * 3);
    // CMYK round trips through ICC profiles are not exact; the hue must survive.
    expect(near(pixel(img, 4, 4), colour, 25)).toBe(true);
  });

  it('drops alpha without compositing (as PIL convert("RGB"))', async () => {
    const path = join(tmp.dir, 'rgba.png');
    await writeImage(path, solidRgb(3, 3, [10, 200, 100]), 3, 3, { format: 'png', alpha: 0 });
    expect((await sharp(path).metadata()).channels).toBe(4);
    const img = await decodeImageU8(path);
    expect(pixel(img, 1, 1)).toEqual([10, 200, 100]);
  });

  it('detects the format by content (a PNG named .JPEG, as in ImageNet)', async () => {
    const path = join(tmp.dir, 'really-png.JPEG');
    await writeImage(path, solidRgb(2, 2, [1, 2, 3]), 2, 2, { format: 'png' });
    expect(pixel(await decodeImageU8(path), 0, 0)).toEqual([1, 2, 3]);
  });

  it('resizes in the decode step exactly like Pillow on the 8-bit pixels', async () => {
    const path = join(tmp.dir, 'resize.png');
    const rgb = new Uint8Array(7 * 9 * 3).map((_, i) => (i * 37) % 256);
    await writeImage(path, rgb, 7, 9, { format: 'png' });
    const img = await decodeImageU8(path, { resize: { height: 4, width: 5, kernel: 'bicubic' } });
    expect([img.height, img.width]).toEqual([4, 5]);
    expect(img.data).toEqual(resizeU8(rgb, 7, 9, 3, 4, 5, 'bicubic'));
    await expectIceError(decodeImageU8(path, { resize: { height: 0, width: 5 } }), 'INPUT_INVALID', 'positive');
  });

  it('resizeImage keeps a constant image constant and clamps bicubic overshoot to [0, 1]', () => {
    const flat = resizeImage({ data: new Float32Array(4 * 4 * 3).fill(0.25), height: 4, width: 4 }, 7, 3);
    expect(Array.from(flat.data).every((v) => Math.abs(v - 0.25) < 1e-6)).toBe(true);
    const edge = new Float32Array(1 * 6 * 3);
    for (let x = 3; x < 6; x++) edge.fill(1, x * 3, x * 3 + 3);
    const up = resizeImage({ data: edge, height: 1, width: 6 }, 1, 17, 'bicubic');
    expect(Math.min(...up.data)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...up.data)).toBeLessThanOrEqual(1);
  });

  it('resizeMaskNearest never invents label values', () => {
    const mask = new Uint8Array([0, 1, 255, 2, 0, 1]);
    const out = resizeMaskNearest(mask, 2, 3, 5, 7);
    expect(new Set(out)).toEqual(new Set([0, 1, 255, 2]));
    // 1×1: source (floor(0.5·2), floor(0.5·3)) = (1, 1)
    expect(Array.from(resizeMaskNearest(mask, 2, 3, 1, 1))).toEqual([mask[1 * 3 + 1]]);
  });

  it('corrupt, truncated and missing images are IceErrors naming the path', async () => {
    const garbage = join(tmp.dir, 'garbage.jpg');
    writeText(garbage, 'this is not an image');
    await expectIceError(decodeImage(garbage), 'IMAGE_CORRUPT', garbage);
    const good = join(tmp.dir, 'trunc-src.jpg');
    await writeImage(good, splitRgb(32, 32, RED, BLUE), 32, 32);
    const bytes = readFileSync(good);
    const truncated = join(tmp.dir, 'truncated.jpg');
    writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    await expectIceError(decodeImage(truncated), 'IMAGE_CORRUPT', truncated);
    const missing = join(tmp.dir, 'nope.jpg');
    await expectIceError(decodeImage(missing), 'FILE_NOT_FOUND', missing);
  });

  describe('readLabelPng', () => {
    const idx = new Uint8Array([0, 1, 2, 255, 15, 0, 255, 20, 0, 0, 1, 1]); // 3 × 4

    it('reads palette INDICES (255 = void kept), whereas sharp expands the palette to RGB', async () => {
      const path = join(tmp.dir, 'mask.png');
      writePalettePng(path, idx, 3, 4);
      const viaSharp = await sharp(path).raw().toBuffer({ resolveWithObject: true });
      expect(viaSharp.info.channels).toBeGreaterThanOrEqual(3);
      const pal = vocColormap();
      expect(Array.from(viaSharp.data.subarray(3 * viaSharp.info.channels, 3 * viaSharp.info.channels + 3))).toEqual(pal[255]);
      const m = await readLabelPng(path);
      expect([m.height, m.width]).toEqual([3, 4]);
      expect(Array.from(m.data)).toEqual(Array.from(idx));
      expect(m.palette?.[1]).toEqual(pal[1]);
    });

    it('unpacks 4-bit and 1-bit palette PNGs', async () => {
      const small = new Uint8Array([0, 1, 2, 3, 15, 0, 7, 9, 0, 0, 1, 14, 5]); // 1 × 13 (odd width)
      const p4 = join(tmp.dir, 'mask4.png');
      writePalettePng(p4, small, 1, 13, 4);
      expect(Array.from((await readLabelPng(p4)).data)).toEqual(Array.from(small));
      const bits = new Uint8Array([1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1]); // 1 × 11
      const p1 = join(tmp.dir, 'mask1.png');
      writePalettePng(p1, bits, 1, 11, 1);
      expect(Array.from((await readLabelPng(p1)).data)).toEqual(Array.from(bits));
    });

    it('reads 8-bit greyscale masks as their values and rejects RGB masks', async () => {
      const grey = join(tmp.dir, 'grey-mask.png');
      await sharp(Buffer.from([0, 3, 255, 7]), { raw: { width: 2, height: 2, channels: 1 } })
        .toColourspace('b-w')
        .png()
        .toFile(grey);
      expect((await sharp(grey).metadata()).channels).toBe(1);
      expect(Array.from((await readLabelPng(grey)).data)).toEqual([0, 3, 255, 7]);
      const rgbPath = join(tmp.dir, 'rgb-mask.png');
      await writeImage(rgbPath, solidRgb(2, 2, [128, 0, 0]), 2, 2, { format: 'png' });
      await expectIceError(readLabelPng(rgbPath), 'INPUT_INVALID', rgbPath);
      const bad = join(tmp.dir, 'bad-mask.png');
      writeText(bad, 'nope');
      await expectIceError(readLabelPng(bad), 'IMAGE_CORRUPT', bad);
    });
  });
});
