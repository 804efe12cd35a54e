import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IceError } from '@ice/core';
import { parseRunConfig } from './run-config';
import { executeRun, FINAL_CHECKPOINT, LAST_CHECKPOINT } from './run-executor';

describe('executeRun on digits', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-run-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const config = parseRunConfig({ steps: 4, checkpointEvery: 2, data: { batchSize: 4, evalLimit: 8 }, seed: 3 });

  it('trains, checkpoints, reports progress and scores the run', async () => {
    const progress: number[] = [];
    const dir = path.join(tmp, 'a');
    const r = await executeRun(config, { runDir: dir, progressIntervalMs: 0, onProgress: (p) => void progress.push(p.step) });
    expect(r.steps).toBe(4);
    expect(r.resumedFromStep).toBeNull();
    expect(progress).toEqual([1, 2, 3, 4]);
    expect(fs.existsSync(path.join(dir, FINAL_CHECKPOINT))).toBe(true);
    expect(r.metrics.eval_images).toBe(8);
    expect(r.metrics.top1).toBeGreaterThanOrEqual(0);
    expect(r.metrics.fg_fraction).toBeGreaterThanOrEqual(0);
  });

  it('resumes a killed run from its last checkpoint to the same final weights', async () => {
    const dir = path.join(tmp, 'b');
    const ac = new AbortController();
    // Stop after step 2 (a checkpoint is written at step 2), as a killed worker would.
    await expect(
      executeRun(config, { runDir: dir, progressIntervalMs: 0, signal: ac.signal, onProgress: (p) => void (p.step === 2 && ac.abort()) }),
    ).rejects.toThrow(IceError);
    const resumed = await executeRun(config, { runDir: dir });
    expect(resumed.resumedFromStep).toBe(2);
    const a = fs.readFileSync(path.join(tmp, 'a', FINAL_CHECKPOINT));
    const b = fs.readFileSync(path.join(dir, FINAL_CHECKPOINT));
    expect(b.equals(a)).toBe(true);
  });

  it('is cancelled promptly with a CANCELLED error', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(executeRun(config, { runDir: path.join(tmp, 'c'), signal: ac.signal })).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('refuses to resume a checkpoint of another configuration', async () => {
    const dir = path.join(tmp, 'a');
    expect(fs.existsSync(path.join(dir, LAST_CHECKPOINT))).toBe(true);
    await expect(executeRun({ ...config, seed: 4 }, { runDir: dir })).rejects.toThrow(/another configuration/);
  });
});
