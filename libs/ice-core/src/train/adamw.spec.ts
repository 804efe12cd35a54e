import * as tf from '@tensorflow/tfjs-core';
import { nativeKernelsActive, setNativeKernelsEnabled } from '@ice/native-kernels';
import { initBackend } from '../backend/tf-backend.service';
import { IceError } from '../errors';
import { AdamW, GradAccumulator, isNoDecay } from './adamw';
import { Rng } from './rng';

const SHAPES: Record<string, number[]> = {
  cls_token: [1, 1, 4],
  pos_embed: [1, 3, 4],
  'blocks.0.attn.qkv.weight': [4, 12],
  'blocks.0.attn.qkv.bias': [12],
  'blocks.0.norm1.weight': [4],
  'mlp_head.weight': [4, 5],
};

const size = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

function randomValues(rng: Rng, shape: number[], scale = 1): Float32Array {
  return Float32Array.from({ length: size(shape) }, () => scale * rng.normal());
}

function makeParams(seed: number): Map<string, tf.Variable> {
  const rng = new Rng(seed);
  return new Map(Object.entries(SHAPES).map(([name, shape]) => [name, tf.variable(tf.tensor(randomValues(rng, shape), shape))]));
}

function disposeAll(...maps: Map<string, tf.Tensor>[]): void {
  for (const m of maps) for (const t of m.values()) t.dispose();
}

/** torch.optim.AdamW.step for one tensor, in float64. */
class RefAdamW {
  m: Float64Array;
  v: Float64Array;
  constructor(
    public p: Float64Array,
    private readonly wd: number,
    private readonly b1 = 0.9,
    private readonly b2 = 0.999,
    private readonly eps = 1e-8,
  ) {
    this.m = new Float64Array(p.length);
    this.v = new Float64Array(p.length);
  }
  step(g: ArrayLike<number>, t: number, lr: number): void {
    const { b1, b2, eps } = this;
    const bc1 = 1 - b1 ** t;
    const bc2 = 1 - b2 ** t;
    for (let i = 0; i < this.p.length; i++) {
      this.p[i] *= 1 - lr * this.wd;
      this.m[i] = b1 * this.m[i] + (1 - b1) * g[i];
      this.v[i] = b2 * this.v[i] + (1 - b2) * g[i] * g[i];
      const denom = Math.sqrt(this.v[i]) / Math.sqrt(bc2) + eps;
      this.p[i] -= (lr / bc1) * (this.m[i] / denom);
    }
  }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

beforeAll(async () => {
  await initBackend('wasm');
});

describe('isNoDecay (timm add_weight_decay)', () => {
  it('exempts 1-D tensors, biases, pos_embed and cls_token, and decays mlp_head.weight', () => {
    expect(isNoDecay('blocks.0.norm1.weight', [384])).toBe(true);
    expect(isNoDecay('head.bias', [1000])).toBe(true);
    expect(isNoDecay('pos_embed', [1, 197, 384])).toBe(true);
    expect(isNoDecay('cls_token', [1, 1, 384])).toBe(true);
    expect(isNoDecay('mlp_head.weight', [384, 1001])).toBe(false);
    expect(isNoDecay('patch_embed.proj.weight', [768, 384])).toBe(false);
    expect(isNoDecay('blocks.0.attn.qkv.weight', [384, 1152])).toBe(false);
  });
});

describe('AdamW', () => {
  it('matches torch.optim.AdamW (float64 reference) over several steps with a changing lr', () => {
    const params = makeParams(1);
    const wd = 0.05;
    const opt = new AdamW(params, { weightDecay: wd });
    const refs = new Map([...params].map(([n, p]) => [n, new RefAdamW(Float64Array.from(p.dataSync()), isNoDecay(n, p.shape) ? 0 : wd)]));
    const rng = new Rng(2);
    const lrs = [1e-2, 5e-3, 2e-2, 1e-3, 1e-2, 3e-2];
    lrs.forEach((lr, i) => {
      // Gradients of varied size, including tiny ones where eps matters.
      const scale = i === 0 ? 1e-8 : i === 3 ? 1e-7 : 1;
      const grads = new Map([...params].map(([n, p]) => [n, tf.tensor(randomValues(rng, p.shape, scale), p.shape)]));
      opt.step(grads, lr);
      for (const [n, g] of grads) refs.get(n)!.step(g.dataSync(), i + 1, lr);
      disposeAll(grads);
    });
    expect(opt.stepCount).toBe(lrs.length);
    for (const [n, p] of params) expect(maxAbsDiff(p.dataSync(), refs.get(n)!.p)).toBeLessThan(1e-6);
    const state = opt.getState();
    for (const [n, r] of refs) {
      expect(maxAbsDiff(state.m.get(n)!.dataSync(), r.m)).toBeLessThan(1e-6);
      expect(maxAbsDiff(state.v.get(n)!.dataSync(), r.v)).toBeLessThan(1e-6);
    }
    disposeAll(state.m, state.v, params);
    opt.dispose();
  });

  it('decays only the decay group (zero gradients leave only the decoupled decay)', () => {
    const params = makeParams(3);
    const before = new Map([...params].map(([n, p]) => [n, Float64Array.from(p.dataSync())]));
    const opt = new AdamW(params, { weightDecay: 0.05 });
    expect(opt.groups()).toEqual({
      decay: ['blocks.0.attn.qkv.weight', 'mlp_head.weight'],
      noDecay: ['cls_token', 'pos_embed', 'blocks.0.attn.qkv.bias', 'blocks.0.norm1.weight'],
      frozen: [],
    });
    const zeros = new Map([...params].map(([n, p]) => [n, tf.zerosLike(p) as tf.Tensor]));
    opt.step(zeros, 0.1);
    for (const [n, p] of params) {
      const factor = opt.groups().decay.includes(n) ? 1 - 0.1 * 0.05 : 1;
      const expected = before.get(n)!.map((x) => x * factor);
      expect(maxAbsDiff(p.dataSync(), expected)).toBeLessThan(1e-7);
    }
    disposeAll(zeros, params);
    opt.dispose();
  });

  it('leaves frozen parameters alone and keeps no state for them', () => {
    const params = makeParams(4);
    const frozen = (n: string): boolean => n.startsWith('blocks.') || n === 'cls_token' || n === 'pos_embed';
    const opt = new AdamW(params, {}, { frozen });
    expect(opt.groups().frozen).toEqual([
      'cls_token',
      'pos_embed',
      'blocks.0.attn.qkv.weight',
      'blocks.0.attn.qkv.bias',
      'blocks.0.norm1.weight',
    ]);
    expect(opt.trainableVariables()).toEqual([params.get('mlp_head.weight')]);
    const before = new Map([...params].map(([n, p]) => [n, Float32Array.from(p.dataSync())]));
    const rng = new Rng(5);
    // Gradients for frozen parameters may be passed and are ignored.
    const grads = new Map([...params].map(([n, p]) => [n, tf.tensor(randomValues(rng, p.shape), p.shape)]));
    opt.step(grads, 1e-2);
    for (const [n, p] of params) {
      if (frozen(n)) expect(p.dataSync()).toEqual(before.get(n));
      else expect(maxAbsDiff(p.dataSync(), before.get(n)!)).toBeGreaterThan(1e-3);
    }
    const state = opt.getState();
    expect([...state.m.keys()]).toEqual(['mlp_head.weight']);
    disposeAll(state.m, state.v, grads, params);
    opt.dispose();
  });

  it('rejects missing, unknown or mis-shaped gradients', () => {
    const params = makeParams(6);
    const opt = new AdamW(params);
    const grads = new Map([...params].map(([n, p]) => [n, tf.zerosLike(p) as tf.Tensor]));
    const partial = new Map(grads);
    partial.delete('mlp_head.weight');
    expect(() => opt.step(partial)).toThrow(IceError);
    expect(() => opt.step(new Map([...grads, ['nope', grads.get('cls_token')!]]))).toThrow(IceError);
    const wrong = new Map(grads);
    const bad = tf.zeros([5, 4]);
    wrong.set('mlp_head.weight', bad);
    expect(() => opt.step(wrong)).toThrow(IceError);
    expect(opt.stepCount).toBe(0);
    expect(() => new AdamW(params, { betas: [1, 0.999] })).toThrow(IceError);
    bad.dispose();
    disposeAll(grads, params);
    opt.dispose();
  });

  it('clips by global norm as torch.nn.utils.clip_grad_norm_ when asked', () => {
    const params = makeParams(7);
    const maxNorm = 0.5;
    const opt = new AdamW(params, { weightDecay: 0.05, clipGradNorm: maxNorm });
    const refs = new Map([...params].map(([n, p]) => [n, new RefAdamW(Float64Array.from(p.dataSync()), isNoDecay(n, p.shape) ? 0 : 0.05)]));
    const rng = new Rng(8);
    for (let t = 1; t <= 3; t++) {
      const grads = new Map([...params].map(([n, p]) => [n, tf.tensor(randomValues(rng, p.shape, t), p.shape)]));
      let sq = 0;
      for (const g of grads.values()) for (const x of g.dataSync()) sq += x * x;
      const coef = Math.min(1, maxNorm / (Math.sqrt(sq) + 1e-6));
      expect(coef).toBeLessThan(1);
      opt.step(grads, 1e-2);
      for (const [n, g] of grads)
        refs.get(n)!.step(
          Array.from(g.dataSync(), (x) => x * coef),
          t,
          1e-2,
        );
      disposeAll(grads);
    }
    for (const [n, p] of params) expect(maxAbsDiff(p.dataSync(), refs.get(n)!.p)).toBeLessThan(1e-6);
    disposeAll(params);
    opt.dispose();
  });

  it('resumes exactly from exported state', () => {
    const a = makeParams(9);
    const b = makeParams(9);
    const optA = new AdamW(a);
    const rng = new Rng(10);
    const gradsFor = (): Map<string, tf.Tensor> => new Map([...a].map(([n, p]) => [n, tf.tensor(randomValues(rng, p.shape), p.shape)]));
    for (let i = 0; i < 3; i++) {
      const g = gradsFor();
      optA.step(g, 1e-2);
      disposeAll(g);
    }
    for (const [n, p] of a) b.get(n)!.assign(p);
    const state = optA.getState();
    const optB = new AdamW(b);
    optB.setState(state);
    disposeAll(state.m, state.v); // setState copied them
    expect(optB.stepCount).toBe(3);
    const g = gradsFor();
    optA.step(g, 1e-2);
    optB.step(g, 1e-2);
    for (const [n, p] of a) expect(b.get(n)!.dataSync()).toEqual(p.dataSync());
    const bad = optB.getState();
    bad.m.get('cls_token')!.dispose();
    bad.m.set('cls_token', tf.zeros([4]));
    expect(() => optB.setState(bad)).toThrow(IceError);
    disposeAll(bad.m, bad.v, g, a, b);
    optA.dispose();
    optB.dispose();
  });

  it('accepts gradients keyed by tf.Variable name, as tf.variableGrads returns them', () => {
    const params = makeParams(11);
    const opt = new AdamW(params);
    const grads: tf.NamedTensorMap = {};
    for (const v of opt.trainableVariables()) grads[v.name] = tf.onesLike(v);
    expect(Object.keys(grads)).not.toContain('mlp_head.weight');
    opt.step(grads);
    expect(opt.stepCount).toBe(1);
    disposeAll(new Map(Object.entries(grads)), params);
    opt.dispose();
  });

  it('accumulates k micro-batches into the gradient and update of one batch of k·b', () => {
    const rng = new Rng(12);
    const X = tf.tensor2d(randomValues(rng, [8, 4]), [8, 4]);
    const Y = tf.tensor2d(randomValues(rng, [8, 3]), [8, 3]);
    const w0 = randomValues(rng, [4, 3]);
    const b0 = randomValues(rng, [3]);
    const model = (): Map<string, tf.Variable> =>
      new Map<string, tf.Variable>([
        ['fc.weight', tf.variable(tf.tensor2d(w0, [4, 3]))],
        ['fc.bias', tf.variable(tf.tensor1d(b0))],
      ]);
    const full = model();
    const micro = model();
    // L = mean((xW + b − y)²) over all n·3 entries: dL/dW = 2/(3n)·xᵀr, dL/db = 2/(3n)·Σ_rows r.
    // (Written out because tfjs-core's node bundle registers no gradient functions.)
    const gradsOf = (params: Map<string, tf.Variable>, x: tf.Tensor2D, y: tf.Tensor2D): Map<string, tf.Tensor> => {
      const [gw, gb] = tf.tidy((): tf.Tensor[] => {
        const [w, b] = [params.get('fc.weight')!, params.get('fc.bias')!];
        const r = tf.mul(tf.sub(tf.add(tf.matMul(x, w), b), y), 2 / (3 * x.shape[0]));
        return [tf.matMul(tf.transpose(x), r), tf.sum(r, 0)];
      });
      return new Map<string, tf.Tensor>([
        ['fc.weight', gw],
        ['fc.bias', gb],
      ]);
    };
    const optFull = new AdamW(full);
    const optMicro = new AdamW(micro);
    const acc = new GradAccumulator();
    for (let step = 0; step < 3; step++) {
      const gFull = gradsOf(full, X, Y);
      for (let k = 0; k < 4; k++) {
        const [xs, ys] = [tf.slice(X, [2 * k, 0], [2, 4]), tf.slice(Y, [2 * k, 0], [2, 3])];
        const g = gradsOf(micro, xs, ys);
        acc.add(g);
        disposeAll(g);
        xs.dispose();
        ys.dispose();
      }
      expect(acc.count).toBe(4);
      const gMean = acc.takeMean();
      expect(acc.count).toBe(0);
      for (const [n, g] of gFull) expect(maxAbsDiff(gMean.get(n)!.dataSync(), g.dataSync())).toBeLessThan(1e-6);
      optFull.step(gFull, 1e-2);
      optMicro.step(gMean, 1e-2);
      disposeAll(gFull, gMean);
    }
    for (const [n, p] of full) expect(maxAbsDiff(micro.get(n)!.dataSync(), p.dataSync())).toBeLessThan(1e-6);
    expect(() => acc.takeMean()).toThrow(IceError);
    acc.dispose();
    optFull.dispose();
    optMicro.dispose();
    disposeAll(full, micro);
    X.dispose();
    Y.dispose();
  });

  (process.env.ICE_NATIVE_KERNELS === 'off' ? it.skip : it)(
    'the fused native update equals the stock tfjs chain to the bit (decay groups, clipping, extreme gradients)',
    async () => {
      expect(nativeKernelsActive()).toBe(true);
      const rng = new Rng(15);
      // Gradients from 0 and subnormals to 1e30, and parameters across magnitudes, in every tensor.
      const special = [0, -0, 1e-45, -3e-42, 1e-38, 1e-20, -1e-10, 1e-3, 1, -7.5, 1e10, 1e30];
      const gradsAt = (t: number): Map<string, tf.Tensor> =>
        new Map(
          Object.entries(SHAPES).map(([n, shape]) => {
            const g = randomValues(rng, shape, 10 ** ((t % 5) - 2));
            special.forEach((x, i) => {
              if (i < g.length) g[(i * 7) % g.length] = x;
            });
            return [n, tf.tensor(g, shape)];
          }),
        );
      const lrs = [1e-2, 5e-3, 0, 2e-2, 1e-3, 1e-2, 3e-2];
      const allGrads = lrs.map((_, t) => gradsAt(t));
      const run = (native: boolean, clip: number | null): Map<string, Uint32Array> => {
        setNativeKernelsEnabled(native);
        const params = makeParams(16);
        const opt = new AdamW(params, { weightDecay: 0.05, clipGradNorm: clip });
        lrs.forEach((lr, t) => opt.step(allGrads[t], lr));
        const state = opt.getState();
        const bits = new Map<string, Uint32Array>();
        for (const [n, p] of params) {
          bits.set(n, new Uint32Array(Float32Array.from(p.dataSync()).buffer));
          bits.set(`m:${n}`, new Uint32Array(Float32Array.from(state.m.get(n)!.dataSync()).buffer));
          bits.set(`v:${n}`, new Uint32Array(Float32Array.from(state.v.get(n)!.dataSync()).buffer));
        }
        disposeAll(state.m, state.v, params);
        opt.dispose();
        return bits;
      };
      try {
        for (const clip of [null, 0.5]) {
          const stock = run(false, clip);
          const native = run(true, clip);
          for (const [n, b] of stock) expect({ n, clip, bits: Array.from(native.get(n)!) }).toEqual({ n, clip, bits: Array.from(b) });
        }
        // And the native path really is a different kernel: one IceAdamW per parameter instead of the chain.
        const params = makeParams(17);
        const opt = new AdamW(params, { weightDecay: 0.05 });
        const profiled = await tf.profile(() => opt.step(allGrads[0], 1e-2));
        const names = new Set(profiled.kernels.map((k) => k.name));
        expect(names).toEqual(new Set(['IceAdamW']));
        setNativeKernelsEnabled(false);
        const stockNames = new Set((await tf.profile(() => opt.step(allGrads[0], 1e-2))).kernels.map((k) => k.name));
        expect(stockNames.has('IceAdamW')).toBe(false);
        expect(stockNames.has('Sqrt')).toBe(true);
        opt.dispose();
        disposeAll(params);
      } finally {
        setNativeKernelsEnabled(true);
        allGrads.forEach((g) => disposeAll(g));
      }
    },
  );

  it('does not leak tensors across steps, accumulation and state export', () => {
    const params = makeParams(13);
    const start = tf.memory().numTensors;
    const opt = new AdamW(params, { clipGradNorm: 1 });
    const withOpt = tf.memory().numTensors;
    expect(withOpt - start).toBe(2 * params.size);
    const acc = new GradAccumulator();
    const rng = new Rng(14);
    const counts: number[] = [];
    for (let i = 0; i < 4; i++) {
      for (let k = 0; k < 2; k++) {
        const g = new Map([...params].map(([n, p]) => [n, tf.tensor(randomValues(rng, p.shape), p.shape)]));
        acc.add(g);
        disposeAll(g);
      }
      const mean = acc.takeMean();
      opt.step(mean, 1e-3);
      disposeAll(mean);
      const st = opt.getState();
      opt.setState(st);
      disposeAll(st.m, st.v);
      counts.push(tf.memory().numTensors);
    }
    expect(counts.every((c) => c === withOpt)).toBe(true);
    acc.dispose();
    opt.dispose();
    expect(tf.memory().numTensors).toBe(start);
    expect(() => opt.step(new Map())).toThrow(IceError);
    disposeAll(params);
  });
});
