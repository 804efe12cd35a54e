// LayerNorm and exact GELU forward+backward (custom grad vs autodiff), plus per-op /
// tidy overhead and wasm-relevant flags. node bench/micro/norm_gelu.js [rounds]
'use strict';
const { tf, init, bench, check } = require('./common');

const EPS = 1e-6;

// ---- LayerNorm over the last axis, x [M, D], gamma/beta [D]
// A: autodiff of the straightforward formula (tf.moments)
function lnAuto(x, g, b) {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, EPS))), g), b);
}
// B: custom grad, closed-form dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = dy·γ
const lnCustom = tf.customGrad((x, g, b, save) => {
  const mean = tf.mean(x, -1, true);
  const xc = tf.sub(x, mean);
  const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), EPS));
  const xhat = tf.mul(xc, rstd);
  save([xhat, rstd, g]);
  return {
    value: tf.add(tf.mul(xhat, g), b),
    gradFunc: (dy, [xhat, rstd, g]) => {
      const gh = tf.mul(dy, g);
      const dx = tf.mul(rstd, tf.sub(tf.sub(gh, tf.mean(gh, -1, true)), tf.mul(xhat, tf.mean(tf.mul(gh, xhat), -1, true))));
      return [dx, tf.sum(tf.mul(dy, xhat), 0), tf.sum(dy, 0)];
    },
  };
});
// C: as B, forward via tf.moments and squaredDifference (fewer passes)
const lnCustom2 = tf.customGrad((x, g, b, save) => {
  const { mean, variance } = tf.moments(x, -1, true);
  const rstd = tf.rsqrt(tf.add(variance, EPS));
  const xhat = tf.mul(tf.sub(x, mean), rstd);
  save([xhat, rstd, g]);
  return {
    value: tf.add(tf.mul(xhat, g), b),
    gradFunc: (dy, [xhat, rstd, g]) => {
      const gh = tf.mul(dy, g);
      const D = xhat.shape[1];
      // one sum of [gh, gh·x̂] stacked would need a concat; two means are cheaper here
      const dx = tf.mul(
        tf.mul(rstd, 1 / D),
        tf.sub(tf.sub(tf.mul(gh, D), tf.sum(gh, -1, true)), tf.mul(xhat, tf.sum(tf.mul(gh, xhat), -1, true))),
      );
      return [dx, tf.sum(tf.mul(dy, xhat), 0), tf.sum(dy, 0)];
    },
  };
});

// ---- exact GELU 0.5·x·(1+erf(x/√2))
function geluAuto(x) {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
// B: custom grad, saves x and Φ(x); dx = dy·(Φ(x) + x·φ(x)), φ(x) = exp(−x²/2)/√(2π)
const geluCustom = tf.customGrad((x, save) => {
  const cdf = tf.mul(tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1), 0.5);
  save([x, cdf]);
  return {
    value: tf.mul(x, cdf),
    gradFunc: (dy, [x, cdf]) => {
      const pdf = tf.mul(tf.exp(tf.mul(tf.square(x), -0.5)), INV_SQRT_2PI);
      return tf.mul(dy, tf.add(cdf, tf.mul(x, pdf)));
    },
  };
});
// C: custom grad, saves only x, recomputes Φ in backward
const geluCustomRecompute = tf.customGrad((x, save) => {
  save([x]);
  return {
    value: tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)),
    gradFunc: (dy, [x]) => {
      const cdf = tf.mul(tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1), 0.5);
      const pdf = tf.mul(tf.exp(tf.mul(tf.square(x), -0.5)), INV_SQRT_2PI);
      return tf.mul(dy, tf.add(cdf, tf.mul(x, pdf)));
    },
  };
});

// D: custom grad with erf from Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7) built from
// cheap elementwise ops. wasm's Erf (and Tanh) kernels cost ~25-30 ns/element vs ~0.15 ns
// for mul/add; Exp ~10 ns. The A&S form needs exp(-x²/2), which is also the GELU pdf
// term, so the backward pass needs no transcendental at all.
const AS_P = 0.3275911 * Math.SQRT1_2; // p / √2: t = 1/(1 + p·|x|/√2)
const AS_A = [0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429].map((a) => 0.5 * a);
const geluCustomAS = tf.customGrad((x, save) => {
  const ax = tf.abs(x);
  const t = tf.div(1, tf.add(tf.mul(ax, AS_P), 1)); // div by tensor: 3x cheaper than Reciprocal
  let poly = tf.mul(t, AS_A[4]);
  for (let i = 3; i >= 0; i--) poly = tf.mul(tf.add(poly, AS_A[i]), t);
  const e = tf.exp(tf.mul(tf.square(x), -0.5)); // exp(-z²), z = x/√2
  const q = tf.mul(poly, e); // 0.5·(1 - erf(|z|))
  // Φ(x) = 0.5 + sign(x)·(0.5 − q); sign(x) as x/(|x|+1e-30): wasm's Sign kernel is ~50x slower
  const cdf = tf.add(tf.mul(tf.div(x, tf.add(ax, 1e-30)), tf.sub(0.5, q)), 0.5);
  save([x, cdf, e]);
  return {
    value: tf.mul(x, cdf),
    gradFunc: (dy, [x, cdf, e]) => tf.mul(dy, tf.add(cdf, tf.mul(tf.mul(x, e), INV_SQRT_2PI))),
  };
});

async function main() {
  await init();
  const rounds = +(process.argv[2] || 15);
  const M = 136,
    D = 192,
    F = 768;

  // LayerNorm
  const x = tf.randomNormal([M, D], 0.3, 2),
    g = tf.randomNormal([D], 1, 0.1),
    b = tf.randomNormal([D], 0, 0.1);
  const dy = tf.randomNormal([M, D]);
  const ref = tf.grads(lnAuto)([x, g, b], dy);
  check('LayerNorm custom B fwd', [lnCustom(x, g, b)], [lnAuto(x, g, b)]);
  check('LayerNorm custom B grads', tf.grads(lnCustom)([x, g, b], dy), ref);
  check('LayerNorm custom C grads', tf.grads(lnCustom2)([x, g, b], dy), ref);
  const GA = tf.grads(lnAuto),
    GB = tf.grads(lnCustom),
    GC = tf.grads(lnCustom2);
  console.log(`\n## LayerNorm [${M},${D}] fwd+bwd`);
  bench(
    {
      'A autodiff (moments)': { run: () => tf.dispose(GA([x, g, b], dy)) },
      'B customGrad closed form (mean/sub/square)': { run: () => tf.dispose(GB([x, g, b], dy)) },
      'C customGrad closed form (moments)': { run: () => tf.dispose(GC([x, g, b], dy)) },
    },
    { rounds, iters: 50 },
  );

  // GELU
  const h = tf.randomNormal([M, F], 0, 1.5),
    dh = tf.randomNormal([M, F]);
  const gref = tf.grads(geluAuto)([h], dh);
  check('GELU custom B fwd', [geluCustom(h)], [geluAuto(h)]);
  check('GELU custom B grad', tf.grads(geluCustom)([h], dh), gref);
  check('GELU custom C grad', tf.grads(geluCustomRecompute)([h], dh), gref);
  check('GELU custom D (A&S erf) fwd', [geluCustomAS(h)], [geluAuto(h)]);
  check('GELU custom D (A&S erf) grad', tf.grads(geluCustomAS)([h], dh), gref);
  {
    // wider range check of the A&S GELU
    const xs = tf.linspace(-8, 8, 20001),
      ones = tf.onesLike(xs);
    check('GELU D fwd on [-8,8]', [geluCustomAS(xs)], [geluAuto(xs)]);
    check('GELU D grad on [-8,8]', tf.grads(geluCustomAS)([xs], ones), tf.grads(geluAuto)([xs], ones));
  }
  const HA = tf.grads(geluAuto),
    HB = tf.grads(geluCustom),
    HC = tf.grads(geluCustomRecompute),
    HD = tf.grads(geluCustomAS);
  console.log(`\n## GELU (erf) [${M},${F}] fwd+bwd`);
  bench(
    {
      'A autodiff': { run: () => tf.dispose(HA([h], dh)) },
      'B customGrad, saves Φ(x)': { run: () => tf.dispose(HB([h], dh)) },
      'C customGrad, recomputes Φ(x)': { run: () => tf.dispose(HC([h], dh)) },
      'D customGrad, A&S erf polynomial, saves Φ and exp': { run: () => tf.dispose(HD([h], dh)) },
    },
    { rounds, iters: 50 },
  );
  console.log(`\n## elementwise op costs on [${M},${F}] (${M * F} elements)`);
  bench(
    {
      abs: { run: () => tf.abs(h).dispose() },
      sign: { run: () => tf.sign(h).dispose() },
      'div(h, h)': { run: () => tf.div(h, h).dispose() },
      reciprocal: { run: () => tf.reciprocal(h).dispose() },
      erf: { run: () => tf.erf(h).dispose() },
      exp: { run: () => tf.exp(h).dispose() },
      'mul(h, h)': { run: () => tf.mul(h, h).dispose() },
      'mul(h, scalar)': { run: () => tf.mul(h, 0.5).dispose() },
      'add(h, scalar)': { run: () => tf.add(h, 1).dispose() },
      square: { run: () => tf.square(h).dispose() },
      tanh: { run: () => tf.tanh(h).dispose() },
      'sum axis -1 keepDims': { run: () => tf.sum(h, -1, true).dispose() },
      'sum axis 0': { run: () => tf.sum(h, 0).dispose() },
    },
    { rounds, iters: 50 },
  );

  // Overhead of tiny ops and tidy
  const s1 = tf.scalar(1),
    v192 = tf.randomNormal([D]);
  const sc = tf.scalar(0.5);
  console.log('\n## per-op / tidy overhead');
  bench(
    {
      'add(scalar, scalar) (1 op, no tidy)': { run: () => tf.add(s1, s1).dispose() },
      'add([192],[192])': { run: () => tf.add(v192, v192).dispose() },
      'mul([192], js number) (creates a scalar)': { run: () => tf.mul(v192, 0.5).dispose() },
      'mul([192], cached scalar tensor)': { run: () => tf.mul(v192, sc).dispose() },
      'reshape [192]->[1,192]': { run: () => tf.reshape(v192, [1, D]).dispose() },
      'tf.tidy(() => {}) empty': { run: () => tf.tidy(() => {}) },
      'tf.tidy 10 small adds': {
        run: () =>
          tf.tidy(() => {
            let a = v192;
            for (let i = 0; i < 10; i++) a = tf.add(a, v192);
          }),
      },
      'grads of 10 small adds (tape + backprop)': {
        run: () =>
          tf.dispose(
            tf.grads((a) => {
              let z = a;
              for (let i = 0; i < 10; i++) z = tf.add(z, v192);
              return z;
            })([v192], v192),
          ),
      },
    },
    { rounds, iters: 200 },
  );

  // Flags: PROD only silences warnings; DEBUG profiles every kernel (dataSync + NaN check).
  console.log('\n## flags: LayerNorm fwd+bwd with DEBUG / PROD');
  const runLn = () => tf.dispose(GB([x, g, b], dy));
  const flagRun = (k, v) => ({ prep: () => tf.env().set(k, v), run: runLn });
  const warn = console.warn;
  console.warn = () => {};
  bench(
    {
      defaults: {
        prep: () => {
          tf.env().set('DEBUG', false);
          tf.env().set('PROD', false);
        },
        run: runLn,
      },
      'PROD=true (tf.enableProdMode)': flagRun('PROD', true),
    },
    { rounds: Math.max(5, rounds >> 1), iters: 50 },
  );
  tf.env().set('PROD', false);
  console.warn = warn;
  // DEBUG=true profiles every kernel (sync read + NaN scan + console log); measured ~7x slower
  console.log(`# tensors alive at end: ${tf.memory().numTensors}`);
}
main();
