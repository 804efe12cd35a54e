import { bicubicResize } from './pos-embed';

describe('bicubicResize (PyTorch bicubic, align_corners=False)', () => {
  it('keeps a constant grid constant and is the identity at the same size', () => {
    const src = new Float64Array(9).fill(2.5);
    expect(Array.from(bicubicResize(src, 3, 3, 1, 5, 5)).every((v) => Math.abs(v - 2.5) < 1e-12)).toBe(true);
    const ramp = Float64Array.from({ length: 16 }, (_, i) => i * 0.37 - 1);
    const same = bicubicResize(ramp, 4, 4, 1, 4, 4);
    same.forEach((v, i) => expect(v).toBeCloseTo(ramp[i], 12));
  });

  // Reference values: torch 1.13 F.interpolate(x[None,None], size, mode='bicubic', align_corners=False).
  const grid = [0.3, -1.2, 2.0, 0.7, 0.1, -0.4, 1.5, -0.8, 0.9];
  it('matches PyTorch on 1×2 → 1×4', () => {
    expect(Array.from(bicubicResize([1, 2], 1, 2, 1, 1, 4))).toEqual([0.89453125, 1.2265625, 1.7734375, 2.10546875]);
  });

  it('matches PyTorch on 3×3 → 5×5 (upsampling, clamped borders)', () => {
    const ref = [
      0.4138944149017334, -0.609897255897522, -1.3248000144958496, 0.7367618680000305, 2.571699619293213, 0.4963267147541046,
      -0.11705092340707779, -0.6307997107505798, 0.27802717685699463, 1.1293755769729614, 0.7576001882553101, 0.5031996369361877,
      0.09999993443489075, -0.24919986724853516, -0.4479999840259552, 1.3696577548980713, 0.5653066635131836, -0.3572002947330475,
      -0.11568274348974228, 0.278480589389801, 1.813267469406128, 0.48347175121307373, -0.886400043964386, 0.10590443015098572,
      1.2082754373550415,
    ];
    bicubicResize(grid, 3, 3, 1, 5, 5).forEach((v, i) => expect(Math.abs(v - ref[i])).toBeLessThan(1e-6));
  });

  it('matches PyTorch on 3×3 → 2×2 (downsampling without antialiasing)', () => {
    const ref = [0.002084360457956791, 0.8495284914970398, 0.86847984790802, 0.21212919056415558];
    bicubicResize(grid, 3, 3, 1, 2, 2).forEach((v, i) => expect(Math.abs(v - ref[i])).toBeLessThan(1e-6));
  });

  it('resizes channels independently', () => {
    const two = grid.flatMap((v) => [v, -2 * v]); // 2 channels, channel-last
    const out = bicubicResize(two, 3, 3, 2, 5, 5);
    const one = bicubicResize(grid, 3, 3, 1, 5, 5);
    one.forEach((v, i) => {
      expect(out[2 * i]).toBeCloseTo(v, 12);
      expect(out[2 * i + 1]).toBeCloseTo(-2 * v, 12);
    });
  });
});
