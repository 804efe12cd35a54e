import * as path from 'node:path';
import { IceError, WeightsReport } from '@ice/core';
import { buildProgram } from '../main';

const GOLDEN = path.resolve(__dirname, '../../../../../shared/golden');

async function run(...args: string[]): Promise<string> {
  const chunks: string[] = [];
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
    return true;
  });
  try {
    await buildProgram().parseAsync(['node', 'ice', ...args]);
  } finally {
    spy.mockRestore();
  }
  return chunks.join('');
}

describe('ice weights inspect', () => {
  it('prints a readable summary of a PyTorch checkpoint', async () => {
    const out = await run('weights', 'inspect', path.join(GOLDEN, 'golden-micro.pth'));
    expect(out).toMatch(/golden-micro\.pth: pth \(state dict under 'model'\), 33 tensors, 114,954 parameters/);
    expect(out).toMatch(
      /architecture: ViT: embed 64, depth 2, heads unknown, mlp 256, patch 8, in_chans 3, grid 4x4 \(17 pos tokens\), classes 10/,
    );
    expect(out).toMatch(/ICE head: official, 11 outputs \(background index 10\)/);
    expect(out).toMatch(/^ {2}patch_embed\.proj\.weight +F32 +\[64, 3, 8, 8\] +12,288$/m);
  });

  it('prints the JSON report with --json', async () => {
    const out = await run('weights', 'inspect', path.join(GOLDEN, 'golden-micro-icef.safetensors'), '--json');
    const r = JSON.parse(out) as WeightsReport;
    expect(r.format).toBe('safetensors');
    expect(r.totalParams).toBe(133_706);
    expect(r.recognized?.iceHead.kind).toBe('icef');
    expect(r.recognized?.heads).toBe(2);
  });

  it('surfaces a missing file as IceError FILE_NOT_FOUND', async () => {
    await expect(run('weights', 'inspect', '/nonexistent/w.pth')).rejects.toBeInstanceOf(IceError);
    await expect(run('weights', 'inspect', '/nonexistent/w.pth')).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
  });
});

describe('ice weights export', () => {
  it('keeps the model weights of a training checkpoint and drops the optimizer state', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const { IceTrainer, IceVit, TRAIN_PRESETS, initBackend, readSafetensors, saveCheckpoint, vitConfig } = await import('@ice/core');
    await initBackend('wasm');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-export-'));
    const model = IceVit.create(vitConfig('golden-micro'));
    const trainer = new IceTrainer(model, TRAIN_PRESETS.iceReleased);
    const ckpt = path.join(dir, 'ckpt.safetensors');
    await saveCheckpoint(ckpt, trainer);
    const out = path.join(dir, 'weights.safetensors');
    const printed = JSON.parse(await run('weights', 'export', ckpt, '--out', out)) as { tensors: number; dropped: number };
    const w = readSafetensors(out);
    expect(printed.tensors).toBe(model.specs.length);
    expect([...w.tensors.keys()].some((k) => k.startsWith('optimizer.'))).toBe(false);
    expect(w.metadata.ice_config).toBe(JSON.stringify(model.config));
    expect(w.metadata.ice_trainer_state).toBeUndefined();
    trainer.dispose();
    model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
