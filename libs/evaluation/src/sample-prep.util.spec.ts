import { blockMean, blockUpsample } from './sample-prep.util';

describe('block pooling', () => {
  it('averages each p×p block (a patch share), and undoes blockUpsample', () => {
    // 4×4 map, blocks of 2: top-left block has 1 of 4 pixels set, bottom-right all 4.
    const map = Uint8Array.from([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1]);
    expect(Array.from(blockMean(map, 4, 2))).toEqual([0.25, 0, 0, 1]);
    const grid = Float32Array.from([0.5, 1, 0, 0.25]);
    expect(Array.from(blockMean(blockUpsample(grid, 2, 3), 6, 3))).toEqual(Array.from(grid));
  });

  it('refuses a map whose side is not a multiple of the block', () => {
    expect(() => blockMean(new Float32Array(25), 5, 2)).toThrow(/5 is not a multiple of the block side 2/);
  });
});
