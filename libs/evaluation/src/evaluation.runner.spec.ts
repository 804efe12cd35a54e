import * as fs from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { EXPLAINER_NAMES, IceError, IceVit, initBackend, loadModel, topClasses, vitConfig } from '@ice/core';
import { DigitsDataset } from '@ice/datasets';
import { normalizationStats, prepareSample } from './sample-prep.util';
import { formatEvaluationReport, formatEvaluationTable } from './evaluation-table.util';
import { EVALUATION_PROTOCOLS } from './evaluation.types';
import { defaultEvalBatch, runEvaluation } from './evaluation.runner';
import { jet } from './save-maps.util';
import { makeTempDir, writeTinyModel } from './testing/eval-fixtures.testing';

beforeAll(() => initBackend());

describe('runEvaluation on the built-in digits benchmark', () => {
  const tmp = makeTempDir();
  afterAll(() => tmp.cleanup());
  const weights = join(tmp.dir, 'tiny.safetensors');
  beforeAll(() => writeTinyModel(weights));

  it.each(EVALUATION_PROTOCOLS)('runs %s on digits (masks, boxes and labels) for every method', async (protocol) => {
    const r = await runEvaluation({
      protocol,
      format: 'digits',
      weights,
      modelSpec: 'digits-micro',
      methods: [...EXPLAINER_NAMES],
      limit: 3,
      maxBoxAccThresholds: [0, 0.2, 0.4, 0.6, 0.8],
    });
    expect(r.dataset).toEqual({ name: 'digits', split: 'test', images: 3 });
    expect(r.rows).toHaveLength(EXPLAINER_NAMES.length);
    for (const row of r.rows) {
      expect(Object.keys(row.metrics)).toEqual(r.columns);
      expect(row.images).toBe(3);
    }
    expect(r.conventions.join('\n')).toMatch(/the model's own statistics/);
  });

  it.each(['segmentation', 'localization'] as const)('%s: batches (with a short last one) score as images one by one', async (protocol) => {
    const run = (batchSize: number) =>
      runEvaluation({
        protocol,
        format: 'digits',
        weights,
        modelSpec: 'digits-micro',
        methods: [...EXPLAINER_NAMES],
        limit: 7,
        batchSize,
        maxBoxAccThresholds: [0, 0.2, 0.4, 0.6, 0.8],
      });
    const [one, batched] = [await run(1), await run(3)];
    expect(one.conventions.join('\n')).toMatch(/each image on its own/);
    expect(batched.conventions.join('\n')).toMatch(/batches of 3 images/);
    batched.rows.forEach((row, i) => {
      for (const [k, v] of Object.entries(row.metrics)) {
        const ref = one.rows[i].metrics[k];
        if (v === null || ref === null) expect(v).toBe(ref);
        else expect(v).toBeCloseTo(ref, 3); // float summation order may move a pixel across a threshold
      }
    });
    await expect(run(0)).rejects.toThrow(/batchSize must be an integer in 1\.\.256, got 0/);
  });

  it('writes a PNG overlay per image and method and a contact sheet (rows = images, columns = input + methods)', async () => {
    const dir = join(tmp.dir, 'maps');
    const r = await runEvaluation({
      protocol: 'segmentation',
      format: 'digits',
      weights,
      modelSpec: 'digits-micro',
      methods: [...EXPLAINER_NAMES],
      limit: 3,
      saveMaps: { dir, count: 2 },
    });
    expect(r.savedMaps?.files).toHaveLength(2 * EXPLAINER_NAMES.length);
    for (const f of r.savedMaps!.files) {
      const meta = await sharp(f).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['png', 128, 128]); // 32² enlarged ×4
    }
    const sheet = await sharp(r.savedMaps!.contactSheet).metadata();
    const cols = EXPLAINER_NAMES.length + 1;
    expect([sheet.format, sheet.width, sheet.height]).toEqual(['png', cols * 128 + (cols + 1) * 4, 22 + 2 * 128 + 3 * 4]);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.png'))).toHaveLength(2 * EXPLAINER_NAMES.length + 1);
  });

  it('reports images/s per method (ICE: one forward pass; gradient methods: forward + backward)', async () => {
    const r = await runEvaluation({
      protocol: 'segmentation',
      format: 'digits',
      weights,
      modelSpec: 'digits-micro',
      methods: [...EXPLAINER_NAMES],
      limit: 16,
    });
    for (const row of r.rows) {
      expect(row.imagesPerSecond).toBeGreaterThan(0);
      expect(row.seconds).toBeGreaterThan(0);
    }
    // Reported, not asserted: timings depend on the machine.
    process.stdout.write(
      `\ndigits-micro images/s (${r.backend}): ${r.rows.map((row) => `${row.method} ${row.imagesPerSecond.toFixed(0)}`).join(', ')}\n`,
    );
    const table = formatEvaluationTable(r);
    expect(table.split('\n')[0]).toMatch(/^method\s+pixAcc\s+mIoU\s+mAP\s+iouBg\s+iouFg\s+images\s+img\/s$/);
    expect(table.split('\n')).toHaveLength(2 + EXPLAINER_NAMES.length);
    expect(formatEvaluationReport(r)).toMatch(/conventions:\n {2}- model: digits-micro/);
  });

  it('takes an already loaded model and leaks no tensors', async () => {
    const model = IceVit.create(vitConfig('digits-micro'), 3);
    try {
      const before = tf.memory().numTensors;
      const r = await runEvaluation({
        protocol: 'corloc',
        format: 'digits',
        model,
        methods: ['ice', 'gradcam', 'raw-attention'],
        limit: 2,
      });
      expect(r.model.spec).toBeNull();
      expect(tf.memory().numTensors).toBe(before);
      const j = await runEvaluation({
        protocol: 'jaccard',
        format: 'digits',
        model,
        methods: ['raw-attention', 'generic-attention', 'transformer-attribution', 'partial-lrp'],
        limit: 2,
      });
      expect(j.rows).toHaveLength(4);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      model.dispose();
    }
  });

  it('names what is wrong with the request', async () => {
    const base = { protocol: 'segmentation' as const, format: 'digits' as const, weights, modelSpec: 'digits-micro', limit: 1 };
    await expect(runEvaluation({ ...base, methods: ['lrp' as never] })).rejects.toThrow(/unknown method 'lrp'/);
    await expect(runEvaluation({ ...base, methods: [] })).rejects.toThrow(IceError);
    await expect(runEvaluation({ ...base, methods: ['ice'], limit: 0 })).rejects.toThrow(/limit/);
    await expect(runEvaluation({ ...base, methods: ['ice'], format: 'voc' })).rejects.toThrow(/needs a root/);
    await expect(runEvaluation({ ...base, methods: ['ice'], rolloutStartLayer: 2 })).rejects.toThrow(/start layer 2/);
    const noHead = join(tmp.dir, 'no-head.safetensors');
    await writeTinyModel(noHead, { overrides: { iceHead: 'none' } });
    await expect(runEvaluation({ ...base, weights: noHead, methods: ['rollout', 'ice'] })).rejects.toThrow(
      /ice need a model with an ICE head/,
    );
    const r = await runEvaluation({ ...base, weights: noHead, methods: ['rollout'] });
    expect(r.model.iceHead).toBe('none');
  });

  it("reads the project's training checkpoints (AdamW moments beside the weights)", async () => {
    const ck = join(tmp.dir, 'checkpoint.safetensors');
    await writeTinyModel(ck, { withOptimizerKeys: true });
    const r = await runEvaluation({
      protocol: 'corloc',
      format: 'digits',
      weights: ck,
      modelSpec: 'digits-micro',
      methods: ['ice'],
      limit: 1,
    });
    expect(r.rows[0].images).toBe(1);
  });

  it('stops with CANCELLED when aborted', async () => {
    const ac = new AbortController();
    const p = runEvaluation({
      protocol: 'segmentation',
      format: 'digits',
      weights,
      modelSpec: 'digits-micro',
      methods: ['ice'],
      limit: 50,
      batchSize: 4,
      signal: ac.signal,
      onProgress: (done) => void (done === 8 && ac.abort()),
    });
    await expect(p).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('picks the default batch size from the model and backend', () => {
    expect(defaultEvalBatch(vitConfig('digits-micro'), 'wasm')).toBe(16);
    // Large attention products go per head to XNNPACK on wasm, which only one image at a time allows.
    expect(defaultEvalBatch(vitConfig('deit_tiny_patch16_224'), 'wasm')).toBe(1);
    // Elsewhere the attention maps' memory decides: 256 MB / (depth · heads · T² · 16 bytes).
    expect(defaultEvalBatch(vitConfig('deit_tiny_patch16_224'), 'tensorflow')).toBe(12);
    expect(defaultEvalBatch(vitConfig('deit_small_patch16_224'), 'tensorflow')).toBe(6);
    expect(defaultEvalBatch({ ...vitConfig('deit_small_patch16_224'), imgSize: 512 }, 'tensorflow')).toBe(1);
  });

  it("targetSource 'ice': targets and Top-1 Cls from the ICE head's own top-1, stated in the conventions", async () => {
    const run = (targetSource: 'cls' | 'ice') =>
      runEvaluation({
        protocol: 'localization',
        format: 'digits',
        weights,
        modelSpec: 'digits-micro',
        methods: ['ice-class', 'gradcam'],
        limit: 8,
        targetSource,
        maxBoxAccThresholds: [0, 0.5],
      });
    const [cls, ice] = [await run('cls'), await run('ice')];
    expect(cls.conventions.join('\n')).toMatch(/Top-1 Cls = the CLS head's top-1 prediction equals the label/);
    expect(ice.conventions.join('\n')).toMatch(/Top-1 Cls = the ICE head's own top-1 prediction \(argmax over the image classes of Ŷ/);
    // The ICE head's own top-1 of these 8 images, with the CLS head's where no patch is foreground.
    const { model } = loadModel(weights, 'digits-micro');
    const ds = new DigitsDataset({ split: 'test', canvasSize: 32, seed: 0 });
    const xs = tf.tensor4d(
      Float32Array.from(
        Array.from({ length: 8 }, (_, i) =>
          Array.from(prepareSample(ds.get(i), i, 32, normalizationStats('model', model.config)).input),
        ).flat(),
      ),
      [8, 3, 32, 32],
    );
    const labels = Array.from({ length: 8 }, (_, i) => ds.get(i).label);
    const [iceTop1, clsTop1] = [topClasses(model, xs, 'ice'), topClasses(model, xs, 'cls')];
    tf.dispose([xs]);
    model.dispose();
    const acc = (pred: number[]): number => pred.filter((c, i) => c === labels[i]).length / 8;
    expect(ice.rows[0].metrics.top1Cls).toBeCloseTo(acc(iceTop1), 10);
    expect(cls.rows[0].metrics.top1Cls).toBeCloseTo(acc(clsTop1), 10);
    const noHead = join(tmp.dir, 'no-head-target.safetensors');
    await writeTinyModel(noHead, { overrides: { iceHead: 'none' } });
    await expect(
      runEvaluation({
        protocol: 'segmentation',
        format: 'digits',
        weights: noHead,
        modelSpec: 'digits-micro',
        methods: ['rollout'],
        limit: 1,
        targetSource: 'ice',
      }),
    ).rejects.toThrow(/targetSource 'ice' .* needs a model with an ICE head/);
  });

  it('colours maps with a jet-like ramp', () => {
    expect(jet(0)).toEqual([0, 0, 128]);
    expect(jet(0.5)).toEqual([128, 255, 128]);
    expect(jet(1)).toEqual([128, 0, 0]);
  });
});
