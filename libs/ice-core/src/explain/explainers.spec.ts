import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'node:fs';
import { initBackend } from '../backend/tf-backend.service';
import { IceError } from '../errors';
import { iceClassPredictions, NO_ICE_CLASS } from '../loss/ice-loss';
import { vitConfig } from '../model/vit.config';
import { IceVit } from '../model/vit.model';
import { expectAllClose, flat, goldenPath } from '../testing/golden.testing';
import { readSafetensors } from '../weights/safetensors';
import {
  clsRowPatches,
  disposeExplanation,
  disposeTrace,
  EXPLAINER_NAMES,
  EXPLAINERS,
  explainBatch,
  genericAttention,
  genericAttentionR,
  gradcam,
  gradcamFromAttention,
  iceClassScore,
  iceForeground,
  isExplainerName,
  rawAttention,
  rawAttentionMap,
  rollout,
  rolloutJoint,
  traceAttention,
} from './explainers';

const ATOL = 1e-4;
const RTOL = 1e-4;

describe('explainers against golden-explain (golden-micro, each image on its own)', () => {
  let model: IceVit;
  let explain: ReturnType<typeof readSafetensors>['tensors'];
  let io: ReturnType<typeof readSafetensors>['tensors'];
  let json: Record<string, unknown>;
  let x: tf.Tensor4D;
  const images: tf.Tensor4D[] = [];

  beforeAll(async () => {
    await initBackend('wasm');
    model = IceVit.create(vitConfig('golden-micro'));
    model.loadStateDict(readSafetensors(goldenPath('golden-micro.safetensors')).tensors);
    explain = readSafetensors(goldenPath('golden-explain.safetensors')).tensors;
    io = readSafetensors(goldenPath('golden-micro-io.safetensors')).tensors;
    json = JSON.parse(fs.readFileSync(goldenPath('golden-explain.json'), 'utf8')) as Record<string, unknown>;
    x = tf.tensor4d(io.get('input')!.data as Float32Array, [2, 3, 32, 32]);
    for (let b = 0; b < 2; b++) images.push(tf.slice(x, [b, 0, 0, 0], [1, 3, 32, 32]));
  });
  afterAll(() => {
    tf.dispose([x, ...images]);
    model.dispose();
  });

  /** Golden tensor `name`, the slice of image b (leading axis). */
  const ref = (name: string, b: number): Float32Array => {
    const rec = explain.get(name)!;
    const per = rec.shape.slice(1).reduce((p, d) => p * d, 1);
    return (rec.data as Float32Array).subarray(b * per, (b + 1) * per);
  };
  const jsonRow = (name: string, b: number): number[] => flat((json[name] as unknown[])[b]);
  const targets = (): number[] => flat(json.target_class);

  /** Runs fn and checks that it leaves no tensor behind. */
  const noLeak = (fn: () => void): void => {
    const before = tf.memory().numTensors;
    fn();
    expect(tf.memory().numTensors).toBe(before);
  };

  it('targets the top-1 class; ∂y_c/∂A_l of the raw logit matches attn_grad.0/.1', () => {
    for (let b = 0; b < 2; b++) {
      noLeak(() => {
        const t = traceAttention(model, images[b], true);
        expect(t.targetClass).toBe(targets()[b]);
        expect(t.targetLogit).toBeCloseTo(flat(json.target_logit)[b], 4);
        expect(t.attention.map((a) => a.shape)).toEqual([
          [2, 17, 17],
          [2, 17, 17],
        ]);
        expectAllClose(
          t.attention[1].dataSync(),
          io.get('attn_probs.1')!.data.slice(b * 578, (b + 1) * 578) as Float32Array,
          ATOL,
          RTOL,
          `attn_probs.1[${b}]`,
        );
        for (let l = 0; l < 2; l++)
          expectAllClose(t.gradients![l].dataSync(), ref(`attn_grad.${l}`, b), ATOL, RTOL, `attn_grad.${l}[${b}]`);
        disposeTrace(t);
      });
    }
    expect(Array.from(explain.get('target_class')!.data as Int32Array)).toEqual(targets());
  });

  it('raw attention', () => {
    for (let b = 0; b < 2; b++) {
      noLeak(() => {
        const e = rawAttention(model, images[b]);
        expect(e.map.shape).toEqual([4, 4]);
        expect(e.targetClass).toBe(targets()[b]);
        expectAllClose(e.map.dataSync(), jsonRow('raw_attention', b), ATOL, RTOL, `raw_attention[${b}]`);
        disposeExplanation(e);
      });
    }
  });

  it('rollout from block 0 and from block 1, with the joint matrices', () => {
    for (const s of [0, 1]) {
      for (let b = 0; b < 2; b++) {
        noLeak(() => {
          const e = rollout(model, images[b], { startLayer: s });
          expectAllClose(e.map.dataSync(), jsonRow(`rollout.s${s}`, b), ATOL, RTOL, `rollout.s${s}[${b}]`);
          expectAllClose(e.joint.dataSync(), ref(`rollout_joint.s${s}`, b), ATOL, RTOL, `rollout_joint.s${s}[${b}]`);
          disposeExplanation(e);
        });
      }
    }
  });

  it('GradCAM: head weights, unclamped map, and the clamp (image 1 is all zeros)', () => {
    for (let b = 0; b < 2; b++) {
      noLeak(() => {
        const e = gradcam(model, images[b]);
        expectAllClose(e.headWeights.dataSync(), jsonRow('gradcam_head_weights', b), ATOL, RTOL, `gradcam_head_weights[${b}]`);
        expectAllClose(e.unclamped.dataSync(), jsonRow('gradcam_unclamped', b), ATOL, RTOL, `gradcam_unclamped[${b}]`);
        expectAllClose(e.map.dataSync(), jsonRow('gradcam', b), ATOL, RTOL, `gradcam[${b}]`);
        for (let l = 0; l < 2; l++)
          expectAllClose(e.attentionGradients[l].dataSync(), ref(`attn_grad.${l}`, b), ATOL, RTOL, `attn_grad.${l}[${b}]`);
        disposeExplanation(e);
      });
    }
    expect(jsonRow('gradcam', 1).every((v) => v === 0)).toBe(true);
  });

  it('generic attention (Chefer 2021b) and its R', () => {
    for (let b = 0; b < 2; b++) {
      noLeak(() => {
        const e = genericAttention(model, images[b]);
        expectAllClose(e.map.dataSync(), jsonRow('generic_attention', b), ATOL, RTOL, `generic_attention[${b}]`);
        expectAllClose(e.R.dataSync(), ref('generic_R', b), ATOL, RTOL, `generic_R[${b}]`);
        disposeExplanation(e);
      });
    }
  });

  it('ICE foreground mask and class score map', () => {
    for (let b = 0; b < 2; b++) {
      noLeak(() => {
        const fg = iceForeground(model, images[b]);
        expect(Array.from(fg.map.dataSync())).toEqual(jsonRow('ice_fg_mask', b));
        const cs = iceClassScore(model, images[b]);
        expect(cs.targetClass).toBe(targets()[b]);
        expectAllClose(cs.map.dataSync(), jsonRow('ice_class_score', b), ATOL, RTOL, `ice_class_score[${b}]`);
        disposeExplanation(fg);
        disposeExplanation(cs);
      });
    }
  });

  it.each([
    ['golden-micro-icef.safetensors', 'icef', 'z_icef'],
    ['golden-micro-paper.safetensors', 'paper', 'z_paper'],
  ] as const)('ICE maps from %s (%s head) follow its golden logits %s (tolerances of the golden README)', (file, head, zName) => {
    const other = IceVit.create(vitConfig('golden-micro', { iceHead: head }));
    other.loadStateDict(readSafetensors(goldenPath(file)).tensors);
    const z = io.get(zName)!.data as Float32Array; // [2, 16, 11], background last
    try {
      noLeak(() => {
        const fg = explainBatch('ice', other, x);
        const cs = explainBatch('ice-class', other, x);
        expect(cs.targetClasses).toEqual(targets()); // same backbone and CLS head as golden-micro
        const fgMaps = fg.maps.dataSync();
        const scores = cs.maps.dataSync();
        for (let b = 0; b < 2; b++) {
          for (let p = 0; p < 16; p++) {
            const row = Array.from(z.subarray((b * 16 + p) * 11, (b * 16 + p + 1) * 11));
            const argmax = row.indexOf(Math.max(...row));
            expect(fgMaps[b * 16 + p]).toBe(argmax !== 10 ? 1 : 0);
            expect(Math.abs(scores[b * 16 + p] - row[targets()[b]])).toBeLessThan(ATOL + RTOL * Math.abs(row[targets()[b]]));
          }
        }
        tf.dispose([fg.maps, cs.maps]);
      });
    } finally {
      other.dispose();
    }
  });

  it('explainBatch runs every registered method on the batch in one pass (the LRP methods: lrp.spec.ts)', () => {
    const golden: Record<string, string> = {
      ice: 'ice_fg_mask',
      'ice-class': 'ice_class_score',
      'raw-attention': 'raw_attention',
      rollout: 'rollout.s0',
      gradcam: 'gradcam',
      'generic-attention': 'generic_attention',
    };
    expect(EXPLAINER_NAMES.filter((n) => !golden[n])).toEqual(['transformer-attribution', 'partial-lrp']);
    for (const name of EXPLAINER_NAMES.filter((n) => golden[n])) {
      noLeak(() => {
        const r = explainBatch(name, model, x);
        expect(r.maps.shape).toEqual([2, 4, 4]);
        expect(r.targetClasses).toEqual(targets());
        expectAllClose(r.maps.dataSync(), explain.get(golden[name])!.data as Float32Array, ATOL, RTOL, name);
        r.maps.dispose();
      });
    }
    noLeak(() => {
      const r = explainBatch('rollout', model, x, { startLayer: 1 });
      expectAllClose(r.maps.dataSync(), explain.get('rollout.s1')!.data as Float32Array, ATOL, RTOL, 'rollout.s1');
      r.maps.dispose();
    });
  });

  it('explainBatch on a batch equals each image on its own (mixed given and top-1 targets, per-head raw attention)', () => {
    const batch = tf.tidy(() => tf.concat([x, tf.randomNormal<tf.Rank.R4>([3, 3, 32, 32], 0, 1, 'float32', 5)], 0));
    const classes = [undefined, 4, undefined, 0, 9];
    try {
      for (const name of EXPLAINER_NAMES) {
        noLeak(() => {
          const r = explainBatch(name, model, batch, { classes, startLayer: 1, perHead: true });
          expect(r.maps.shape).toEqual([5, 4, 4]);
          const maps = r.maps.arraySync();
          for (let b = 0; b < 5; b++) {
            const image = tf.slice(batch, [b, 0, 0, 0], [1, -1, -1, -1]);
            const e = EXPLAINERS[name].explain(model, image, { targetClass: classes[b], startLayer: 1 });
            expect(r.targetClasses[b]).toBe(e.targetClass);
            expect(r.targetLogits[b]).toBeCloseTo(e.targetLogit, 4);
            expectAllClose(maps[b].flat(), e.map.dataSync(), 1e-5, 1e-4, `${name}[${b}]`);
            if (name === 'raw-attention') {
              const t = traceAttention(model, image, false);
              const [H, T] = t.attention[1].shape;
              const rows = tf.tidy(() => tf.slice(t.attention[1], [0, 0, 1], [H, 1, T - 1]).dataSync());
              expectAllClose(r.heads!.arraySync()[b].flat(), rows, 1e-6, 1e-5, `heads[${b}]`);
              disposeTrace(t);
            }
            disposeExplanation(e);
            image.dispose();
          }
          expect(r.heads === undefined).toBe(name !== 'raw-attention');
          tf.dispose([r.maps, ...(r.heads ? [r.heads] : [])]);
        });
      }
    } finally {
      batch.dispose();
    }
  });

  it("targetSource 'ice': the ICE head's own top-1 is the target (the CLS head's where no patch is foreground)", () => {
    const expected = tf.tidy(() => {
      const out = model.forward(x);
      const ice = iceClassPredictions(out.zIce!).dataSync();
      const cls = tf.argMax(out.clsLogits, 1).dataSync();
      return Array.from(ice, (c, b) => (c === NO_ICE_CLASS ? cls[b] : c));
    });
    for (const name of EXPLAINER_NAMES) {
      noLeak(() => {
        const r = explainBatch(name, model, x, { targetSource: 'ice' });
        expect(r.targetClasses).toEqual(expected);
        tf.dispose([r.maps, ...(r.heads ? [r.heads] : [])]);
        const one = EXPLAINERS[name].explain(model, images[1], { targetSource: 'ice' });
        expect(one.targetClass).toBe(expected[1]);
        disposeExplanation(one);
        // A given class still wins.
        const given = explainBatch(name, model, x, { targetSource: 'ice', classes: [7, undefined] });
        expect(given.targetClasses).toEqual([7, expected[1]]);
        tf.dispose([given.maps, ...(given.heads ? [given.heads] : [])]);
      });
    }
    const plain = IceVit.create(vitConfig('golden-micro', { iceHead: 'none' }));
    try {
      noLeak(() => expect(() => explainBatch('gradcam', plain, x, { targetSource: 'ice' })).toThrow(/need a model with an ICE head/));
    } finally {
      plain.dispose();
    }
  });

  it('registry: names, backward flags; a given target class is used', () => {
    expect([...EXPLAINER_NAMES].sort()).toEqual([
      'generic-attention',
      'gradcam',
      'ice',
      'ice-class',
      'partial-lrp',
      'raw-attention',
      'rollout',
      'transformer-attribution',
    ]);
    expect(EXPLAINER_NAMES.filter((n) => EXPLAINERS[n].needsBackward).sort()).toEqual([
      'generic-attention',
      'gradcam',
      'transformer-attribution',
    ]);
    expect(EXPLAINER_NAMES.filter((n) => EXPLAINERS[n].needsIceHead).sort()).toEqual(['ice', 'ice-class']);
    for (const n of EXPLAINER_NAMES) expect(EXPLAINERS[n].name).toBe(n);
    expect(isExplainerName('lrp')).toBe(false);
    expect(isExplainerName('full-lrp')).toBe(false);
    expect(isExplainerName('transformer-attribution')).toBe(true);
    noLeak(() => {
      const logits = tf.tidy(() => model.forward(images[0]).clsLogits.dataSync());
      const e = gradcam(model, images[0], { targetClass: 3 });
      expect(e.targetClass).toBe(3);
      expect(e.targetLogit).toBeCloseTo(logits[3], 5);
      disposeExplanation(e);
    });
  });

  it('rejects batches, bad targets and bad start layers without leaking', () => {
    noLeak(() => {
      expect(() => rawAttention(model, x)).toThrow(IceError);
      expect(() => gradcam(model, images[0], { targetClass: 10 })).toThrow(IceError);
      expect(() => rollout(model, images[0], { startLayer: 2 })).toThrow(IceError);
      expect(() => explainBatch('ice', model, x, { classes: [1] })).toThrow(IceError);
    });
  });
});

describe('golden behaviours on constructed attention (notes 1–3)', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  const uniform = (H: number, T: number): tf.Tensor3D => tf.fill([H, T, T], 1 / T);
  const eyes = (H: number, T: number): tf.Tensor3D => tf.tidy(() => tf.tile(tf.expandDims(tf.eye(T), 0), [H, 1, 1]));
  /** Row-stochastic random attention, seeded. */
  const randomAttention = (H: number, T: number, seed: number): tf.Tensor3D =>
    tf.tidy(() => tf.softmax(tf.randomNormal([H, T, T], 0, 1, 'float32', seed)));

  it('1. rollout of uniform attention over L blocks gives (1 − 0.5^L)/T on every patch (T = 5, L = 3: 0.175)', () => {
    const before = tf.memory().numTensors;
    for (const L of [1, 2, 3]) {
      const attn = Array.from({ length: L }, () => uniform(3, 5));
      const J = rolloutJoint(attn);
      const m = clsRowPatches(J);
      expectAllClose(m.dataSync(), new Array(4).fill((1 - 0.5 ** L) / 5), 1e-7, 1e-6, `uniform rollout L=${L}`);
      if (L === 3) expectAllClose(m.dataSync(), [0.175, 0.175, 0.175, 0.175], 1e-7, 1e-6, '0.175');
      tf.dispose([...attn, J, m]);
    }
    const id = Array.from({ length: 3 }, () => eyes(2, 5));
    const J = rolloutJoint(id);
    const m = clsRowPatches(J);
    expect(Array.from(m.dataSync())).toEqual([0, 0, 0, 0]);
    tf.dispose([...id, J, m]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('2. the generic rule equals the un-normalised rollout of Ā; one block gives Ā[0,1:]; zero gradients give 0', () => {
    const before = tf.memory().numTensors;
    const H = 3;
    const T = 6;
    const attn = [0, 1, 2].map((s) => randomAttention(H, T, s));
    const grads = [10, 11, 12].map((s) => tf.randomNormal<tf.Rank.R3>([H, T, T], 0, 1, 'float32', s));
    const R = genericAttentionR(attn, grads);
    const expected = tf.tidy(() => {
      let P: tf.Tensor2D = tf.eye(T);
      attn.forEach((a, l) => {
        const abar: tf.Tensor2D = tf.mean(tf.relu(tf.mul(grads[l], a)), 0);
        P = tf.matMul(tf.add(tf.eye(T), abar), P); // (I + Ā_L) ⋯ (I + Ā_1)
      });
      return P;
    });
    expectAllClose(R.dataSync(), expected.dataSync(), 1e-6, 1e-5, 'R vs product');

    const R1 = genericAttentionR([attn[0]], [grads[0]]);
    const abar0 = tf.tidy((): tf.Tensor2D => tf.mean(tf.relu(tf.mul(grads[0], attn[0])), 0));
    const m1 = clsRowPatches(R1);
    const a1 = clsRowPatches(abar0);
    expectAllClose(m1.dataSync(), a1.dataSync(), 1e-7, 1e-6, 'one block');

    const zeros = attn.map(() => tf.zeros<tf.Rank.R3>([H, T, T]));
    const R0 = genericAttentionR(attn, zeros);
    const m0 = clsRowPatches(R0);
    expect(Array.from(m0.dataSync())).toEqual(new Array(T - 1).fill(0));
    tf.dispose([...attn, ...grads, ...zeros, R, expected, R1, abar0, m1, a1, R0, m0]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('3. GradCAM with the same positive constant gradient on every head is the (min-maxed) raw attention; a negative one gives 0', () => {
    const before = tf.memory().numTensors;
    const a = randomAttention(4, 10, 7);
    const raw = rawAttentionMap(a);
    const minmax = (v: ArrayLike<number>): number[] => {
      const lo = Math.min(...Array.from(v));
      const hi = Math.max(...Array.from(v));
      return Array.from(v, (u) => (u - lo) / (hi - lo));
    };
    const pos = tf.fill<tf.Rank.R3>([4, 10, 10], 0.7);
    const gp = gradcamFromAttention(a, pos);
    expectAllClose(gp.headWeights.dataSync(), [0.7, 0.7, 0.7, 0.7], 1e-7, 1e-6, 'head weights');
    expectAllClose(
      gp.unclamped.dataSync(),
      Array.from(raw.dataSync(), (v) => 0.7 * v),
      1e-8,
      1e-5,
      'c · raw',
    );
    expectAllClose(minmax(gp.map.dataSync()), minmax(raw.dataSync()), 1e-5, 1e-5, 'min-maxed');
    const neg = tf.fill<tf.Rank.R3>([4, 10, 10], -0.3);
    const gn = gradcamFromAttention(a, neg);
    expect(Array.from(gn.map.dataSync())).toEqual(new Array(9).fill(0));
    expect(Math.max(...Array.from(gn.unclamped.dataSync()))).toBeLessThan(0);
    tf.dispose([a, raw, pos, neg, gp.map, gp.unclamped, gp.headWeights, gn.map, gn.unclamped, gn.headWeights]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
