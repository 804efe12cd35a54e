import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend/tf-backend.service';
import { IceError } from '../errors';
import { expectAllClose, goldenPath } from '../testing/golden.testing';
import { readSafetensors } from '../weights/safetensors';
import { StateDict } from '../weights/state-dict';
import { IceHeadKind, vitConfig } from './vit.config';
import { IceVit } from './vit.model';

const ATOL = 1e-4;
const RTOL = 1e-4;

describe('IceVit against golden-micro', () => {
  let io: StateDict;
  beforeAll(async () => {
    await initBackend('wasm');
    io = readSafetensors(goldenPath('golden-micro-io.safetensors')).tensors;
  });

  const ref = (name: string): Float32Array => io.get(name)!.data as Float32Array;

  function load(file: string, head: IceHeadKind): IceVit {
    const m = IceVit.create(vitConfig('golden-micro', { iceHead: head }));
    m.loadStateDict(readSafetensors(goldenPath(file)).tensors);
    return m;
  }

  it.each([
    ['golden-micro.safetensors', 'official', 'z_official'],
    ['golden-micro-icef.safetensors', 'icef', 'z_icef'],
    ['golden-micro-paper.safetensors', 'paper', 'z_paper'],
  ] as const)('%s: logits, pre-norm tokens, attention and %s head match', (file, head, zName) => {
    const m = load(file, head);
    const x = tf.tensor4d(ref('input'), [2, 3, 32, 32]);
    const out = m.forward(x, { returnAttention: true });
    expectAllClose(out.clsLogits.dataSync(), ref('cls_logits'), ATOL, RTOL, 'cls_logits');
    expectAllClose(out.prenormPatchTokens.dataSync(), ref('prenorm_patch_tokens'), ATOL, RTOL, 'prenorm_patch_tokens');
    out.attention!.forEach((a, i) => expectAllClose(a.dataSync(), ref(`attn_probs.${i}`), ATOL, RTOL, `attn_probs.${i}`));
    expectAllClose(out.zIce!.dataSync(), ref(zName), ATOL, RTOL, zName);
    // The predicted classes and the ICE foreground counts stated in the README.
    expect(Array.from(tf.argMax(out.clsLogits, -1).dataSync())).toEqual([1, 7]);
    if (head === 'official') {
      const fg = tf.sum(tf.notEqual(tf.argMax(out.zIce!, -1), 10), 1).dataSync();
      expect(Array.from(fg)).toEqual([13, 15]);
    }
    tf.dispose([x, out.clsLogits, out.prenormPatchTokens, out.zIce!, ...out.attention!]);
    m.dispose();
  });

  it('round-trips its weights to a PyTorch-layout state dict', async () => {
    const sd = readSafetensors(goldenPath('golden-micro.safetensors')).tensors;
    const m = IceVit.create(vitConfig('golden-micro'));
    m.loadStateDict(sd);
    const back = await m.stateDict();
    for (const [name, rec] of sd) {
      expect(back.get(name)!.shape).toEqual(rec.shape);
      expect(
        Buffer.from((back.get(name)!.data as Float32Array).buffer).equals(
          Buffer.from((rec.data as Float32Array).buffer, rec.data.byteOffset, rec.data.byteLength),
        ),
      ).toBe(true);
    }
    expect(m.parameterCount()).toBe([...sd.values()].reduce((n, r) => n + r.data.length, 0));
    m.dispose();
  });

  it('names every missing, unexpected and mis-shaped key', () => {
    const sd = new Map(readSafetensors(goldenPath('golden-micro.safetensors')).tensors);
    sd.delete('blocks.1.mlp.fc2.bias');
    sd.set('blocks.7.attn.qkv.weight', { dtype: 'F32', shape: [1], data: new Float32Array(1) });
    const fc1 = sd.get('blocks.0.mlp.fc1.weight')!;
    sd.set('blocks.0.mlp.fc1.weight', { ...fc1, shape: [64, 256] }); // transposed layout
    const m = IceVit.create(vitConfig('golden-micro'));
    let err: unknown;
    try {
      m.loadStateDict(sd);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IceError);
    const e = err as IceError;
    expect(e.code).toBe('WEIGHTS_MISMATCH');
    expect(e.message).toContain('missing keys (1): blocks.1.mlp.fc2.bias');
    expect(e.message).toContain('unexpected keys (1): blocks.7.attn.qkv.weight');
    expect(e.message).toContain('blocks.0.mlp.fc1.weight: checkpoint [64,256] vs model [256,64]');
    m.dispose();
  });

  it('refuses a backbone-only checkpoint for an ICE model unless the head is allowed to be missing', () => {
    const sd = new Map(readSafetensors(goldenPath('golden-micro.safetensors')).tensors);
    sd.delete('mlp_head.weight');
    const m = IceVit.create(vitConfig('golden-micro'));
    expect(() => m.loadStateDict(sd)).toThrow(/missing keys \(1\): mlp_head.weight/);
    const report = m.loadStateDict(sd, { allowMissing: ['mlp_head*'] });
    expect(report.keptInitialised).toEqual(['mlp_head.weight']);
    m.dispose();
  });

  it('resamples the position embedding bicubically for another grid', () => {
    const sd = readSafetensors(goldenPath('golden-micro.safetensors')).tensors;
    const m = IceVit.create(vitConfig('golden-micro', { imgSize: 48 })); // 6×6 grid from 4×4
    const report = m.loadStateDict(sd);
    expect(report.posEmbedResampled).toEqual({ from: 4, to: 6 });
    const pe = m.params.get('pos_embed')!;
    expect(pe.shape).toEqual([1, 37, 64]);
    // The CLS position is copied unchanged.
    expectAllClose(pe.dataSync().slice(0, 64), (sd.get('pos_embed')!.data as Float32Array).slice(0, 64), 0, 0, 'cls pos');
    m.dispose();
  });

  it('rejects an input of the wrong shape with a clear error', () => {
    const m = IceVit.create(vitConfig('golden-micro'));
    const x: tf.Tensor4D = tf.zeros([1, 3, 30, 30]);
    expect(() => m.forward(x)).toThrow(/NCHW \[B, 3, 32, 32\], got \[1, 3, 30, 30\]/);
    x.dispose();
    m.dispose();
  });

  it('leaks no tensors across forward passes', () => {
    const m = IceVit.create(vitConfig('golden-micro'));
    const x: tf.Tensor4D = tf.randomNormal([2, 3, 32, 32]);
    const step = (): void => tf.tidy(() => void m.forward(x, { returnAttention: true }));
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    m.dispose();
  });
});

describe('IceVit.create', () => {
  it('initialises deterministically from the seed, seed 0 included', async () => {
    await initBackend('wasm');
    const [a, b, c] = [0, 0, 1].map((s) => IceVit.create(vitConfig('golden-micro'), s));
    for (const name of ['cls_token', 'pos_embed', 'patch_embed.proj.weight', 'mlp_head.weight']) {
      expect(Array.from(a.params.get(name)!.dataSync())).toEqual(Array.from(b.params.get(name)!.dataSync()));
      expect(Array.from(a.params.get(name)!.dataSync())).not.toEqual(Array.from(c.params.get(name)!.dataSync()));
    }
    [a, b, c].forEach((m) => m.dispose());
  });
});
