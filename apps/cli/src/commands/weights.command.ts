import * as path from 'node:path';
import { Command } from 'commander';
import { WeightsReport, inspectWeights, readWeights, writeSafetensors } from '@ice/core';

const fmtInt = (n: number): string => n.toLocaleString('en-US');
const fmtShape = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** The human-readable form of an inspection report (the JSON form is the report itself). */
export function formatWeightsReport(r: WeightsReport): string {
  const out: string[] = [];
  const where = r.stateDictKey ? ` (state dict under '${r.stateDictKey}')` : '';
  out.push(`${r.file}: ${r.format}${where}, ${r.tensors.length} tensors, ${fmtInt(r.totalParams)} parameters`);
  const a = r.recognized;
  if (a) {
    const heads = a.heads === null ? 'unknown' : `${a.heads}${a.headsSource === 'inferred' ? ' (inferred)' : ''}`;
    const patch = Array.isArray(a.patchSize) ? a.patchSize.join('x') : `${a.patchSize}`;
    const grid = a.gridSize === null ? 'not square' : `${a.gridSize}x${a.gridSize}`;
    out.push(
      `architecture: ViT${a.distilled ? ' (DeiT distilled: dist_token)' : ''}: embed ${a.embedDim}, depth ${a.depth}, heads ${heads}, ` +
        `mlp ${a.mlpHidden ?? '?'}, patch ${patch}, in_chans ${a.inChans}, grid ${grid} (${a.posTokens} pos tokens), classes ${a.numClasses ?? 'none'}`,
    );
    const h = a.iceHead;
    const ice =
      h.kind === 'none'
        ? 'none'
        : `${h.kind}, ${h.outputs ?? '?'} outputs${h.outputs !== null ? ` (background index ${h.outputs - 1})` : ''}` +
          `${h.hidden !== null ? `, hidden ${h.hidden}` : ''}, ${fmtInt(h.params)} parameters`;
    out.push(`ICE head: ${ice}`);
    out.push(`backbone + CLS head: ${fmtInt(a.backboneParams)} parameters`);
  } else {
    out.push('architecture: not recognised (no timm ViT keys cls_token / pos_embed / patch_embed.proj.weight)');
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  const keys = Object.entries(r.metadata);
  if (keys.length > 0) out.push(`metadata: ${keys.map(([k, v]) => `${k}=${v.length > 60 ? `${v.slice(0, 57)}...` : v}`).join('; ')}`);
  out.push('tensors:');
  const w = Math.max(...r.tensors.map((t) => t.name.length), 4);
  const sw = Math.max(...r.tensors.map((t) => fmtShape(t.shape).length), 5);
  for (const t of r.tensors) {
    out.push(`  ${t.name.padEnd(w)}  ${t.dtype.padEnd(4)}  ${fmtShape(t.shape).padEnd(sw)}  ${fmtInt(t.numel).padStart(12)}`);
  }
  if (r.unrecognized.length > 0 && a) out.push(`unrecognised keys (${r.unrecognized.length}): ${r.unrecognized.join(', ')}`);
  return `${out.join('\n')}\n`;
}

/** `ice weights ...`: look inside weight files (safetensors or zip-format PyTorch checkpoints). */
export function registerWeightsCommand(program: Command): void {
  const weights = program.command('weights').description('inspect weight files (safetensors, PyTorch .pth)');
  weights
    .command('inspect')
    .description('list tensors and parameter count, and recognise a timm ViT/DeiT with its ICE head')
    .argument('<file>', 'a .safetensors file or a zip-format PyTorch checkpoint')
    .option('--json', 'print the report as JSON')
    .option('--key <key>', "PyTorch checkpoints: take the state dict from this top-level key (e.g. 'model_ema')")
    .action((file: string, opts: { json?: boolean; key?: string }) => {
      const report = inspectWeights(file, opts.key !== undefined ? { key: opts.key } : {});
      process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatWeightsReport(report));
    });
  weights
    .command('export')
    .description('write the model weights of a training checkpoint alone (timm names, PyTorch layout), without optimizer state')
    .argument('<checkpoint>', "a checkpoint written by 'ice train' / a worker")
    .requiredOption('--out <file.safetensors>', 'where to write the weights')
    .action((file: string, opts: { out: string }) => {
      const w = readWeights(file);
      const kept = new Map([...w.tensors].filter(([name]) => !name.startsWith('optimizer.')));
      // Keep the model config and provenance; drop the training state that only a resume needs.
      const metadata = Object.fromEntries(
        Object.entries(w.metadata).filter(([k]) => !['ice_format', 'ice_train_config', 'ice_trainer_state'].includes(k)),
      );
      writeSafetensors(opts.out, kept, { ...metadata, exported_from: path.basename(file) });
      process.stdout.write(`${JSON.stringify({ out: opts.out, tensors: kept.size, dropped: w.tensors.size - kept.size })}\n`);
    });
}
