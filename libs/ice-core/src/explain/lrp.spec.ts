import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend/tf-backend.service';
import { vitConfig } from '../model/vit.config';
import { IceVit } from '../model/vit.model';
import { expectAllClose, goldenPath } from '../testing/golden.testing';
import { readSafetensors } from '../weights/safetensors';
import { disposeExplanation, explainBatch, type LrpExplanation, partialLrp, transformerAttribution } from './explainers';
import { disposeRecord, recordForward } from './lrp';

/**
 * The LRP methods against tools/make_lrp_golden.py: a float64 PyTorch formulation of Chefer et al.'s
 * rules (z-rules through autograd, as the reference evaluates them), itself checked against the
 * reference classes (ViT_LRP / ViT_orig_LRP) to float32 rounding. Each image on its own; targets
 * the CLS head's top-1 ([1, 7]) and a given class 4.
 *
 * Tolerance: float32 against float64, through one relevance pass of ~20 divisions by sums; maps are
 * compared with atol = 3e-5·max|ref| and rtol 3e-4 (measured: ≤ 5e-5 relative; many entries are near 0).
 */
const FIXTURE = path.join(__dirname, '../testing/fixtures/golden-micro-lrp.safetensors');
const RTOL = 3e-4;

describe('LRP explainers against the PyTorch golden (golden-micro)', () => {
  let model: IceVit;
  let ref: ReturnType<typeof readSafetensors>['tensors'];
  let x: tf.Tensor4D;
  const images: tf.Tensor4D[] = [];

  beforeAll(async () => {
    await initBackend('wasm');
    model = IceVit.create(vitConfig('golden-micro'));
    model.loadStateDict(readSafetensors(goldenPath('golden-micro.safetensors')).tensors);
    ref = readSafetensors(FIXTURE).tensors;
    const io = readSafetensors(goldenPath('golden-micro-io.safetensors')).tensors;
    x = tf.tensor4d(io.get('input')!.data as Float32Array, [2, 3, 32, 32]);
    for (let b = 0; b < 2; b++) images.push(tf.slice(x, [b, 0, 0, 0], [1, 3, 32, 32]));
  });
  afterAll(() => {
    tf.dispose([x, ...images]);
    model.dispose();
  });

  /** Fixture tensor `name`, the slice of image b (leading axis). */
  const slice = (name: string, b: number): Float32Array => {
    const rec = ref.get(name);
    if (!rec) throw new Error(`fixture has no ${name}`);
    const per = rec.shape.slice(1).reduce((p, d) => p * d, 1);
    return (rec.data as Float32Array).subarray(b * per, (b + 1) * per);
  };
  const close = (got: ArrayLike<number>, want: Float32Array, what: string): void => {
    const scale = Math.max(...Array.from(want, Math.abs));
    expectAllClose(got, want, 3e-5 * scale, RTOL, what);
  };
  const noLeak = (fn: () => void): void => {
    const before = tf.memory().numTensors;
    fn();
    expect(tf.memory().numTensors).toBe(before);
  };

  it("the recorded forward pass is the model's (logits, attention)", () => {
    noLeak(() => {
      const [logitsRef, ...attnRef] = tf.tidy(() => {
        const out = model.forward(x, { returnAttention: true });
        return [out.clsLogits, ...out.attention!];
      });
      const rec = recordForward(model, x, false, false, (o) => ({ classes: [0, 0], logits: Array.from(o.clsLogits.dataSync()) }));
      const logits = rec.targets.logits;
      expectAllClose(logits, logitsRef.dataSync(), 1e-5, 1e-5, 'logits');
      rec.blocks.forEach((r, l) => expectAllClose(r.attn.dataSync(), attnRef[l].dataSync(), 1e-6, 1e-5, `attn.${l}`));
      disposeRecord(rec);
      tf.dispose([logitsRef, ...attnRef]);
    });
  });

  it.each([0, 1])('transformer attribution from block %i, with R_A of every block (top-1 and class 4)', (s) => {
    for (let b = 0; b < 2; b++) {
      noLeak(() => {
        const e = transformerAttribution(model, images[b], { startLayer: s });
        expect(e.targetClass).toBe((ref.get('target_class')!.data as Int32Array)[b]);
        expect(e.targetLogit).toBeCloseTo(slice('target_logit', b)[0], 4);
        expect(e.map.shape).toEqual([4, 4]);
        close(e.map.dataSync(), slice(`transformer_attribution.s${s}`, b), `TA s${s}[${b}]`);
        expect(e.relevanceBlocks).toEqual(s === 0 ? [0, 1] : [1]);
        e.relevanceBlocks.forEach((l, j) => close(e.attentionRelevance[j].dataSync(), slice(`R_A.ours.${l}`, b), `R_A.ours.${l}[${b}]`));
        expect(e.joint!.shape).toEqual([17, 17]);
        expect(e.attentionGradients).toHaveLength(2);
        disposeExplanation(e);
        const given = transformerAttribution(model, images[b], { startLayer: s, targetClass: 4 });
        expect(given.targetClass).toBe(4);
        close(given.map.dataSync(), slice(`transformer_attribution.s${s}.class4`, b), `TA s${s} class 4 [${b}]`);
        disposeExplanation(given);
      });
    }
  });

  it('partial LRP (ViT_orig_LRP rules, last block only)', () => {
    for (let b = 0; b < 2; b++) {
      noLeak(() => {
        const e: LrpExplanation = partialLrp(model, images[b]);
        close(e.map.dataSync(), slice('partial_lrp', b), `partial_lrp[${b}]`);
        expect(e.relevanceBlocks).toEqual([1]);
        close(e.attentionRelevance[0].dataSync(), slice('R_A.lrp.1', b), `R_A.lrp.1[${b}]`);
        expect(e.joint).toBeUndefined();
        disposeExplanation(e);
        const given = partialLrp(model, images[b], { targetClass: 4 });
        close(given.map.dataSync(), slice('partial_lrp.class4', b), `partial_lrp class 4 [${b}]`);
        disposeExplanation(given);
      });
    }
  });

  it('the two rule sets differ where the reference says (the same model gives different R_A)', () => {
    // Guards against one rule set standing in for the other: 'ours' and 'lrp' disagree on golden-micro.
    const ours = slice('R_A.ours.1', 0);
    const lrp = slice('R_A.lrp.1', 0);
    const diff = Math.max(...Array.from(ours, (v, i) => Math.abs(v - lrp[i])));
    expect(diff).toBeGreaterThan(1e-3);
  });

  it('explainBatch: the batch equals the fixture, images one by one', () => {
    for (const [name, key] of [
      ['transformer-attribution', 'transformer_attribution.s0'],
      ['partial-lrp', 'partial_lrp'],
    ] as const) {
      noLeak(() => {
        const r = explainBatch(name, model, x);
        expect(r.maps.shape).toEqual([2, 4, 4]);
        expect(r.targetClasses).toEqual([1, 7]);
        const maps = r.maps.dataSync();
        for (let b = 0; b < 2; b++) close(maps.subarray(b * 16, (b + 1) * 16), slice(key, b), `${name}[${b}]`);
        r.maps.dispose();
      });
    }
    noLeak(() => {
      const r = explainBatch('transformer-attribution', model, x, { startLayer: 1, classes: [4, 4] });
      const maps = r.maps.dataSync();
      for (let b = 0; b < 2; b++)
        close(maps.subarray(b * 16, (b + 1) * 16), slice('transformer_attribution.s1.class4', b), `TA s1 c4[${b}]`);
      r.maps.dispose();
    });
  });

  it('rejects a bad start layer without leaking', () => {
    noLeak(() => {
      expect(() => transformerAttribution(model, images[0], { startLayer: 2 })).toThrow(
        /start layer 2 \(rollout, transformer attribution\) is outside 0\.\.1/,
      );
      expect(() => explainBatch('transformer-attribution', model, x, { startLayer: -1 })).toThrow(/start layer/);
    });
  });
});
