// Attention core (qkv [B*T, 3D] -> heads' outputs [B*T, D]) forward+backward on wasm.
// B=8, H=3, T=17, hd=64. node bench/micro/attention.js [rounds]
'use strict';
const { tf, init, bench, check } = require('./common');

const B = 8,
  H = 3,
  T = 17,
  hd = 64,
  D = H * hd,
  BH = B * H;
const scale = hd ** -0.5;

// ---- V1: the straightforward code (5-D transpose + unstack, matMul transposeB), autodiff
function attnV1(qkv) {
  const parts = tf.transpose(tf.reshape(qkv, [B, T, 3, H, hd]), [2, 0, 3, 1, 4]);
  const [q, k, v] = tf.unstack(parts);
  const attn = tf.softmax(tf.mul(tf.matMul(q, k, false, true), scale));
  const o = tf.matMul(attn, v);
  return tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [B * T, D]);
}
// ---- V2: as V1 but with an explicit transpose(k) and plain matMul, autodiff
function attnV2(qkv) {
  const parts = tf.transpose(tf.reshape(qkv, [B, T, 3, H, hd]), [2, 0, 3, 1, 4]);
  const [q, k, v] = tf.unstack(parts);
  const attn = tf.softmax(tf.mul(tf.matMul(q, tf.transpose(k, [0, 1, 3, 2])), scale));
  const o = tf.matMul(attn, v);
  return tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [B * T, D]);
}
// ---- V3: heads fused into the batch dim (3-D [B*H, T, hd]), scale folded into q, autodiff
function attnV3(qkv) {
  const parts = tf.reshape(tf.transpose(tf.reshape(qkv, [B, T, 3, H, hd]), [2, 0, 3, 1, 4]), [3, BH, T, hd]);
  const [q, k, v] = tf.unstack(parts);
  const attn = tf.softmax(tf.matMul(tf.mul(q, scale), k, false, true));
  const o = tf.matMul(attn, v);
  return tf.reshape(tf.transpose(tf.reshape(o, [B, H, T, hd]), [0, 2, 1, 3]), [B * T, D]);
}

// ---- V4: one customGrad for the whole core. The wasm backend runs every batched matMul
// (batch > 1) in a scalar blocked loop, whose inner loop is contiguous for both operands
// exactly when a is plain and b is transposed: so every product is written A·Bᵀ with
// transposeB=true on a materialised (small) operand. `contig=false` uses the plain forms.
function makeAttnCustom(contig) {
  const mm = contig
    ? {
        ab: (a, b) => tf.matMul(a, tf.transpose(b, [0, 2, 1]), false, true), // a·b
        abT: (a, b) => tf.matMul(a, b, false, true), // a·bᵀ
        aTb: (a, b) => tf.matMul(tf.transpose(a, [0, 2, 1]), tf.transpose(b, [0, 2, 1]), false, true),
      } // aᵀ·b
    : {
        ab: (a, b) => tf.matMul(a, b),
        abT: (a, b) => tf.matMul(a, tf.transpose(b, [0, 2, 1])),
        aTb: (a, b) => tf.matMul(tf.transpose(a, [0, 2, 1]), b),
      };
  return tf.customGrad((qkv, save) => {
    const parts = tf.reshape(tf.transpose(tf.reshape(qkv, [B, T, 3, H, hd]), [2, 0, 3, 1, 4]), [3, BH, T, hd]);
    const [q, k, v] = tf.unstack(parts); // [BH, T, hd]
    const p = tf.softmax(tf.mul(mm.abT(q, k), scale)); // [BH, T, T]
    const o = contig ? tf.matMul(p, tf.transpose(v, [0, 2, 1]), false, true) : tf.matMul(p, v);
    save([q, k, v, p]);
    return {
      value: tf.reshape(tf.transpose(tf.reshape(o, [B, H, T, hd]), [0, 2, 1, 3]), [B * T, D]),
      gradFunc: (dy, [q, k, v, p]) => {
        const dO = tf.reshape(tf.transpose(tf.reshape(dy, [B, T, H, hd]), [0, 2, 1, 3]), [BH, T, hd]);
        const dP = mm.abT(dO, v); // [BH,T,T]
        // softmax backward, scale folded in: dS = scale * p * (dP - Σ_j dP·p)
        const dS = tf.mul(p, tf.mul(tf.sub(dP, tf.sum(tf.mul(dP, p), -1, true)), scale));
        const dq = mm.ab(dS, k);
        const dk = mm.aTb(dS, q);
        const dv = mm.aTb(p, dO);
        const dparts = tf.stack([dq, dk, dv]); // [3, BH, T, hd]
        return tf.reshape(tf.transpose(tf.reshape(dparts, [3, B, H, T, hd]), [1, 3, 0, 2, 4]), [B * T, 3 * D]);
      },
    };
  });
}

// 4-D layout helpers (used by V5b/V6b): qkv [B*T,3D] -> q,k,v [BH,T,hd]; and back.
const split4 = (qkv) =>
  tf.split(tf.transpose(tf.reshape(qkv, [B, T, 3 * H, hd]), [0, 2, 1, 3]), 3, 1).map((z) => tf.reshape(z, [BH, T, hd]));
const merge4 = (dq, dk, dv) =>
  tf.reshape(
    tf.transpose(
      tf.concat(
        [dq, dk, dv].map((z) => tf.reshape(z, [B, H, T, hd])),
        1,
      ),
      [0, 2, 1, 3],
    ),
    [B * T, 3 * D],
  );

// ---- V5: block-diagonal 2-D products on the XNNPACK path. All B*H heads in one
// [BH*T, hd]·[hd, BH*T] product, off-block entries masked to -inf before softmax.
// 24x the flops of the real work but every matMul is a plain 2-D one.
const N = BH * T;
let maskAdd, maskMul; // [N, N]
function makeMasks() {
  const m = new Float32Array(N * N).fill(-1e9),
    mm = new Float32Array(N * N);
  for (let g = 0; g < BH; g++)
    for (let i = 0; i < T; i++)
      for (let j = 0; j < T; j++) {
        m[(g * T + i) * N + g * T + j] = 0;
        mm[(g * T + i) * N + g * T + j] = 1;
      }
  maskAdd = tf.tensor2d(m, [N, N]);
  maskMul = tf.tensor2d(mm, [N, N]);
}
const attnBlockDiag = tf.customGrad((qkv, save) => {
  const parts = tf.reshape(tf.transpose(tf.reshape(qkv, [B, T, 3, H, hd]), [2, 0, 3, 1, 4]), [3, N, hd]);
  const [q, k, v] = tf.unstack(parts); // [N, hd], rows ordered (b, h, t)
  const p = tf.softmax(tf.add(tf.mul(tf.matMul(q, tf.transpose(k)), scale), maskAdd)); // [N,N]
  const o = tf.matMul(p, v);
  save([q, k, v, p]);
  return {
    value: tf.reshape(tf.transpose(tf.reshape(o, [B, H, T, hd]), [0, 2, 1, 3]), [B * T, D]),
    gradFunc: (dy, [q, k, v, p]) => {
      const dO = tf.reshape(tf.transpose(tf.reshape(dy, [B, T, H, hd]), [0, 2, 1, 3]), [N, hd]);
      const dP = tf.matMul(dO, tf.transpose(v));
      const dS = tf.mul(p, tf.mul(tf.sub(dP, tf.sum(tf.mul(dP, p), -1, true)), scale));
      const dq = tf.matMul(dS, k);
      const dSt = tf.transpose(dS);
      const dk = tf.matMul(dSt, q);
      const dv = tf.matMul(tf.transpose(p), dO);
      const dparts = tf.stack([dq, dk, dv]);
      return tf.reshape(tf.transpose(tf.reshape(dparts, [3, B, H, T, hd]), [1, 3, 0, 2, 4]), [B * T, 3 * D]);
    },
  };
});

const attnBlockDiag4 = tf.customGrad((qkv, save) => {
  const [q, k, v] = split4(qkv).map((z) => tf.reshape(z, [N, hd])); // [N, hd], rows ordered (b, h, t)
  const p = tf.softmax(tf.add(tf.mul(tf.matMul(q, tf.transpose(k)), scale), maskAdd)); // [N,N]
  const o = tf.matMul(p, v);
  save([q, k, v, p]);
  return {
    value: tf.reshape(tf.transpose(tf.reshape(o, [B, H, T, hd]), [0, 2, 1, 3]), [B * T, D]),
    gradFunc: (dy, [q, k, v, p]) => {
      const dO = tf.reshape(tf.transpose(tf.reshape(dy, [B, T, H, hd]), [0, 2, 1, 3]), [N, hd]);
      const dP = tf.matMul(dO, tf.transpose(v));
      const dS = tf.mul(p, tf.mul(tf.sub(dP, tf.sum(tf.mul(dP, p), -1, true)), scale));
      const dq = tf.matMul(dS, k);
      const dSt = tf.transpose(dS);
      const dk = tf.matMul(dSt, q);
      const dv = tf.matMul(tf.transpose(p), dO);
      return merge4(dq, dk, dv);
    },
  };
});

// ---- V6: per-head 2-D matMuls (unstack to 24 [T,hd] pieces; each goes XNNPACK with a
// freshly packed tiny operand). Custom grad.
const attnPerHead = tf.customGrad((qkv, save) => {
  const parts = tf.reshape(tf.transpose(tf.reshape(qkv, [B, T, 3, H, hd]), [2, 0, 3, 1, 4]), [3, BH, T, hd]);
  const [q, k, v] = tf.unstack(parts);
  const qs = tf.unstack(q),
    ks = tf.unstack(tf.transpose(k, [0, 2, 1])),
    vs = tf.unstack(v);
  const ps = qs.map((qi, i) => tf.softmax(tf.mul(tf.matMul(qi, ks[i]), scale)));
  const o = tf.stack(ps.map((pi, i) => tf.matMul(pi, vs[i])));
  const p = tf.stack(ps);
  save([q, k, v, p]);
  return {
    value: tf.reshape(tf.transpose(tf.reshape(o, [B, H, T, hd]), [0, 2, 1, 3]), [B * T, D]),
    gradFunc: (dy, [q, k, v, p]) => {
      const dO = tf.reshape(tf.transpose(tf.reshape(dy, [B, T, H, hd]), [0, 2, 1, 3]), [BH, T, hd]);
      const dOs = tf.unstack(dO),
        vTs = tf.unstack(tf.transpose(v, [0, 2, 1]));
      const dP = tf.stack(dOs.map((d, i) => tf.matMul(d, vTs[i])));
      const dS = tf.mul(p, tf.mul(tf.sub(dP, tf.sum(tf.mul(dP, p), -1, true)), scale));
      const dSs = tf.unstack(dS),
        dSTs = tf.unstack(tf.transpose(dS, [0, 2, 1]));
      const pTs = tf.unstack(tf.transpose(p, [0, 2, 1]));
      const kk = tf.unstack(k),
        qq = tf.unstack(q);
      const dq = tf.stack(dSs.map((d, i) => tf.matMul(d, kk[i])));
      const dk = tf.stack(dSTs.map((d, i) => tf.matMul(d, qq[i])));
      const dv = tf.stack(pTs.map((d, i) => tf.matMul(d, dOs[i])));
      const dparts = tf.stack([dq, dk, dv]);
      return tf.reshape(tf.transpose(tf.reshape(dparts, [3, B, H, T, hd]), [1, 3, 0, 2, 4]), [B * T, 3 * D]);
    },
  };
});

const attnPerHead4 = tf.customGrad((qkv, save) => {
  const [q, k, v] = split4(qkv);
  const qs = tf.unstack(q),
    ks = tf.unstack(tf.transpose(k, [0, 2, 1])),
    vs = tf.unstack(v);
  const ps = qs.map((qi, i) => tf.softmax(tf.mul(tf.matMul(qi, ks[i]), scale)));
  const o = tf.stack(ps.map((pi, i) => tf.matMul(pi, vs[i])));
  const p = tf.stack(ps);
  save([q, k, v, p]);
  return {
    value: tf.reshape(tf.transpose(tf.reshape(o, [B, H, T, hd]), [0, 2, 1, 3]), [B * T, D]),
    gradFunc: (dy, [q, k, v, p]) => {
      const dO = tf.reshape(tf.transpose(tf.reshape(dy, [B, T, H, hd]), [0, 2, 1, 3]), [BH, T, hd]);
      const dOs = tf.unstack(dO),
        vTs = tf.unstack(tf.transpose(v, [0, 2, 1]));
      const dP = tf.stack(dOs.map((d, i) => tf.matMul(d, vTs[i])));
      const dS = tf.mul(p, tf.mul(tf.sub(dP, tf.sum(tf.mul(dP, p), -1, true)), scale));
      const dSs = tf.unstack(dS),
        dSTs = tf.unstack(tf.transpose(dS, [0, 2, 1]));
      const pTs = tf.unstack(tf.transpose(p, [0, 2, 1]));
      const kk = tf.unstack(k),
        qq = tf.unstack(q);
      const dq = tf.stack(dSs.map((d, i) => tf.matMul(d, kk[i])));
      const dk = tf.stack(dSTs.map((d, i) => tf.matMul(d, qq[i])));
      const dv = tf.stack(pTs.map((d, i) => tf.matMul(d, dOs[i])));
      return merge4(dq, dk, dv);
    },
  };
});

// ---- V7: as V4c but with no rank-5 transpose. The wasm Transpose kernel has fast paths
// for rank <= 4 only; rank 5 goes to a generic per-element loop (~65 ns/element).
// qkv [B*T, 3D] -> [B, T, 3H, hd] -> transpose [0,2,1,3] -> [B, 3H, T, hd] -> split axis 1.
const attnV7 = tf.customGrad((qkv, save) => {
  const t = tf.transpose(tf.reshape(qkv, [B, T, 3 * H, hd]), [0, 2, 1, 3]); // [B, 3H, T, hd]
  const [q, k, v] = tf.split(t, 3, 1).map((z) => tf.reshape(z, [BH, T, hd]));
  const p = tf.softmax(tf.mul(tf.matMul(q, k, false, true), scale)); // [BH, T, T]
  const o = tf.matMul(p, v); // [BH, T, hd]
  save([q, k, v, p]);
  return {
    value: tf.reshape(tf.transpose(tf.reshape(o, [B, H, T, hd]), [0, 2, 1, 3]), [B * T, D]),
    gradFunc: (dy, [q, k, v, p]) => {
      const dO = tf.reshape(tf.transpose(tf.reshape(dy, [B, T, H, hd]), [0, 2, 1, 3]), [BH, T, hd]);
      const dP = tf.matMul(dO, v, false, true); // [BH,T,T]
      const dS = tf.mul(p, tf.mul(tf.sub(dP, tf.sum(tf.mul(dP, p), -1, true)), scale));
      const dq = tf.matMul(dS, k);
      const dk = tf.matMul(tf.transpose(dS, [0, 2, 1]), q);
      const dv = tf.matMul(tf.transpose(p, [0, 2, 1]), dO);
      const d4 = (z) => tf.reshape(z, [B, H, T, hd]);
      const dt = tf.concat([d4(dq), d4(dk), d4(dv)], 1); // [B, 3H, T, hd]
      return tf.reshape(tf.transpose(dt, [0, 2, 1, 3]), [B * T, 3 * D]);
    },
  };
});
// ---- V8: V7 with autodiff (same 4-D layout, no customGrad) to isolate the layout win.
function attnV8(qkv) {
  const t = tf.transpose(tf.reshape(qkv, [B, T, 3 * H, hd]), [0, 2, 1, 3]);
  const [q, k, v] = tf.split(t, 3, 1).map((z) => tf.reshape(z, [BH, T, hd]));
  const p = tf.softmax(tf.mul(tf.matMul(q, k, false, true), scale));
  const o = tf.matMul(p, v);
  return tf.reshape(tf.transpose(tf.reshape(o, [B, H, T, hd]), [0, 2, 1, 3]), [B * T, D]);
}

async function main() {
  await init();
  const rounds = +(process.argv[2] || 15);
  makeMasks();
  const qkv = tf.randomNormal([B * T, 3 * D]);
  const dy = tf.randomNormal([B * T, D]);
  const V4c = makeAttnCustom(true),
    V4p = makeAttnCustom(false);
  const fns = {
    V1: attnV1,
    V2: attnV2,
    V3: attnV3,
    V4c,
    V4p,
    V5: attnBlockDiag,
    V6: attnPerHead,
    V7: attnV7,
    V8: attnV8,
    V5b: attnBlockDiag4,
    V6b: attnPerHead4,
  };
  const ref = tf.grads(attnV1)([qkv], dy);
  const refY = attnV1(qkv);
  for (const [n, f] of Object.entries(fns)) {
    if (n === 'V1') continue;
    tf.tidy(() => {
      check(`attention ${n} forward`, [f(qkv)], [refY]);
      check(`attention ${n} dqkv`, tf.grads(f)([qkv], dy), ref);
    });
  }
  const G = Object.fromEntries(Object.entries(fns).map(([n, f]) => [n, tf.grads(f)]));
  const run = (g) => () => tf.dispose(g([qkv], dy));
  console.log('\n## attention fwd+bwd (qkv [136,576] -> [136,192]), B=8 H=3 T=17 hd=64');
  const r = bench(
    {
      'V1 autodiff: 5-D transpose, matMul(q,k,F,T)': { run: run(G.V1) },
      'V2 autodiff: matMul(q, transpose(k))': { run: run(G.V2) },
      'V3 autodiff: heads in batch 3-D, q*scale': { run: run(G.V3) },
      'V4c customGrad, all A·Bᵀ (transposeB) forms': { run: run(G.V4c) },
      'V4p customGrad, plain forms + transposes': { run: run(G.V4p) },
      'V5 customGrad block-diag 2-D XNNPACK + mask': { run: run(G.V5) },
      'V6 customGrad 24 per-head 2-D matMuls': { run: run(G.V6) },
      'V7 customGrad, 4-D layout (no rank-5 transpose)': { run: run(G.V7) },
      'V8 autodiff, 4-D layout': { run: run(G.V8) },
      'V5b block-diag XNNPACK, 4-D layout': { run: run(G.V5b) },
      'V6b 24 per-head 2-D matMuls, 4-D layout': { run: run(G.V6b) },
    },
    { rounds, iters: 10 },
  );
  console.log('\n## attention forward only');
  bench(
    {
      'V1 fwd': {
        run: () =>
          tf.tidy(() => {
            attnV1(qkv);
          }),
      },
      'V4c fwd': {
        run: () =>
          tf.tidy(() => {
            V4c(qkv);
          }),
      },
      'V7 fwd': {
        run: () =>
          tf.tidy(() => {
            attnV7(qkv);
          }),
      },
    },
    { rounds, iters: 10 },
  );

  // single batched-matMul costs: [24,17,64]x[24,64,17] and [24,17,17]x[24,17,64]
  const q = tf.randomNormal([BH, T, hd]),
    k = tf.randomNormal([BH, T, hd]),
    kT = tf.transpose(k, [0, 2, 1]);
  const p = tf.softmax(tf.randomNormal([BH, T, T])),
    v = tf.randomNormal([BH, T, hd]),
    vT = tf.transpose(v, [0, 2, 1]);
  const s = tf.randomNormal([BH, T, T]);
  console.log('\n## single ops, [24,17,64] operands');
  bench(
    {
      'matMul(q,k,F,T)  q·kᵀ (contiguous)': { run: () => tf.matMul(q, k, false, true).dispose() },
      'matMul(q,kT)     q·kᵀ (strided b)': { run: () => tf.matMul(q, kT).dispose() },
      'matMul(p,v)      p·v (strided b)': { run: () => tf.matMul(p, v).dispose() },
      'matMul(p,vT,F,T) p·v (contiguous)': { run: () => tf.matMul(p, vT, false, true).dispose() },
      'matMul(p,v,T,F)  pᵀ·v': { run: () => tf.matMul(p, v, true, false).dispose() },
      'transpose [24,17,64]->[24,64,17]': { run: () => tf.transpose(k, [0, 2, 1]).dispose() },
      'transpose 5-D qkv [8,17,3,3,64] perm 2,0,3,1,4': {
        run: () => tf.transpose(tf.reshape(qkv, [B, T, 3, H, hd]), [2, 0, 3, 1, 4]).dispose(),
      },
      'transpose 4-D qkv [8,17,9,64] perm 0,2,1,3': { run: () => tf.transpose(tf.reshape(qkv, [B, T, 3 * H, hd]), [0, 2, 1, 3]).dispose() },
      'split [8,9,17,64] -> 3x[8,3,17,64]': { run: () => tf.dispose(tf.split(tf.reshape(qkv, [B, 3 * H, T, hd]), 3, 1)) },
      'concat 3x[8,3,17,64] axis 1': {
        run: () =>
          tf
            .concat(
              [q, k, v].map((z) => tf.reshape(z, [B, H, T, hd])),
              1,
            )
            .dispose(),
      },
      'softmax [24,17,17]': { run: () => tf.softmax(s).dispose() },
      'mul [24,17,17] by scalar': { run: () => tf.mul(s, scale).dispose() },
      'unstack [3,24,17,64]': { run: () => tf.dispose(tf.unstack(tf.reshape(qkv, [3, BH, T, hd]))) },
      'stack 3x[24,17,64]': { run: () => tf.stack([q, k, v]).dispose() },
    },
    { rounds, iters: 20 },
  );
  tf.dispose([qkv, dy, q, k, kT, p, v, vT, s, ref, refY, maskAdd, maskMul]);
  console.log(`# tensors alive at end: ${tf.memory().numTensors}`);
}
main();
