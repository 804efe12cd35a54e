import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend/tf-backend.service';
import { IceError } from '../errors';
import { expectAllClose, goldenPath } from '../testing/golden.testing';
import { readSafetensors } from '../weights/safetensors';
import {
  defaultPruneLocations,
  iceMargin,
  keptTokenCount,
  type PruneOptions,
  prunedTokenCounts,
  resolvePruneOptions,
} from './token-pruning';
import { vitConfig } from './vit.config';
import { type ForwardOptions, IceVit } from './vit.model';

/** tools/make_lrp_golden.py: EViT's and ICE's pruning in float64 PyTorch (EViT's checked against evit.py). */
const FIXTURE = path.join(__dirname, '../testing/fixtures/golden-micro-lrp.safetensors');

/** Runs a forward pass in a tidy scope; returns logits, ICE logits and the pruning trace (checking no tensor is left behind). */
function run(model: IceVit, x: tf.Tensor4D, opts: ForwardOptions) {
  const before = tf.memory().numTensors;
  let pruning: ReturnType<IceVit['forward']>['pruning'];
  const [logits, z] = tf.tidy(() => {
    const out = model.forward(x, opts);
    pruning = out.pruning;
    return [out.clsLogits.dataSync<'float32'>(), out.zIce?.dataSync<'float32'>(), out.zIce?.shape] as const;
  });
  expect(tf.memory().numTensors).toBe(before);
  return { logits, z, pruning };
}

describe('token pruning on golden-micro against the PyTorch golden', () => {
  let model: IceVit;
  let ref: ReturnType<typeof readSafetensors>['tensors'];
  let x: tf.Tensor4D;
  beforeAll(async () => {
    await initBackend('wasm');
    model = IceVit.create(vitConfig('golden-micro'));
    model.loadStateDict(readSafetensors(goldenPath('golden-micro.safetensors')).tensors);
    ref = readSafetensors(FIXTURE).tensors;
    const io = readSafetensors(goldenPath('golden-micro-io.safetensors')).tensors;
    x = tf.tensor4d(io.get('input')!.data as Float32Array, [2, 3, 32, 32]);
  });
  afterAll(() => {
    x.dispose();
    model.dispose();
  });

  it.each([
    ['evit', { mode: 'evit', keepRate: 0.5, locations: [0, 1] }, [9, 6]],
    ['ice', { mode: 'ice', keepRate: 0.5, locations: [0, 1] }, [8, 4]],
    ['ice_fused', { mode: 'ice', keepRate: 0.5, locations: [0, 1], fuse: true }, [9, 6]],
  ] as const)('%s: logits, surviving tokens and the ICE logits on them', (name, prune, counts) => {
    const r = run(model, x, { prune: prune });
    expect(r.pruning!.counts).toEqual(counts);
    expect(Array.from(ref.get(`prune.${name}.counts`)!.data as Int32Array)).toEqual(counts);
    const index = ref.get(`prune.${name}.index`)!.data as Int32Array;
    const n = counts[1];
    for (let b = 0; b < 2; b++) expect(Array.from(r.pruning!.tokenIndex[b])).toEqual(Array.from(index.subarray(b * n, (b + 1) * n)));
    expectAllClose(r.logits, ref.get(`prune.${name}.logits`)!.data as Float32Array, 1e-4, 1e-4, `${name} logits`);
    expectAllClose(r.z!, ref.get(`prune.${name}.z`)!.data as Float32Array, 1e-4, 1e-4, `${name} z`);
  });

  it.each([
    ['golden-micro.safetensors', 'official'],
    ['golden-micro-icef.safetensors', 'icef'],
    ['golden-micro-paper.safetensors', 'paper'],
  ] as const)("ICE's score on %s (%s head): max class logit − background logit of its head", (file, head) => {
    const m = IceVit.create(vitConfig('golden-micro', { iceHead: head }));
    m.loadStateDict(readSafetensors(goldenPath(file)).tensors);
    const before = tf.memory().numTensors;
    const [got, want] = tf.tidy(() => {
      const tokens = tf.randomNormal<tf.Rank.R3>([3, 7, 64], 0, 1, 'float32', 9);
      const z = m.iceHead(tokens).arraySync();
      const ref = z.map((row) => row.map((zs) => Math.max(...zs.slice(0, 10)) - zs[10]));
      return [iceMargin(m, tokens).arraySync(), ref];
    });
    expect(tf.memory().numTensors).toBe(before);
    expectAllClose(got.flat(), want.flat(), 1e-5, 1e-5, `${head} margin`);
    m.dispose();
  });

  it('keep rate 1 reproduces the unpruned logits exactly (both modes, every block a location)', () => {
    const plain = run(model, x, {});
    for (const mode of ['ice', 'evit'] as const) {
      const r = run(model, x, { prune: { mode, keepRate: 1, locations: [0, 1] } });
      expect(Array.from(r.logits)).toEqual(Array.from(plain.logits));
      expect(Array.from(r.z!)).toEqual(Array.from(plain.z!));
      expect(r.pruning!.counts).toEqual([16, 16]);
    }
  });

  it('pruning in the last block changes no logit (why the defaults never prune there)', () => {
    const plain = run(model, x, {});
    const last = run(model, x, { prune: { mode: 'evit', keepRate: 0.5, locations: [1] } });
    expect(last.pruning!.counts).toEqual([16, 9]);
    expectAllClose(last.logits, plain.logits, 1e-6, 1e-6, 'logits');
    const first = run(model, x, { prune: { mode: 'evit', keepRate: 0.5, locations: [0] } });
    expect(Math.max(...Array.from(first.logits, (v, i) => Math.abs(v - plain.logits[i])))).toBeGreaterThan(1e-3);
  });

  it('the order of the kept tokens (index or score) leaves the logits unchanged', () => {
    for (const mode of ['ice', 'evit'] as const) {
      const byIndex = run(model, x, { prune: { mode, keepRate: 0.5, locations: [0, 1], order: 'index' } });
      const byScore = run(model, x, { prune: { mode, keepRate: 0.5, locations: [0, 1], order: 'score' } });
      expectAllClose(byScore.logits, byIndex.logits, 1e-5, 1e-5, `${mode} logits`);
      for (let b = 0; b < 2; b++) {
        const a = Array.from(byIndex.pruning!.tokenIndex[b]);
        const s = Array.from(byScore.pruning!.tokenIndex[b]);
        expect([...s].sort((u, v) => u - v)).toEqual([...a].sort((u, v) => u - v));
        expect(s).not.toEqual(a); // really reordered
      }
    }
  });

  it('a batch gives each image the tokens and logits it gets alone', () => {
    const batch = tf.tidy(() => tf.concat([x, tf.randomNormal<tf.Rank.R4>([3, 3, 32, 32], 0, 1, 'float32', 3)], 0));
    for (const prune of [
      { mode: 'evit', keepRate: 0.5, locations: [0, 1] },
      { mode: 'ice', keepRate: 0.7 },
    ] as PruneOptions[]) {
      const all = run(model, batch, { prune });
      for (let b = 0; b < 5; b++) {
        const image = tf.slice(batch, [b, 0, 0, 0], [1, -1, -1, -1]);
        const one = run(model, image, { prune });
        expect(Array.from(all.pruning!.tokenIndex[b])).toEqual(Array.from(one.pruning!.tokenIndex[0]));
        expectAllClose(all.logits.subarray(b * 10, (b + 1) * 10), one.logits, 1e-5, 1e-5, `${prune.mode}[${b}]`);
        image.dispose();
      }
    }
    batch.dispose();
  });

  it('rejects bad options with a clear error and leaks nothing', () => {
    const before = tf.memory().numTensors;
    const bad: [PruneOptions, RegExp][] = [
      [{ mode: 'evit', keepRate: 0 }, /keepRate must be in \(0, 1\], got 0/],
      [{ mode: 'evit', keepRate: 1.5 }, /keepRate must be in \(0, 1\]/],
      [{ mode: 'evit', keepRate: 0.5, locations: [2] }, /prune location 2 is not a block index 0\.\.1/],
      [{ mode: 'evit', keepRate: 0.5, locations: [1, 1] }, /named twice/],
      [{ mode: 'topk' as never, keepRate: 0.5 }, /prune mode must be one of ice, evit/],
    ];
    for (const [prune, msg] of bad) expect(() => tf.tidy(() => model.forward(x, { prune }).clsLogits)).toThrow(msg);
    expect(() => tf.tidy(() => model.forward(x, { prune: { mode: 'evit', keepRate: 0.5 }, training: true }).clsLogits)).toThrow(
      /inference mode/,
    );
    const plain = IceVit.create(vitConfig('golden-micro', { iceHead: 'none' }));
    expect(() => tf.tidy(() => plain.forward(x, { prune: { mode: 'ice', keepRate: 0.5 } }).clsLogits)).toThrow(IceError);
    expect(() => tf.tidy(() => plain.forward(x, { prune: { mode: 'ice', keepRate: 0.5 } }).clsLogits)).toThrow(/has none/);
    plain.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('token counts at 224² / patch 16 (196 patches), as EViT (../shared/notes §4)', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it.each([
    [0.7, true, [139, 99, 71]],
    [0.7, false, [138, 97, 68]],
    [0.5, true, [99, 51, 27]],
    [0.5, false, [98, 49, 25]],
  ] as const)('ρ %s, fused %s: non-CLS tokens after blocks 4, 7, 10 are %j', (keepRate, fuse, after) => {
    // DeiT's 12 blocks and 196 patches; a narrow width keeps the test fast (counts do not depend on it).
    const config = vitConfig('deit_tiny_patch16_224', { embedDim: 24, numHeads: 2, numClasses: 10 });
    const model = IceVit.create(config, 1);
    const x = tf.randomNormal<tf.Rank.R4>([1, 3, 224, 224], 0, 1, 'float32', 2);
    try {
      for (const mode of ['evit', 'ice'] as const) {
        const r = run(model, x, { prune: { mode, keepRate, fuse } });
        expect([3, 6, 9].map((i) => r.pruning!.counts[i])).toEqual(after);
        expect(r.pruning!.counts).toEqual(prunedTokenCounts(196, 12, resolvePruneOptions({ mode, keepRate, fuse }, config)));
        const last = r.pruning!.tokenIndex[0];
        expect(last.length).toBe(after[2]);
        // The newest fused token comes last; an earlier one may survive as a kept token.
        expect(last[last.length - 1] === -1).toBe(fuse);
        expect(Array.from(last).some((j) => j === -1)).toBe(fuse);
      }
    } finally {
      x.dispose();
      model.dispose();
    }
  });

  it('default locations: EViT blocks 4, 7, 10 at depth 12; never the last block, block 0 only at depth 2; k as Python rounds it', () => {
    expect(defaultPruneLocations(12)).toEqual([3, 6, 9]);
    expect(defaultPruneLocations(24)).toEqual([6, 12, 18]);
    expect(defaultPruneLocations(4)).toEqual([1, 2]);
    expect(defaultPruneLocations(3)).toEqual([1]);
    expect(defaultPruneLocations(2)).toEqual([0]);
    expect(defaultPruneLocations(1)).toEqual([]);
    expect(() => resolvePruneOptions({ mode: 'evit', keepRate: 0.5 }, vitConfig('golden-micro', { depth: 1 }))).toThrow(/no pruning block/);
    expect(resolvePruneOptions({ mode: 'evit', keepRate: 0.5 }, vitConfig('golden-micro')).fuse).toBe(true);
    expect(resolvePruneOptions({ mode: 'ice', keepRate: 0.5 }, vitConfig('golden-micro')).fuse).toBe(false);
    expect(keptTokenCount(196, 0.7)).toBe(138);
    expect(keptTokenCount(100, 0.07)).toBe(8); // 0.07·100 = 7.000000000000001 in double precision: Python's math.ceil gives 8 too
  });
});
