// Linear layer forward+backward on the wasm backend, several formulations side by side.
// node bench/micro/linear.js [rounds]
'use strict';
const { tf, init, bench, check } = require('./common');

// --- formulations -------------------------------------------------------------
// A: autodiff of tf.matMul (default grad uses matMul(dy, W, false, true) and
//    matMul(x, dy, true, false): both leave the XNNPACK path).
const linAuto = (x, W) => tf.matMul(x, W);

// B: custom grad, plain matMul on both products (transpose done explicitly).
const linCustom = tf.customGrad((x, W, save) => {
  save([x, W]);
  return {
    value: tf.matMul(x, W),
    gradFunc: (dy, [x, W]) => [tf.matMul(dy, tf.transpose(W)), tf.matMul(tf.transpose(x), dy)],
  };
});

// B2: as B but dW^T = dy^T x, transposed back (transpose lands on dy / on the [N,K] result).
const linCustomDWT = tf.customGrad((x, W, save) => {
  save([x, W]);
  return {
    value: tf.matMul(x, W),
    gradFunc: (dy, [x, W]) => [tf.matMul(dy, tf.transpose(W)), tf.transpose(tf.matMul(tf.transpose(dy), x))],
  };
});

// C: cached transposed weight (WT supplied from outside, kept across calls).
function makeLinCachedWT(getWT) {
  return tf.customGrad((x, W, save) => {
    save([x]);
    return {
      value: tf.matMul(x, W),
      gradFunc: (dy, [x]) => [tf.matMul(dy, getWT()), tf.matMul(tf.transpose(x), dy)],
    };
  });
}

// D: weight stored [out,in] (torch layout). Forward y = x · transpose(Wt),
//    dx = dy · Wt (plain, Wt packed & cached), dWt = transpose(dy) · x.
const linOutIn = tf.customGrad((x, Wt, save) => {
  save([x, Wt]);
  return {
    value: tf.matMul(x, tf.transpose(Wt)),
    gradFunc: (dy, [x, Wt]) => [tf.matMul(dy, Wt), tf.matMul(tf.transpose(dy), x)],
  };
});

// E: like B plus bias fused into the XNNPACK op (tf.fused.matMul), db = sum(dy, 0).
const linFusedBias = tf.customGrad((x, W, b, save) => {
  save([x, W]);
  return {
    value: tf.fused.matMul({ a: x, b: W, bias: b }),
    gradFunc: (dy, [x, W]) => [tf.matMul(dy, tf.transpose(W)), tf.matMul(tf.transpose(x), dy), tf.sum(dy, 0)],
  };
});
// E0: unfused reference: add(matMul(x, W), b) with custom matMul grad (B).
const linAddBias = (x, W, b) => tf.add(linCustom(x, W), b);

async function main() {
  await init();
  const rounds = +(process.argv[2] || 15);
  const shapes = [
    [136, 192, 576],
    [136, 192, 768],
    [136, 768, 192],
  ];
  const summary = {};
  for (const [M, K, N] of shapes) {
    console.log(`\n## linear [${M},${K}]x[${K},${N}]`);
    const x = tf.randomNormal([M, K]);
    const dy = tf.randomNormal([M, N]);
    const b = tf.randomNormal([N]);
    let W = tf.randomNormal([K, N], 0, 0.05);
    let Wt = tf.transpose(W);
    let WT = tf.transpose(W); // cached transposed copy for C

    // numerical checks vs autodiff
    const gA = tf.grads(linAuto)([x, W], dy);
    check(`B custom  ${K}x${N}`, tf.grads(linCustom)([x, W], dy), gA);
    check(`B2 dWT    ${K}x${N}`, tf.grads(linCustomDWT)([x, W], dy), gA);
    check(`C cached  ${K}x${N}`, tf.grads(makeLinCachedWT(() => WT))([x, W], dy), gA);
    const gD = tf.grads(linOutIn)([x, Wt], dy);
    check(`D out,in  ${K}x${N}`, [gD[0], tf.transpose(gD[1])], gA);
    const gRefBias = tf.grads((x, W, b) => tf.add(tf.matMul(x, W), b))([x, W, b], dy);
    check(`E fusedb  ${K}x${N}`, tf.grads(linFusedBias)([x, W, b], dy), gRefBias);

    const gAuto = tf.grads(linAuto),
      gB = tf.grads(linCustom),
      gB2 = tf.grads(linCustomDWT);
    const gC = tf.grads(makeLinCachedWT(() => WT)),
      gD2 = tf.grads(linOutIn);
    const gE = tf.grads(linFusedBias),
      gE0 = tf.grads(linAddBias);
    const run = (g, args) => () => tf.dispose(g(args(), dy));

    // "fresh" mode: the weight tensor is new before every call, as after an optimizer
    // step (XNNPACK must create+pack a new operator for it). This is the realistic case.
    const freshen = () => {
      const W2 = tf.tidy(() => tf.add(W, 0));
      W.dispose();
      W = W2;
      const Wt2 = tf.tidy(() => tf.add(Wt, 0));
      Wt.dispose();
      Wt = Wt2;
    };
    console.log('-- fresh weights each call (realistic training step)');
    const rf = bench(
      {
        'A autodiff matMul': { prep: freshen, run: run(gAuto, () => [x, W]) },
        'B customGrad dx=dy·T(W), dW=T(x)·dy': { prep: freshen, run: run(gB, () => [x, W]) },
        'B2 customGrad dW=T(T(dy)·x)': { prep: freshen, run: run(gB2, () => [x, W]) },
        'D [out,in] layout x·T(Wt), dx=dy·Wt': { prep: freshen, run: run(gD2, () => [x, Wt]) },
        'E0 B + add(bias)': { prep: freshen, run: run(gE0, () => [x, W, b]) },
        'E fused.matMul bias, custom grad': { prep: freshen, run: run(gE, () => [x, W, b]) },
      },
      { rounds },
    );
    console.log('-- cached weights (same W tensor every call; upper bound)');
    const rc = bench(
      {
        'A autodiff matMul': { run: run(gAuto, () => [x, W]) },
        'B customGrad dx=dy·T(W), dW=T(x)·dy': { run: run(gB, () => [x, W]) },
        'C cached WT (WT kept across calls)': { run: run(gC, () => [x, W]) },
        'D [out,in] layout x·T(Wt), dx=dy·Wt': { run: run(gD2, () => [x, Wt]) },
      },
      { rounds },
    );

    // building-block op costs
    console.log('-- single ops');
    const Wf = () => {
      const W2 = tf.tidy(() => tf.add(W, 0));
      W.dispose();
      W = W2;
    };
    const xT = tf.transpose(x),
      dyT = tf.transpose(dy);
    const ro = bench(
      {
        'matMul(x,W) cached W': { run: () => tf.matMul(x, W).dispose() },
        'matMul(x,W) fresh W (pack each call)': { prep: Wf, run: () => tf.matMul(x, W).dispose() },
        'matMul(x,Wt,false,true) (slow loop)': { run: () => tf.matMul(x, Wt, false, true).dispose() },
        'matMul(dy,W,false,true) [dx, slow]': { run: () => tf.matMul(dy, W, false, true).dispose() },
        'matMul(dy,WT) [dx, cached]': { run: () => tf.matMul(dy, WT).dispose() },
        'matMul(x,dy,true,false) [dW, slow]': { run: () => tf.matMul(x, dy, true, false).dispose() },
        'matMul(xT,dy) [dW, dy packed]': { run: () => tf.matMul(xT, dy).dispose() },
        'matMul(dyT,x) [dW^T, x packed]': { run: () => tf.matMul(dyT, x).dispose() },
        'transpose(W) KxN': { run: () => tf.transpose(W).dispose() },
        'transpose(x) MxK': { run: () => tf.transpose(x).dispose() },
        'transpose(dy) MxN': { run: () => tf.transpose(dy).dispose() },
        'add(W,0) (copy cost, for reference)': { run: () => tf.add(W, 0).dispose() },
      },
      { rounds: Math.max(5, rounds >> 1) },
    );
    summary[`${K}x${N}`] = { fresh: rf, cached: rc, ops: ro };
    tf.dispose([x, dy, b, W, Wt, WT, xT, dyT, gA, gD, gRefBias]);
  }
  console.log('\nJSON ' + JSON.stringify(summary));
  console.log(`# tensors alive at end: ${tf.memory().numTensors}`);
}
main();
