/**
 * `npm run dynamics -- --config run.json [--set loss.lambdaClass=0.975 ...] [--every 10] [--eval-every 50] [--probe 128] [--out f.json]`
 *
 * Trains one ICE run on the same batch stream, trainer and schedule as `ice train`, and records how
 * the two terms of the adversarial-normalization loss pull on the model while it learns: every
 * `--every` updates, on that update's batch (before the update), the norms of the class term's and
 * of the (gated, weighted) background term's gradients over all parameters, over the ICE head, and
 * on the head's background column, their cosine, the gate and the batch's foreground fraction; every
 * `--eval-every` updates, the foreground fraction, foreground IoU, mIoU and ICE top-1 on a fixed
 * probe of test images. This is the evidence behind docs/collapse.md. Prints JSON lines, then a
 * summary; `--out` also writes the whole record.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import * as tf from '@tensorflow/tfjs-core';
import { iceLoss, IceTrainer, IceVit, initBackend, lossConfigAt, readWeights, vitConfig, type IceLossConfig } from '@ice/core';
import { batchNCHW, type VisionDataset } from '@ice/datasets';
import { blockMean } from '@ice/evaluation';
import { evaluateRun, loadSamples, openRunData, parseRunConfig, TrainBatchStream, trainConfigFor, type RunConfig } from '@ice/experiments';

/**
 * Per-patch margins of the ICE head on the first `n` images: m_p = max_k z_pk − z_p,bg (a patch is
 * foreground iff m_p > 0), split by the ground truth (a patch is an object patch when ≥ 10 % of its
 * pixels are digit ink). A head that ranks object patches above clutter but puts every margin above
 * 0 gives an all-foreground map with a positive gap.
 */
async function patchMargins(model: IceVit, ds: VisionDataset, n: number): Promise<Record<string, number>> {
  const samples = await loadSamples(
    ds,
    Array.from({ length: Math.min(n, ds.length) }, (_, i) => i),
  );
  const { patchSize: P, imgSize: S, numClasses: c } = model.config;
  const g = S / P;
  const batch = batchNCHW(samples, model.config.mean, model.config.std);
  const margins = tf.tidy(() => {
    const z = model.forward(tf.tensor4d(batch.x, batch.shape)).zIce!; // [B, N, c+1]
    const cls = tf.max(tf.slice(z, [0, 0, 0], [-1, -1, c]), -1); // [B, N]
    return tf.sub(cls, tf.squeeze(tf.slice(z, [0, 0, c], [-1, -1, 1]), [2])).dataSync(); // [B, N]
  });
  const obj: number[] = [];
  const clutter: number[] = [];
  samples.forEach((s, b) => {
    const ink = blockMean((s as { mask?: Uint8Array }).mask!, S, P); // [g·g] ink share per patch
    ink.forEach((share, p) => (share >= 0.1 ? obj : clutter).push(margins[b * g * g + p]));
  });
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const sd = (xs: number[]): number => Math.sqrt(mean(xs.map((x) => (x - mean(xs)) ** 2)));
  const all = [...obj, ...clutter];
  return {
    margin_obj: mean(obj),
    margin_clutter: mean(clutter),
    margin_gap: mean(obj) - mean(clutter),
    margin_sd: sd(all),
    fg_obj: obj.filter((m) => m > 0).length / Math.max(1, obj.length),
    fg_clutter: clutter.filter((m) => m > 0).length / Math.max(1, clutter.length),
  };
}

interface Options {
  config: string;
  set: string[];
  every: string;
  evalEvery: string;
  probe: string;
  out?: string;
}

/** `a.b=1` → sets config.a.b = 1 (JSON value, else string). */
function applySet(target: Record<string, unknown>, assignment: string): void {
  const eq = assignment.indexOf('=');
  if (eq < 1) throw new Error(`--set expects path=value, got ${assignment}`);
  const keys = assignment.slice(0, eq).split('.');
  const raw = assignment.slice(eq + 1);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = raw;
  }
  let node = target;
  for (const k of keys.slice(0, -1)) {
    if (['__proto__', 'constructor', 'prototype'].includes(k)) throw new Error(`--set: ${k} is not a config key`);
    node = (node[k] ??= {}) as Record<string, unknown>;
  }
  node[keys[keys.length - 1]] = value;
}

function norm(ts: tf.Tensor[]): number {
  return Math.sqrt(ts.reduce((s, t) => s + tf.tidy(() => tf.sum(tf.square(t)).dataSync()[0]), 0));
}

function dot(a: tf.Tensor[], b: tf.Tensor[]): number {
  return a.reduce((s, t, i) => s + tf.tidy(() => tf.sum(tf.mul(t, b[i])).dataSync()[0]), 0);
}

/** Gradients of the loss total under `loss`, by parameter name, on un-mixed targets. */
function lossGrads(model: IceVit, x: tf.Tensor4D, targets: tf.Tensor2D, loss: IceLossConfig, vars: tf.Variable[]): Map<string, tf.Tensor> {
  const byVar = new Map([...model.params].map(([n, v]) => [v.name, n]));
  const { grads, value } = tf.variableGrads(() => iceLoss(model.forward(x).zIce!, targets, loss).total, vars);
  value.dispose();
  return new Map(Object.entries(grads).map(([k, g]) => [byVar.get(k)!, g]));
}

async function main(): Promise<void> {
  const o = new Command()
    .requiredOption('--config <file>', 'run config JSON (an ICE run)')
    .option('--set <path=value...>', 'override config fields', [])
    .option('--every <n>', 'split the gradient every n updates', '10')
    .option('--eval-every <n>', 'score the probe every n updates', '50')
    .option('--probe <n>', 'test images in the probe', '128')
    .option('--out <file>', 'write the record as JSON')
    .parse(process.argv)
    .opts<Options>();
  const raw = JSON.parse(fs.readFileSync(o.config, 'utf8')) as Record<string, unknown>;
  for (const s of o.set) applySet(raw, s);
  const config: RunConfig = parseRunConfig(raw);
  if (config.mode !== 'ice') throw new Error('dynamics needs an ICE run (mode "ice")');
  if (config.worldSize !== 1) throw new Error('dynamics trains one rank');
  const every = Number(o.every);
  const evalEvery = Number(o.evalEvery);
  const probeConfig: RunConfig = { ...config, data: { ...config.data, evalLimit: Number(o.probe) } };
  const backend = await initBackend(undefined, (m) => console.error(m));

  const base = vitConfig(config.model.preset);
  const { train, evaluation } = openRunData(config, base.imgSize);
  const model = IceVit.create(
    vitConfig(config.model.preset, {
      numClasses: train.classes.length,
      iceHead: config.model.head,
      dropPathRate: config.model.dropPathRate,
    }),
    config.seed,
  );
  if (config.model.weights) {
    model.loadStateDict(readWeights(config.model.weights).tensors, {
      allowMissing: ['mlp_head*', 'ice_head*'],
      ignore: ['optimizer.*', 'dist_token', 'head_dist*', 'mlp_head*', 'ice_head*'],
    });
  }
  const trainConfig = trainConfigFor(config);
  const trainer = new IceTrainer(model, trainConfig);
  const vars = trainer.optimizer.trainableVariables();
  const headNames = model.specs.filter((s) => !s.backbone).map((s) => s.name);
  const bgColumnOf = (name: string): number | undefined =>
    name === 'mlp_head.weight' || name === 'ice_head.fc2.weight' ? train.classes.length : undefined;
  const classOnly: IceLossConfig = { ...trainConfig.loss, lambdaClass: 1 };
  const smoothing = trainConfig.mixup.labelSmoothing;

  const { mean, std, imgSize } = model.config;
  const stream = await TrainBatchStream.open({ config, imgSize, mean, std, startPosition: 0 });
  const record: Record<string, unknown>[] = [];
  const t0 = Date.now();
  try {
    const probe = async (step: number): Promise<void> => {
      const m = await evaluateRun(model, evaluation, probeConfig);
      const row = {
        kind: 'probe',
        step,
        ...(await patchMargins(model, evaluation, 64)),
        fg_fraction: m.fg_fraction,
        iou_fg: m.iou_fg,
        miou: m.miou,
        ice_top1: m.ice_top1,
        ice_no_fg: m.ice_no_fg,
      };
      record.push(row);
      console.log(JSON.stringify(row));
    };
    await probe(0);
    while (trainer.step < config.steps) {
      const batch = await stream.next();
      const x = tf.tensor4d(batch.x, batch.shape);
      try {
        if (trainer.step % every === 0) {
          const k = train.classes.length;
          const targets = tf.tidy(() => tf.add<tf.Tensor2D>(tf.mul(tf.oneHot(batch.labels, k), 1 - smoothing), smoothing / k));
          const loss = lossConfigAt(trainConfig, trainer.step);
          const gTotal = lossGrads(model, x, targets, loss, vars);
          const gIce = lossGrads(model, x, targets, classOnly, vars);
          const stats = tf.tidy(() => {
            const l = iceLoss(model.forward(x).zIce!, targets, loss);
            return { gate: l.gate.dataSync()[0], clsPer: l.clsPer.dataSync()[0], lIce: l.lIce.dataSync()[0], lBg: l.lBg.dataSync()[0] };
          });
          targets.dispose();
          const names = [...gTotal.keys()];
          const wIce = loss.variant === 'official' ? 1 : loss.lambdaClass;
          const ice = names.map((n) => tf.mul(gIce.get(n)!, wIce));
          const bg = names.map((n, i) => tf.sub(gTotal.get(n)!, ice[i]));
          const head = names.map((n, i) => (headNames.includes(n) ? i : -1)).filter((i) => i >= 0);
          const pick = (ts: tf.Tensor[], idx: number[]): tf.Tensor[] => idx.map((i) => ts[i]);
          const bgCol = (ts: tf.Tensor[]): tf.Tensor[] =>
            names.flatMap((n, i) => {
              const c = bgColumnOf(n);
              return c === undefined ? [] : [tf.slice(ts[i], [0, c], [-1, 1])];
            });
          const iceCol = bgCol(ice);
          const bgColT = bgCol(bg);
          const row = {
            kind: 'grad',
            step: trainer.step,
            lr: trainer.lr(),
            lambda_class: loss.lambdaClass,
            l_ice: stats.lIce,
            l_bg: stats.lBg,
            gate: stats.gate,
            batch_fg: stats.clsPer,
            g_ice: norm(ice),
            g_bg: norm(bg),
            cos_all: dot(ice, bg) / (norm(ice) * norm(bg) || 1),
            g_ice_head: norm(pick(ice, head)),
            g_bg_head: norm(pick(bg, head)),
            g_ice_bgcol: norm(iceCol),
            g_bg_bgcol: norm(bgColT),
            cos_bgcol: dot(iceCol, bgColT) / (norm(iceCol) * norm(bgColT) || 1),
          };
          tf.dispose([...gTotal.values(), ...gIce.values(), ...ice, ...bg, ...iceCol, ...bgColT]);
          record.push(row);
          console.log(JSON.stringify(row));
        }
        trainer.trainStep(x, batch.labels);
      } finally {
        x.dispose();
      }
      if (trainer.step % evalEvery === 0 || trainer.step === config.steps) await probe(trainer.step);
    }
  } finally {
    await stream.close();
  }
  const summary = { kind: 'summary', backend: backend.name, config, seconds: (Date.now() - t0) / 1000 };
  console.log(JSON.stringify(summary));
  if (o.out) {
    fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
    fs.writeFileSync(o.out, JSON.stringify({ summary, record }, null, 1));
  }
  trainer.dispose();
  model.dispose();
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
