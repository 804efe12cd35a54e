import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IceError, readSafetensors, writeSafetensors } from '@ice/core';
import { runForward } from './forward.command';

// Golden files sit beside the repository (../shared/golden); see libs/ice-core/src/testing.
const GOLDEN = process.env.ICE_GOLDEN_DIR ?? path.resolve(__dirname, '../../../../../shared/golden');

function within(got: Float32Array, ref: Float32Array, atol: number, rtol: number): boolean {
  return got.length === ref.length && got.every((v, i) => Math.abs(v - ref[i]) <= atol + rtol * Math.abs(ref[i]));
}

describe('ice forward', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-forward-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const io = readSafetensors(path.join(GOLDEN, 'golden-micro-io.safetensors')).tensors;
  const ref = (n: string): Float32Array => io.get(n)!.data as Float32Array;

  it.each([
    ['golden-micro.pth', 'z_official'],
    ['golden-micro.safetensors', 'z_official'],
    ['golden-micro-icef.safetensors', 'z_icef'],
    ['golden-micro-paper.safetensors', 'z_paper'],
  ])('%s reproduces the golden outputs, %s as z_ice', async (file, zName) => {
    const out = path.join(tmp, `${file}.out.safetensors`);
    // The preset says head "official": the checkpoint's own head kind must win.
    const names = await runForward(
      { weights: path.join(GOLDEN, file), model: 'golden-micro', input: path.join(GOLDEN, 'golden-micro-io.safetensors'), out },
      () => undefined,
    );
    expect(names).toEqual(['cls_logits', 'prenorm_patch_tokens', 'attn_probs.0', 'attn_probs.1', 'z_ice']);
    const got = readSafetensors(out).tensors;
    for (const [n, r] of [
      ['cls_logits', 'cls_logits'],
      ['prenorm_patch_tokens', 'prenorm_patch_tokens'],
      ['attn_probs.0', 'attn_probs.0'],
      ['attn_probs.1', 'attn_probs.1'],
      ['z_ice', zName],
    ]) {
      expect(within(got.get(n)!.data as Float32Array, ref(r), 1e-4, 1e-4)).toBe(true);
    }
  });

  it('names the problem when the input tensor is missing or mis-shaped', async () => {
    const bad = path.join(tmp, 'bad.safetensors');
    writeSafetensors(bad, new Map([['image', { dtype: 'F32', shape: [1, 3, 32, 32], data: new Float32Array(3072) }]]));
    await expect(
      runForward(
        { weights: path.join(GOLDEN, 'golden-micro.pth'), model: 'golden-micro', input: bad, out: path.join(tmp, 'x.safetensors') },
        () => undefined,
      ),
    ).rejects.toThrow(/has no tensor named "input" \(found: image\)/);
    writeSafetensors(bad, new Map([['input', { dtype: 'F32', shape: [3, 32, 32], data: new Float32Array(3072) }]]));
    await expect(
      runForward(
        { weights: path.join(GOLDEN, 'golden-micro.pth'), model: 'golden-micro', input: bad, out: path.join(tmp, 'x.safetensors') },
        () => undefined,
      ),
    ).rejects.toThrow(IceError);
  });

  it('rejects an unknown preset with the list of presets', async () => {
    await expect(
      runForward(
        {
          weights: path.join(GOLDEN, 'golden-micro.pth'),
          model: 'deit_huge',
          input: path.join(GOLDEN, 'golden-micro-io.safetensors'),
          out: path.join(tmp, 'y.safetensors'),
        },
        () => undefined,
      ),
    ).rejects.toThrow(/neither a preset \(deit_tiny_patch16_224/);
  });
});
