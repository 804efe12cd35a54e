import * as tf from '@tensorflow/tfjs-core';

/**
 * Linear layer on a 2-D input: y = x @ w + b with w kept as [in, out] (the transpose of
 * PyTorch's [out, in]) so that the forward product needs no transpose.
 * x: [M, in], w: [in, out], b: [out] -> [M, out]
 */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor2D {
  const y = tf.matMul(x, w);
  return b ? tf.add(y, b) : y;
}
