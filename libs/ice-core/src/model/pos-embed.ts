/**
 * Resampling of a learned position embedding to another patch grid, as timm's
 * `resample_abs_pos_embed`: the CLS row is kept, the grid is resized with PyTorch's bicubic
 * interpolation (A = −0.75, align_corners = False, no antialiasing, border indices clamped).
 */
const A = -0.75;

function cubic1(x: number): number {
  return ((A + 2) * x - (A + 3)) * x * x + 1; // |x| ≤ 1
}

function cubic2(x: number): number {
  return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; // 1 < |x| < 2
}

/** Source index and the four tap weights for each output index along one axis. */
function taps(inSize: number, outSize: number): { base: number[]; w: number[][] } {
  const scale = inSize / outSize;
  const base: number[] = [];
  const w: number[][] = [];
  for (let o = 0; o < outSize; o++) {
    const src = (o + 0.5) * scale - 0.5; // not clamped for cubic, as PyTorch
    const i0 = Math.floor(src);
    const t = src - i0;
    base.push(i0);
    w.push([cubic2(t + 1), cubic1(t), cubic1(1 - t), cubic2(2 - t)]);
  }
  return { base, w };
}

/**
 * Bicubic resize of a [inH, inW, C] channel-last grid (float64 accumulation).
 * Exported for tests and for maps that want PyTorch's bicubic.
 */
export function bicubicResize(src: ArrayLike<number>, inH: number, inW: number, C: number, outH: number, outW: number): Float64Array {
  const ty = taps(inH, outH);
  const tx = taps(inW, outW);
  const clamp = (v: number, n: number): number => (v < 0 ? 0 : v >= n ? n - 1 : v);
  const out = new Float64Array(outH * outW * C);
  for (let oy = 0; oy < outH; oy++) {
    for (let ox = 0; ox < outW; ox++) {
      const o = (oy * outW + ox) * C;
      for (let a = 0; a < 4; a++) {
        const y = clamp(ty.base[oy] - 1 + a, inH);
        const wy = ty.w[oy][a];
        for (let b = 0; b < 4; b++) {
          const x = clamp(tx.base[ox] - 1 + b, inW);
          const wxy = wy * tx.w[ox][b];
          const s = (y * inW + x) * C;
          for (let ch = 0; ch < C; ch++) out[o + ch] += wxy * src[s + ch];
        }
      }
    }
  }
  return out;
}

/** pos_embed data [1, 1 + g², D] → [1, 1 + newGrid², D]. */
export function resamplePosEmbed(data: Float32Array, tokens: number, newGrid: number, D: number): Float32Array {
  const g = Math.round(Math.sqrt(tokens - 1));
  const out = new Float32Array((1 + newGrid * newGrid) * D);
  out.set(data.subarray(0, D)); // CLS position
  out.set(bicubicResize(data.subarray(D), g, g, D, newGrid, newGrid), D);
  return out;
}
