import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { EXPLAINER_NAMES, IceError, IceVit, initBackend, vitConfig, writeSafetensors, ICE_CONFIG_METADATA } from '@ice/core';
import {
  parseMethods,
  registerEvalCommand,
  runAccuracyCommand,
  runEvalCommand,
  toAccuracyOptions,
  toEvaluationOptions,
  toPruneOptions,
} from './eval.command';

describe('ice eval', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-eval-cli-'));
  const weights = path.join(tmp, 'tiny.safetensors');
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  beforeAll(async () => {
    await initBackend();
    const config = vitConfig('digits-micro');
    const model = IceVit.create(config, 2);
    writeSafetensors(weights, await model.stateDict(), { [ICE_CONFIG_METADATA]: JSON.stringify(config) });
    model.dispose();
  });
  const quiet = (): void => undefined;
  const base = { format: 'digits', weights, model: 'digits-micro', method: 'ice,rollout,gradcam', limit: 2 };

  it('parses the method list (or all) and rejects unknown names', () => {
    expect(parseMethods('ice, gradcam')).toEqual(['ice', 'gradcam']);
    expect(parseMethods('all')).toEqual(EXPLAINER_NAMES);
    expect(() => parseMethods('ice,lrp')).toThrow(/unknown method 'lrp'/);
  });

  it('maps the options onto runEvaluation', () => {
    const o = toEvaluationOptions(
      'jaccard',
      {
        ...base,
        format: 'voc',
        root: '/data/VOC2012',
        taus: '0.9,0.6',
        excludeVoid: true,
        jaccardHeads: 'mean',
        normalization: 'half',
        top1Iou: 'ge',
        saveMaps: '/tmp/m',
        saveMapsCount: 3,
      },
      quiet,
    );
    expect(o).toMatchObject({
      protocol: 'jaccard',
      format: 'voc',
      root: '/data/VOC2012',
      taus: [0.9, 0.6],
      excludeVoid: true,
      jaccardHeads: 'mean',
      normalization: 'half',
      strictTop1: false,
      saveMaps: { dir: '/tmp/m', count: 3 },
    });
    expect(() => toEvaluationOptions('seg', base, quiet)).toThrow(/protocol must be one of segmentation, jaccard, corloc, localization/);
    expect(() => toEvaluationOptions('corloc', { ...base, format: 'coco' }, quiet)).toThrow(IceError);
    expect(() => toEvaluationOptions('corloc', { ...base, saveMapsCount: 2 }, quiet)).toThrow(/needs --save-maps/);
  });

  it("checks the flags with the evaluation spec's rules: another protocol's option warns, a mismatch is refused", () => {
    const logs: string[] = [];
    const o = toEvaluationOptions('corloc', { ...base, taus: '0.5' }, (m) => logs.push(m));
    expect(o).toMatchObject({ protocol: 'corloc', taus: [0.5], methods: ['ice', 'rollout', 'gradcam'], limit: 2 });
    expect(logs).toEqual([
      expect.stringMatching(/^warning: options\.taus: taus applies to the jaccard protocol only; the corloc protocol ignores it$/),
    ]);
    expect(() => toEvaluationOptions('segmentation', { ...base, format: 'cub', root: '/x' }, quiet)).toThrow(
      /data\.format: the segmentation protocol needs foreground masks, which cub does not provide/,
    );
    expect(() => toEvaluationOptions('corloc', { ...base, method: 'ice,ice' }, quiet)).toThrow(/methods\.1: method 'ice' is named twice/);
    expect(() => toEvaluationOptions('corloc', { ...base, jaccardHeads: 'median' }, quiet)).toThrow(
      /--jaccard-heads must be one of max, mean/,
    );
  });

  it('prints a table with one row per method, or JSON', async () => {
    const program = new Command().exitOverride();
    registerEvalCommand(program);
    const out: string[] = [];
    const spy = jest.spyOn(console, 'log').mockImplementation((s: string) => void out.push(s));
    const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await program.parseAsync([
        'node',
        'ice',
        'eval',
        'corloc',
        '--format',
        'digits',
        '--weights',
        weights,
        '--model',
        'digits-micro',
        '--method',
        'ice,rollout',
        '--limit',
        '2',
      ]);
      await program.parseAsync([
        'node',
        'ice',
        'eval',
        'localization',
        '--format',
        'digits',
        '--weights',
        weights,
        '--model',
        'digits-micro',
        '--method',
        'ice',
        '--limit',
        '2',
        '--json',
      ]);
    } finally {
      spy.mockRestore();
      err.mockRestore();
    }
    const lines = out[0].split('\n');
    expect(lines[0]).toBe('corloc on digits/test (2 images)');
    expect(lines[2]).toMatch(/^method\s+corloc\s+hits\s+noBox\s+skipped\s+images\s+img\/s$/);
    expect(lines[4]).toMatch(/^ice \[official head\]\s/);
    expect(lines[5]).toMatch(/^rollout\s/);
    expect(out[0]).toMatch(/largest 4-connected component/);
    const json = JSON.parse(out[1]) as {
      protocol: string;
      rows: { method: string; images: number; imagesPerSecond: number; metrics: Record<string, number> }[];
      conventions: string[];
    };
    expect(json.protocol).toBe('localization');
    expect(json.rows).toHaveLength(1);
    expect(json.rows[0]).toMatchObject({ method: 'ice', images: 2 });
    expect(Object.keys(json.rows[0].metrics)).toEqual(['top1Cls', 'gtKnownLoc', 'top1Loc', 'maxBoxAcc@0.5', 'maxBoxAccTau@0.5']);
    expect(json.conventions.some((c) => /inclusive \(\+1\)/.test(c))).toBe(true);
  });

  it('accuracy: maps --prune/--keep/--prune-locations/--fuse-tokens and refuses them elsewhere', () => {
    const acc = { weights, model: 'digits-micro', limit: 2 };
    expect(toAccuracyOptions({ ...acc, prune: 'evit', keep: 0.7 }, quiet)).toMatchObject({
      format: 'digits',
      prune: { mode: 'evit', keepRate: 0.7 },
    });
    expect(toPruneOptions({ ...acc, prune: 'ice', keep: 0.5, pruneLocations: '3,6,9', fuseTokens: true })).toEqual({
      mode: 'ice',
      keepRate: 0.5,
      locations: [3, 6, 9],
      fuse: true,
    });
    expect(toPruneOptions(acc)).toBeUndefined();
    expect(() => toPruneOptions({ ...acc, prune: 'topk', keep: 0.5 })).toThrow(/--prune must be one of ice, evit/);
    expect(() => toPruneOptions({ ...acc, prune: 'ice' })).toThrow(/--prune needs --keep/);
    expect(() => toPruneOptions({ ...acc, keep: 0.5 })).toThrow(/need --prune ice\|evit/);
    expect(() => toAccuracyOptions({ ...acc, method: 'ice' }, quiet)).toThrow(/takes no --method/);
    expect(() => toAccuracyOptions({ ...acc, format: 'voc' }, quiet)).toThrow(/--format must be one of digits, imagenet/);
    expect(() => toEvaluationOptions('segmentation', { ...base, prune: 'ice', keep: 0.5 }, quiet)).toThrow(/accuracy` only/);
    expect(() => toEvaluationOptions('segmentation', { ...base, method: undefined }, quiet)).toThrow(/needs --method/);
    expect(() => toEvaluationOptions('segmentation', { ...base, format: undefined }, quiet)).toThrow(/needs --format/);
  });

  it('ice eval accuracy --prune ice --keep 0.7 prints the top-1 report, or JSON', async () => {
    const program = new Command().exitOverride();
    registerEvalCommand(program);
    const out: string[] = [];
    const spy = jest.spyOn(console, 'log').mockImplementation((s: string) => void out.push(s));
    const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const args = ['node', 'ice', 'eval', 'accuracy', '--weights', weights, '--model', 'digits-micro', '--limit', '3'];
      await program.parseAsync([...args, '--prune', 'ice', '--keep', '0.7']);
      await program.parseAsync([...args, '--prune', 'evit', '--keep', '0.5', '--no-fuse-tokens', '--json']);
    } finally {
      spy.mockRestore();
      err.mockRestore();
    }
    expect(out[0]).toMatch(/^accuracy on digits\/test \(3 images\): top1 [\d.]+ {2}ice_top1 [\d.]+ {2}ice_no_fg [\d.]+ {2}img\/s/);
    expect(out[0]).toMatch(/token pruning \(ice, inference only/);
    const json = JSON.parse(out[1]) as { prune: { mode: string; fuse: boolean }; tokens: number[] };
    expect(json.prune).toMatchObject({ mode: 'evit', keepRate: 0.5, fuse: false });
    expect(json.tokens).toEqual([8, 8]);
    const r = await runAccuracyCommand({ weights, model: 'digits-micro', limit: 3 }, quiet);
    expect(r.prune).toBeNull();
  });

  it('writes maps with --save-maps', async () => {
    const dir = path.join(tmp, 'maps');
    const r = await runEvalCommand('segmentation', { ...base, saveMaps: dir, saveMapsCount: 1 }, quiet);
    expect(r.savedMaps?.files.map((f) => path.basename(f))).toEqual(['0000-ice.png', '0000-rollout.png', '0000-gradcam.png']);
    expect(fs.existsSync(path.join(dir, 'contact-sheet.png'))).toBe(true);
  });
});
