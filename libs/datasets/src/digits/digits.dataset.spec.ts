import * as fs from 'fs';
import * as path from 'path';
import { zlibSync } from 'fflate';
import { IceError } from '@ice/core';
import { DigitsDataset, type DigitsSample, batchNCHW, resizeBilinear } from './digits.dataset';
import { DIGIT_SPLITS, loadMnistSource } from './mnist-source';
import type { VisionDataset } from '../dataset.types';

const source = loadMnistSource();

function bytesOf(s: DigitsSample): Buffer {
  return Buffer.concat([
    Buffer.from(s.image.buffer, s.image.byteOffset, s.image.byteLength),
    Buffer.from(s.mask),
    Buffer.from(JSON.stringify({ label: s.label, boxes: s.boxes, digitIds: s.digitIds, id: s.id })),
  ]);
}

describe('DigitsDataset', () => {
  const train = new DigitsDataset({ split: 'train', seed: 7 }, source);

  it('implements VisionDataset with the split size as default length', () => {
    const ds: VisionDataset = train;
    expect(ds.name).toBe('digits');
    expect(ds.split).toBe('train');
    expect(ds.classes).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(ds.length).toBe(8006);
    expect(new DigitsDataset({ split: 'val' }, source).length).toBe(997);
    expect(new DigitsDataset({ split: 'test', length: 50 }, source).length).toBe(50);
  });

  it('is deterministic in (seed, split, i) and independent of call order', () => {
    const a = train.get(123);
    train.get(5); // no hidden state between calls
    const b = new DigitsDataset({ split: 'train', seed: 7 }, source).get(123);
    expect(bytesOf(a).equals(bytesOf(b))).toBe(true);
    const other = new DigitsDataset({ split: 'train', seed: 8 }, source).get(123);
    expect(bytesOf(a).equals(bytesOf(other))).toBe(false);
    expect(bytesOf(a).equals(bytesOf(train.get(124)))).toBe(false);
  });

  it('one epoch leads with every digit of the split exactly once', () => {
    const val = new DigitsDataset({ split: 'val', seed: 3, canvasSize: 32 }, source);
    const leads = new Set<string>();
    for (let i = 0; i < val.length; i++) leads.add(val.get(i).digitIds[0]);
    expect(leads.size).toBe(val.length);
  });

  it('uses only digits of its own split, one class per image', () => {
    for (const split of DIGIT_SPLITS) {
      const ds = new DigitsDataset({ split, seed: 1, canvasSize: 48, length: 300 }, source);
      const allowed = new Set(source.refs(split).map((r) => `mnist/${r.label}/${r.index}`));
      for (let i = 0; i < ds.length; i++) {
        const s = ds.get(i);
        expect(new Set(s.digitIds).size).toBe(s.digitIds.length); // distinct digits
        for (const id of s.digitIds) {
          expect(allowed.has(id)).toBe(true);
          expect(id.split('/')[1]).toBe(String(s.label));
        }
      }
    }
  });

  it('produces valid images, masks inside boxes, 1-3 boxes on the canvas, and clutter', () => {
    const n = 200;
    const classes = new Set<number>();
    const instanceCounts = new Set<number>();
    const ds = new DigitsDataset({ split: 'test', seed: 11, length: n }, source);
    for (let i = 0; i < n; i++) {
      const s = ds.get(i);
      const { height: h, width: w } = s;
      expect([h, w]).toEqual([64, 64]);
      expect(s.image.length).toBe(h * w * 3);
      expect(s.mask.length).toBe(h * w);
      expect(s.image.every((v) => v >= 0 && v <= 1)).toBe(true); // one expect: per-value expects are slow
      classes.add(s.label);
      instanceCounts.add(s.boxes.length);
      expect(s.boxes.length).toBeGreaterThanOrEqual(1);
      expect(s.boxes.length).toBeLessThanOrEqual(3);
      expect(s.digitIds.length).toBe(s.boxes.length);
      for (const [x0, y0, x1, y1] of s.boxes) {
        expect(0 <= x0 && x0 <= x1 && x1 < w && 0 <= y0 && y0 <= y1 && y1 < h).toBe(true);
        expect(y1 - y0).toBeGreaterThanOrEqual(4); // a digit, not a speck (a thin "1" may be 1 px wide)
      }
      let masked = 0;
      let outside = 0;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          if (!s.mask[y * w + x]) continue;
          masked++;
          if (!s.boxes.some(([x0, y0, x1, y1]) => x >= x0 && x <= x1 && y >= y0 && y <= y1)) outside++;
        }
      }
      expect(masked).toBeGreaterThan(10);
      expect(outside).toBe(0);
      // The union of boxes is exactly the bounding box of the mask when the mask is nonempty.
      const union = s.boxes.reduce((u, b) => [Math.min(u[0], b[0]), Math.min(u[1], b[1]), Math.max(u[2], b[2]), Math.max(u[3], b[3])]);
      expect(maskBounds(s.mask, w, h)).toEqual(union);
      expectClutter(s);
    }
    expect([...classes].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect([...instanceCounts].sort()).toEqual([1, 2, 3]);
  });

  it('honours canvasSize, instance counts and digit scale', () => {
    const ds = new DigitsDataset(
      { split: 'train', canvasSize: 224, minInstances: 2, maxInstances: 2, digitScale: [0.2, 0.3], length: 20 },
      source,
    );
    for (let i = 0; i < ds.length; i++) {
      const s = ds.get(i);
      expect([s.height, s.width]).toEqual([224, 224]);
      expect(s.boxes.length).toBe(2);
      // The ink box is at most the resized 28×28 patch: 0.3 × 224 ≈ 67 px.
      for (const [x0, y0, x1, y1] of s.boxes) expect(Math.max(x1 - x0, y1 - y0) + 1).toBeLessThanOrEqual(68);
    }
  });

  it('rejects bad configs and indices', () => {
    const bad = (o: object) => () => new DigitsDataset({ split: 'train', ...o }, source);
    expect(bad({ canvasSize: 8 })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }) as Error);
    expect(bad({ minInstances: 3, maxInstances: 2 })).toThrow(IceError);
    expect(bad({ digitScale: [0.5, 0.2] })).toThrow(IceError);
    expect(bad({ length: 0 })).toThrow(IceError);
    expect(bad({ seed: 1.5 })).toThrow(IceError);
    expect(() => new DigitsDataset({ split: 'dev' as 'train' }, source)).toThrow(IceError);
    expect(() => train.get(train.length)).toThrow(expect.objectContaining({ code: 'INPUT_INVALID' }) as Error);
    expect(() => train.get(-1)).toThrow(IceError);
  });

  it('prints generation speed', () => {
    for (const canvasSize of [64, 224]) {
      const ds = new DigitsDataset({ split: 'train', canvasSize, seed: 2 }, source);
      const n = canvasSize === 64 ? 500 : 50;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) ds.get(i);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6 / n;
      console.log(`digits ${canvasSize}×${canvasSize}: ${ms.toFixed(2)} ms/sample (${(1000 / ms).toFixed(0)} samples/s)`);
    }
  });

  // ICE_DIGITS_SHEET=/tmp/digits.png npx jest libs/datasets → 4×4 sheet of samples, mask boxes in red.
  const sheet = process.env.ICE_DIGITS_SHEET;
  (sheet ? it : it.skip)('writes a contact sheet', () => {
    const ds = new DigitsDataset({ split: 'train', seed: 0, canvasSize: 96 }, source);
    writeContactSheet(
      sheet!,
      Array.from({ length: 16 }, (_, i) => ds.get(i * 37)),
      4,
    );
    expect(fs.existsSync(sheet!)).toBe(true);
  });
});

describe('batchNCHW', () => {
  it('transposes HWC to NCHW and normalises per channel', () => {
    const ds = new DigitsDataset({ split: 'val', canvasSize: 16, length: 3 }, source);
    const samples = [ds.get(0), ds.get(1), ds.get(2)];
    const { x, shape, labels } = batchNCHW(samples, 0.5, 0.5);
    expect(shape).toEqual([3, 3, 16, 16]);
    expect(labels).toEqual(samples.map((s) => s.label));
    const [b, c, y, xx] = [2, 1, 5, 9];
    expect(x[((b * 3 + c) * 16 + y) * 16 + xx]).toBeCloseTo((samples[b].image[(y * 16 + xx) * 3 + c] - 0.5) / 0.5, 6);
    expect(x.every((v) => v >= -1 && v <= 1)).toBe(true);
    const per = batchNCHW(samples, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    expect(per.x[16 * 16 * 2]).toBeCloseTo((samples[0].image[2] - 0.406) / 0.225, 5);
    expect(() => batchNCHW([], 0.5, 0.5)).toThrow(IceError);
    expect(() => batchNCHW(samples, 0.5, 0)).toThrow(IceError);
    const other = new DigitsDataset({ split: 'val', canvasSize: 20, length: 1 }, source).get(0);
    expect(() => batchNCHW([samples[0], other], 0.5, 0.5)).toThrow(IceError);
  });
});

describe('resizeBilinear', () => {
  it('keeps constants and matches half-pixel-centre interpolation', () => {
    expect([...resizeBilinear(new Float32Array(4).fill(0.25), 2, 2, 5, 3)]).toEqual(new Array(15).fill(0.25));
    // 2 → 4 upsampling of [0, 1]: centres at -0.25, 0.25, 0.75, 1.25 → clamped 0, .25, .75, 1.
    expect([...resizeBilinear(new Float32Array([0, 1]), 1, 2, 1, 4)]).toEqual([0, 0.25, 0.75, 1]);
  });
});

function maskBounds(mask: Uint8Array, w: number, h: number): number[] {
  let [x0, y0, x1, y1] = [w, h, -1, -1];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (mask[y * w + x]) [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
    }
  }
  return [x0, y0, x1, y1];
}

/** Background (outside every box) is not flat: spread of luminance and local variation. */
function expectClutter(s: DigitsSample): void {
  const { width: w, height: h } = s;
  const inBox = (x: number, y: number) => s.boxes.some(([x0, y0, x1, y1]) => x >= x0 && x <= x1 && y >= y0 && y <= y1);
  const lum: number[] = [];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (inBox(x, y)) continue;
      const p = (y * w + x) * 3;
      lum.push(0.2126 * s.image[p] + 0.7152 * s.image[p + 1] + 0.0722 * s.image[p + 2]);
    }
  }
  if (lum.length < 50) return; // digits cover nearly everything
  const mean = lum.reduce((a, b) => a + b, 0) / lum.length;
  const sd = Math.sqrt(lum.reduce((a, b) => a + (b - mean) ** 2, 0) / lum.length);
  expect(sd).toBeGreaterThan(0.01);
  expect(new Set(lum.map((v) => Math.round(v * 255))).size).toBeGreaterThan(10);
}

/** Minimal RGB PNG writer (fflate's zlib), for eyeballing samples only. */
function writeContactSheet(file: string, samples: DigitsSample[], cols: number): void {
  const { width: w, height: h } = samples[0];
  const pad = 4;
  const rows = Math.ceil(samples.length / cols);
  const W = cols * (w + pad) + pad;
  const H = rows * (h + pad) + pad;
  const rgb = new Uint8Array(W * H * 3).fill(255);
  samples.forEach((s, k) => {
    const ox = pad + (k % cols) * (w + pad);
    const oy = pad + Math.floor(k / cols) * (h + pad);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const onEdge = s.boxes.some(
          ([x0, y0, x1, y1]) =>
            ((x === x0 - 1 || x === x1 + 1) && y >= y0 - 1 && y <= y1 + 1) ||
            ((y === y0 - 1 || y === y1 + 1) && x >= x0 - 1 && x <= x1 + 1),
        );
        for (let c = 0; c < 3; c++) {
          const v = onEdge && process.env.ICE_DIGITS_SHEET_BOXES ? (c === 0 ? 1 : 0) : s.image[(y * w + x) * 3 + c];
          rgb[((oy + y) * W + ox + x) * 3 + c] = Math.round(v * 255);
        }
      }
    }
  });
  const raw = new Uint8Array(H * (W * 3 + 1));
  for (let y = 0; y < H; y++) raw.set(rgb.subarray(y * W * 3, (y + 1) * W * 3), y * (W * 3 + 1) + 1);
  const chunk = (type: string, data: Uint8Array) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), Buffer.from(data)]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(W, 0);
  ihdr.writeUInt32BE(H, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(
    file,
    Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr),
      chunk('IDAT', zlibSync(raw)),
      chunk('IEND', new Uint8Array(0)),
    ]),
  );
  console.log(`contact sheet: ${file}`);
}

function crc32(buf: Uint8Array): number {
  let c = ~0;
  for (const byte of buf) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}
