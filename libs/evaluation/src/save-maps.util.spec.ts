import { displayMap, jet } from './save-maps.util';

describe('the saved maps', () => {
  const g = 8;
  const size = 64;
  const at = (m: Float32Array, y: number, x: number): number => m[y * size + x];

  it("shows ICE's mask in the baselines' [0, 1] jet scale, upsampled bilinearly from the 8×8 grid", () => {
    // Left half of the grid foreground.
    const grid = Float32Array.from({ length: g * g }, (_, i) => (i % g < g / 2 ? 1 : 0));
    const ice = displayMap({ method: 'ice', g, grid, targetClass: 0 }, size);
    expect(ice).toHaveLength(size * size);
    expect(at(ice, 10, 2)).toBeCloseTo(1, 6);
    expect(at(ice, 10, 60)).toBeCloseTo(0, 6);
    // Bilinear, not blocks: the boundary between the halves passes through intermediate values.
    const ramp = Array.from({ length: 16 }, (_, i) => at(ice, 30, 24 + i));
    expect(ramp.some((v) => v > 0.05 && v < 0.95)).toBe(true);
    for (let i = 1; i < ramp.length; i++) expect(ramp[i]).toBeLessThanOrEqual(ramp[i - 1] + 1e-6);
    // The baselines in the same scale: min-maxed to [0, 1].
    const attn = displayMap({ method: 'rollout', g, grid: grid.map((v) => 0.2 + 0.1 * v), targetClass: 0 }, size);
    expect(Math.max(...attn)).toBeCloseTo(1, 5);
    expect(Math.min(...attn)).toBeCloseTo(0, 5);
    expect(at(attn, 10, 2)).toBeCloseTo(at(ice, 10, 2), 5);
  });

  it('keeps an all-foreground ICE map red and an empty one blue (a collapse stays visible)', () => {
    const full = displayMap({ method: 'ice', g, grid: new Float32Array(g * g).fill(1), targetClass: 0 }, size);
    const empty = displayMap({ method: 'ice', g, grid: new Float32Array(g * g), targetClass: 0 }, size);
    expect(Math.min(...full)).toBeCloseTo(1, 6);
    expect(Math.max(...empty)).toBeCloseTo(0, 6);
    expect(jet(full[0])).not.toEqual(jet(empty[0]));
  });
});
