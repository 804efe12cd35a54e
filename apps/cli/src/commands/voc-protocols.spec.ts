import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { IceVit, vitConfig, writeSafetensors } from '@ice/core';
import type { EvaluationResult } from '@ice/evaluation';

/**
 * The VOC protocols at the benchmark's sizes, on a 300-image VOC-layout set that `ice data export`
 * writes: every image is read, resized and scored by jaccard and corloc (the run that used to take
 * hours asked a 32² model for 512² inputs). Speed is measured by `npm run bench:eval`, not here.
 * The commands run as the user runs them, as `ice` processes (jest's module sandbox would also slow
 * the pixel loops several-fold).
 */
const ICE = path.resolve(__dirname, '..', '..', '..', '..', 'bin', 'ice.js');

function ice(args: string[]): string {
  return execFileSync(process.execPath, [ICE, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
describe('VOC protocols on an exported 300-image set', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-voc-protocols-'));
  const root = path.join(tmp, 'voc');
  const weights = path.join(tmp, 'ice.safetensors');

  beforeAll(async () => {
    ice(['data', 'export', 'digits', '--format', 'voc', '--out', root, '--split', 'test', '--limit', '300', '--size', '96']);
    const model = IceVit.create(vitConfig('digits-micro', { iceHead: 'official' }), 3);
    writeSafetensors(weights, await model.stateDict());
    model.dispose();
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const evaluate = (protocol: string): EvaluationResult =>
    JSON.parse(
      ice(
        ['eval', protocol, '--json', '--format', 'voc', '--root', root, '--split', 'test'].concat([
          '--weights',
          weights,
          '--model',
          'digits-micro',
          '--method',
          'ice,rollout,gradcam',
        ]),
      ),
    ) as EvaluationResult;

  it('jaccard scores all 300 images at the scaled input size (72² for a 32² model), every value in [0, 1]', () => {
    const r = evaluate('jaccard');
    expect(r.model.imgSize).toBe(72);
    expect(r.rows.map((row) => row.method)).toEqual(['ice', 'rollout', 'gradcam']);
    for (const row of r.rows) {
      expect(row.images).toBe(300);
      expect(row.metrics.skipped).toBe(0);
      for (const [k, v] of Object.entries(row.metrics)) {
        if (k === 'skipped' || v === null) continue;
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThanOrEqual(1);
      }
    }
    expect(r.rows[0].metrics.jaccard).not.toBeNull();
    expect(r.rows[1].metrics['jaccard@0.9']).not.toBeNull();
  });

  it('corloc scores all 300 images: hits and misses add up', () => {
    const r = evaluate('corloc');
    for (const row of r.rows) {
      expect(row.images).toBe(300);
      const { corloc, hits, skipped } = row.metrics as Record<string, number>;
      expect(skipped).toBe(0);
      expect(corloc).toBeCloseTo(hits / 300, 12);
    }
  });
});
