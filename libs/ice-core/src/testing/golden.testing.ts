import * as path from 'node:path';
import * as fs from 'node:fs';

/**
 * Test support: where ../shared/golden is (beside the repository, in a developer's checkout and
 * in CI's clone alike) and the tolerance check its README prescribes.
 */
export const GOLDEN_DIR = process.env.ICE_GOLDEN_DIR ?? path.resolve(__dirname, '../../../../../shared/golden');

export function goldenPath(file: string): string {
  const p = path.join(GOLDEN_DIR, file);
  if (!fs.existsSync(p)) throw new Error(`golden file ${p} not found (set ICE_GOLDEN_DIR)`);
  return p;
}

/** Throws naming the worst element unless |got − ref| ≤ atol + rtol·|ref| everywhere. */
export function expectAllClose(got: ArrayLike<number>, ref: ArrayLike<number>, atol: number, rtol: number, what = 'tensor'): void {
  if (got.length !== ref.length) throw new Error(`${what}: length ${got.length} vs reference ${ref.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < ref.length; i++) {
    const excess = Math.abs(got[i] - ref[i]) - (atol + rtol * Math.abs(ref[i]));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    throw new Error(`${what}: element ${worst} is ${got[worst]}, reference ${ref[worst]} (atol ${atol}, rtol ${rtol})`);
  }
}

export function flat(nested: unknown): number[] {
  return (nested as unknown[]).flat(Infinity as 1) as number[];
}
