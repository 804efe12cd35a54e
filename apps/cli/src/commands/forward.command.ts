import { Command } from 'commander';
import * as tf from '@tensorflow/tfjs-core';
import { IceError, initBackend, loadModel, readSafetensors, StateDict, writeSafetensors } from '@ice/core';

interface ForwardArgs {
  weights: string;
  model: string;
  input: string;
  out: string;
}

/**
 * `ice forward`: runs any checkpoint on an input tensor and writes the outputs that the golden
 * files pin down, so that a checkpoint's numerics can be compared with PyTorch without code.
 */
export async function runForward(args: ForwardArgs, log: (m: string) => void = console.error): Promise<string[]> {
  await initBackend(undefined, log);
  const inputFile = readSafetensors(args.input);
  const input = inputFile.tensors.get('input');
  if (!input) {
    throw new IceError(
      'INPUT_INVALID',
      `${args.input} has no tensor named "input" (found: ${[...inputFile.tensors.keys()].join(', ') || 'none'})`,
    );
  }
  if (input.dtype !== 'F32' || input.shape.length !== 4) {
    throw new IceError(
      'INPUT_INVALID',
      `${args.input}: "input" must be NCHW float32 (rank 4, F32), got ${input.dtype} [${input.shape.join(', ')}]`,
    );
  }
  const [, , H, W] = input.shape;
  if (H !== W) throw new IceError('INPUT_INVALID', `${args.input}: "input" must be square, got ${H}×${W}`);
  const { model, config, report } = loadModel(args.weights, args.model, { imgSize: H });
  if (report.posEmbedResampled)
    log(`pos_embed resampled from ${report.posEmbedResampled.from}² to ${report.posEmbedResampled.to}² patches`);
  try {
    const out: StateDict = new Map();
    const put = async (name: string, t: tf.Tensor): Promise<void> => {
      out.set(name, { dtype: 'F32', shape: t.shape, data: await t.data() });
    };
    const x = tf.tensor4d(input.data as Float32Array, input.shape as [number, number, number, number]);
    const res = model.forward(x, { returnAttention: true });
    await put('cls_logits', res.clsLogits);
    await put('prenorm_patch_tokens', res.prenormPatchTokens);
    for (const [i, a] of (res.attention ?? []).entries()) await put(`attn_probs.${i}`, a);
    if (res.zIce) await put('z_ice', res.zIce);
    tf.dispose([x, res.clsLogits, res.prenormPatchTokens, ...(res.attention ?? []), ...(res.zIce ? [res.zIce] : [])]);
    writeSafetensors(args.out, out, { format: 'pt', ice_config: JSON.stringify(config), source_weights: args.weights });
    return [...out.keys()];
  } finally {
    model.dispose();
  }
}

export function registerForwardCommand(program: Command): void {
  program
    .command('forward')
    .description('run a checkpoint on an input tensor (safetensors "input", NCHW float32) and write its outputs')
    .requiredOption('--weights <file>', 'weights: .safetensors or PyTorch .pth (timm/DeiT/ICE names)')
    .requiredOption('--model <preset|config.json>', 'model preset name or JSON config')
    .requiredOption('--input <file.safetensors>', 'file with a tensor named "input", NCHW float32, already normalised')
    .requiredOption('--out <file.safetensors>', 'where to write cls_logits, prenorm_patch_tokens, attn_probs.<i>, z_ice')
    .action(async (opts: ForwardArgs) => {
      const names = await runForward(opts);
      console.log(JSON.stringify({ out: opts.out, tensors: names }));
    });
}
