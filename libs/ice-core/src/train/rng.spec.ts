import { IceError } from '../errors';
import { Rng } from './rng';

function moments(xs: number[]): { mean: number; variance: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
  return { mean, variance };
}

describe('Rng', () => {
  it('is xoshiro128** (reference outputs from state 1, 2, 3, 4)', () => {
    const r = Rng.fromState([1, 2, 3, 4]);
    expect([r.uint32(), r.uint32(), r.uint32(), r.uint32()]).toEqual([11520, 0, 5927040, 70819200]);
  });

  it('gives the same stream for the same seed and a different one for another seed', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const sa = Array.from({ length: 20 }, () => a.uniform());
    expect(Array.from({ length: 20 }, () => b.uniform())).toEqual(sa);
    expect(Array.from({ length: 20 }, () => c.uniform())).not.toEqual(sa);
    // Seeds that differ only above 32 bits still differ.
    expect(new Rng(2 ** 40).uint32()).not.toBe(new Rng(0).uint32());
  });

  it('resumes bit-exactly from a saved state, including a pending Box–Muller normal', () => {
    const r = new Rng(7);
    r.normal(); // leaves the pair's second value pending
    const saved = JSON.parse(JSON.stringify(r.getState())) as number[];
    const draw = (g: Rng): number[] => [g.normal(), g.uniform(), g.int(1000), g.beta(0.8, 0.8), g.gamma(2.5), g.normal()];
    const cont = draw(r);
    expect(draw(Rng.fromState(saved))).toEqual(cont);
    const other = new Rng(1);
    other.setState(saved);
    expect(draw(other)).toEqual(cont);
  });

  it('rejects a malformed state', () => {
    const r = new Rng(1);
    expect(() => r.setState([0, 0, 0, 0])).toThrow(IceError);
    expect(() => r.setState([1, 2, 3])).toThrow(IceError);
    expect(() => r.setState([1, 2, 3, 2 ** 32])).toThrow(IceError);
    expect(() => new Rng(0.5)).toThrow(IceError);
  });

  it('draws uniforms in [0, 1) and unbiased integers in [0, n)', () => {
    const r = new Rng(3);
    const u = Array.from({ length: 20000 }, () => r.uniform());
    expect(Math.min(...u)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...u)).toBeLessThan(1);
    expect(moments(u).mean).toBeCloseTo(0.5, 2);
    const counts = new Array<number>(6).fill(0);
    for (let i = 0; i < 60000; i++) counts[r.int(6)]++;
    for (const c of counts) expect(Math.abs(c - 10000)).toBeLessThan(400);
    expect(r.int(1)).toBe(0);
    expect(() => r.int(0)).toThrow(IceError);
    expect(() => r.int(2.5)).toThrow(IceError);
  });

  it('draws standard normals, gammas and betas with the right moments', () => {
    const r = new Rng(11);
    const n = 40000;
    const z = moments(Array.from({ length: n }, () => r.normal()));
    expect(Math.abs(z.mean)).toBeLessThan(0.02);
    expect(Math.abs(z.variance - 1)).toBeLessThan(0.03);
    for (const a of [0.5, 1, 2.5]) {
      const g = moments(Array.from({ length: n }, () => r.gamma(a)));
      expect(Math.abs(g.mean - a) / a).toBeLessThan(0.03);
      expect(Math.abs(g.variance - a) / a).toBeLessThan(0.06);
    }
    for (const [a, b] of [
      [0.8, 0.8],
      [1, 1],
      [2, 5],
    ]) {
      const xs = Array.from({ length: n }, () => r.beta(a, b));
      expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...xs)).toBeLessThanOrEqual(1);
      const m = moments(xs);
      expect(Math.abs(m.mean - a / (a + b))).toBeLessThan(0.01);
      expect(Math.abs(m.variance - (a * b) / ((a + b) ** 2 * (a + b + 1)))).toBeLessThan(0.004);
    }
    expect(() => r.gamma(0)).toThrow(IceError);
  });

  it('shuffles in place into a permutation, deterministically', () => {
    const a = new Rng(5).shuffle(Array.from({ length: 50 }, (_, i) => i));
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(a).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(new Rng(5).permutation(50)).toEqual(a);
    const typed = new Rng(5).shuffle(Int32Array.from({ length: 50 }, (_, i) => i));
    expect(Array.from(typed)).toEqual(a);
  });

  it('forks reproducible child streams', () => {
    const a = new Rng(9).fork();
    const b = new Rng(9).fork();
    expect(a.getState()).toEqual(b.getState());
    expect(a.uint32()).toBe(b.uint32());
  });
});
