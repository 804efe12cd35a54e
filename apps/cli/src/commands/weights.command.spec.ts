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
    expect(out).toMatch(/architecture: ViT: embed 64, depth 2, heads unknown, mlp 256, patch 8, in_chans 3, grid 4x4 \(17 pos tokens\), classes 10/);
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
