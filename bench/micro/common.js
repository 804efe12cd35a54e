// Shared helpers for the wasm micro-benchmarks (plain JS, run from /work/main).
'use strict';
const tf = require('@tensorflow/tfjs-core');
require('./register-grads'); // tfjs-core's CJS bundle registers no gradients
require('@tensorflow/tfjs-backend-wasm');
const { performance } = require('perf_hooks');

async function init() {
  await tf.setBackend('wasm');
  await tf.ready();
  console.log(
    `# backend=${tf.getBackend()} simd=${tf.env().getBool('WASM_HAS_SIMD_SUPPORT')} ` +
      `threads=${tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT')} node=${process.version}`,
  );
  return tf;
}

function median(a) {
  const s = [...a].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Side-by-side timing. variants: {name: {setup?(): void, run(): void, teardown?()}}
 * `prep()` (untimed) runs before each timed call; `run()` is timed and must dispose
 * everything it creates. Rounds interleave the variants (round-robin) so that machine
 * noise hits all of them alike; the figure reported is the median over rounds of the
 * mean ms/call within a round.
 */
function bench(variants, { rounds = 15, iters = 20, warmup = 5 } = {}) {
  const names = Object.keys(variants);
  const per = Object.fromEntries(names.map((n) => [n, []]));
  for (const n of names) {
    const v = variants[n];
    for (let i = 0; i < warmup; i++) {
      if (v.prep) v.prep();
      v.run();
    }
  }
  for (let r = 0; r < rounds; r++) {
    for (const n of names) {
      const v = variants[n];
      let t = 0;
      for (let i = 0; i < iters; i++) {
        if (v.prep) v.prep();
        const t0 = performance.now();
        v.run();
        t += performance.now() - t0;
      }
      per[n].push(t / iters);
    }
  }
  const res = {};
  const base = median(per[names[0]]);
  for (const n of names) {
    const m = median(per[n]);
    res[n] = m;
    console.log(
      `${n.padEnd(48)} ${m.toFixed(4).padStart(9)} ms/call  (x${(base / m).toFixed(2)} vs first)` +
        `  [min ${Math.min(...per[n]).toFixed(4)}]`,
    );
  }
  return res;
}

/** max |a-b| / max(1, max|b|) over lists of tensors */
function maxRelDiff(as, bs) {
  let worst = 0;
  for (let i = 0; i < as.length; i++) {
    const a = as[i].dataSync(),
      b = bs[i].dataSync();
    if (a.length !== b.length) throw new Error(`length mismatch at ${i}: ${a.length} vs ${b.length}`);
    let md = 0,
      mb = 0;
    for (let j = 0; j < a.length; j++) {
      md = Math.max(md, Math.abs(a[j] - b[j]));
      mb = Math.max(mb, Math.abs(b[j]));
    }
    worst = Math.max(worst, md / Math.max(1, mb));
  }
  return worst;
}

function check(label, got, ref, tol = 1e-5) {
  const d = maxRelDiff(got, ref);
  const ok = d <= tol;
  console.log(`CHECK ${label}: max rel diff ${d.toExponential(2)} ${ok ? 'OK' : 'FAIL'}`);
  if (!ok) process.exitCode = 1;
  return d;
}

module.exports = { tf, init, bench, median, check, maxRelDiff, performance };
