import { resizeF32, resizeU8, type ResampleFilter } from './pil-resample';
// Generated with Pillow 9.4.0 (Image.resize, no reducing_gap) from the inputs rebuilt below.
import golden from './pil-resample.golden.json';

const GOLD = golden as Record<string, number[]>;

function u8Input(): Uint8Array {
  const h = 5;
  const w = 7;
  const out = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) out[(y * w + x) * 3 + c] = (y * 37 + x * 53 + c * 91 + x * y * 7) % 256;
  return out;
}

function f32Input(): Float32Array {
  const out = new Float32Array(4 * 6);
  for (let y = 0; y < 4; y++) for (let x = 0; x < 6; x++) out[y * 6 + x] = ((y * 13 + x * 7) % 10) / 9;
  return out;
}

describe('Pillow-exact resampling', () => {
  const sizes: [number, number][] = [
    [3, 4],
    [8, 11],
    [5, 3],
  ];
  for (const filter of ['bilinear', 'bicubic', 'nearest'] as ResampleFilter[]) {
    for (const [oh, ow] of sizes) {
      it(`8-bit ${filter} 5×7 → ${oh}×${ow} matches Pillow bit for bit`, () => {
        expect(Array.from(resizeU8(u8Input(), 5, 7, 3, oh, ow, filter))).toEqual(GOLD[`u8_${filter}_${oh}x${ow}`]);
      });
    }
  }
  for (const filter of ['bilinear', 'bicubic'] as ResampleFilter[]) {
    for (const [oh, ow] of [
      [7, 3],
      [2, 9],
    ] as [number, number][]) {
      it(`float ${filter} 4×6 → ${oh}×${ow} matches Pillow mode F`, () => {
        const got = resizeF32(f32Input(), 4, 6, 1, oh, ow, filter);
        const want = GOLD[`f32_${filter}_${oh}x${ow}`];
        expect(got.length).toBe(want.length);
        want.forEach((v, i) => expect(got[i]).toBeCloseTo(v, 6));
      });
    }
  }

  it('upsamples with pixel centres aligned (0,1,2,3 → 0,.25,.75,…,3), unlike libvips', () => {
    const got = resizeF32(new Float32Array([0, 1, 2, 3]), 1, 4, 1, 1, 8, 'bilinear');
    expect(Array.from(got)).toEqual([0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3]);
  });

  it('returns a copy for the same size and rejects bad sizes', () => {
    const src = u8Input();
    const same = resizeU8(src, 5, 7, 3, 5, 7);
    expect(same).toEqual(src);
    expect(same).not.toBe(src);
    expect(() => resizeU8(src, 5, 7, 3, 0, 3)).toThrow(/target height/);
    expect(() => resizeU8(src, 5, 6, 3, 2, 3)).toThrow(/expected 5×6×3/);
  });
});
