import { IceError } from '@ice/core';
import { buildAblationTable, runDegeneracy, tableNotes, tableToCsv, tableToMarkdown, type RunOutcome } from './ablation-table';
import { parseRunConfig } from './run.contract';
import { batchIndices } from './run-data';
import { expandSweep } from './sweep';
import { canonicalAxes, configValue, knownAxesText, RUN_CONFIG_PATHS, rowValueOf, setConfigPath } from './sweep-axes';

describe('run config', () => {
  it('fills defaults and names every invalid field', () => {
    const c = parseRunConfig({});
    expect(c.loss).toMatchObject({ variant: 'official', alpha: 0.5 });
    expect(c.model.preset).toBe('digits-micro');
    let err: unknown;
    try {
      parseRunConfig({ loss: { alpha: 1.5, lambdaClass: -0.1 }, model: { preset: 'resnet50' }, steps: 0 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IceError);
    const msg = (err as IceError).message;
    expect(msg).toContain('loss.alpha: alpha must be in (0, 1]');
    expect(msg).toContain('loss.lambdaClass: lambdaClass must be in [0, 1]');
    expect(msg).toContain('model.preset: unknown model preset');
    expect(msg).toContain('steps:');
  });

  it('requires a root for file-backed data sets and rejects unknown keys', () => {
    expect(() => parseRunConfig({ data: { format: 'voc' } })).toThrow(/data.root: data.root is required for format voc/);
    expect(() => parseRunConfig({ optimiser: {} })).toThrow(/Unrecognized key/);
  });
});

describe('sweeps', () => {
  it('expands α × λ_class × seeds into validated runs with stable cell keys', () => {
    const { cells } = expandSweep({ base: { steps: 5 }, grid: { alpha: [0.5, 1], lambda_class: [0.5, 0.975] }, seeds: [0, 1] });
    expect(cells).toHaveLength(8);
    expect(cells[0].cellKey).toBe('loss.alpha=0.5,loss.lambdaClass=0.5');
    expect(cells[0].values).toEqual({ 'loss.alpha': 0.5, 'loss.lambdaClass': 0.5 });
    expect(cells[0].config.loss).toMatchObject({ alpha: 0.5, lambdaClass: 0.5 });
    expect(cells[7].config).toMatchObject({ seed: 1, steps: 5, loss: { alpha: 1, lambdaClass: 0.975 } });
  });

  it('refuses a grid over 1,000 runs unless explicitly allowed, and names a bad cell', () => {
    const grid = { alpha: Array.from({ length: 40 }, (_, i) => (i + 1) / 40), lr: Array.from({ length: 30 }, (_, i) => 1e-4 * (i + 1)) };
    expect(() => expandSweep({ grid })).toThrow(/1200 runs exceeds 1000; set allowLargeGrid/);
    expect(expandSweep({ grid, allowLargeGrid: true }).cells).toHaveLength(1200);
    expect(() => expandSweep({ grid: { alpha: [0.5, 2] } })).toThrow(/grid cell loss.alpha=2: .*loss.alpha/);
  });
});

describe('sweep axes: one vocabulary, and no user key used as an object path unchecked', () => {
  afterEach(() => {
    // Nothing here may ever reach Object.prototype.
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('knows every leaf of the run config schema by its path', () => {
    expect(RUN_CONFIG_PATHS).toEqual(
      expect.arrayContaining([
        'loss.alpha',
        'loss.lambdaClass',
        'loss.lambdaWarmup.from',
        'optimizer.lr',
        'data.batchSize',
        'seed',
        'worldSize',
      ]),
    );
    expect(RUN_CONFIG_PATHS).not.toContain('loss');
    expect(RUN_CONFIG_PATHS).not.toContain('loss.lambdaWarmup');
    expect(knownAxesText()).toContain('loss.lambdaClass (lambda_class, lambdaClass)');
  });

  it('canonicalises aliases and paths to one name, so the table columns are the same whatever the grid said', () => {
    const a = expandSweep({ grid: { lambda_class: [0.5] } });
    const b = expandSweep({ grid: { lambdaClass: [0.5] } });
    const c = expandSweep({ grid: { 'loss.lambdaClass': [0.5] } });
    for (const x of [a, b, c]) {
      expect(Object.keys(x.request.grid)).toEqual(['loss.lambdaClass']);
      expect(x.cells[0].cellKey).toBe('loss.lambdaClass=0.5');
      expect(x.cells[0].config.loss.lambdaClass).toBe(0.5);
    }
    expect(canonicalAxes(['alpha', 'lr', 'optimizer.weightDecay', 'seed'], 'rows')).toEqual([
      'loss.alpha',
      'optimizer.lr',
      'optimizer.weightDecay',
      'seed',
    ]);
    // A sweep stored with aliases still gives its values under the canonical names.
    expect(rowValueOf({ lambda_class: 0.5 }, { seed: 3 }, 'loss.lambdaClass')).toBe(0.5);
    expect(rowValueOf({ lambda_class: 0.5 }, { seed: 3 }, 'seed')).toBe(3);
  });

  it('refuses unknown axes naming them and listing the known ones, and two names of one axis', () => {
    expect(() => expandSweep({ grid: { 'loss.lambda_class': [0.5] } })).toThrow(
      /grid: unknown axis 'loss.lambda_class'; known: .*loss.lambdaClass \(lambda_class, lambdaClass\)/,
    );
    expect(() => expandSweep({ grid: { alpha: [0.5], 'loss.alpha': [1] } })).toThrow(/'alpha' and 'loss.alpha' both name loss.alpha/);
    expect(() => expandSweep({ grid: { loss: [1] } })).toThrow(/unknown axis 'loss'/);
  });

  it('refuses __proto__, constructor and prototype wherever they appear, before anything is walked', () => {
    for (const axis of ['__proto__.polluted', 'constructor.prototype.polluted', 'loss.__proto__.polluted', 'prototype'])
      expect(() => expandSweep({ grid: { [axis]: [1] } })).toThrow(/unknown axis|forbidden key/);
    const viaJson = (text: string): unknown => JSON.parse(text);
    expect(() => expandSweep(viaJson('{"grid":{"alpha":[0.5]},"base":{"__proto__":{"polluted":1}}}'))).toThrow(
      /invalid sweep: base.__proto__: forbidden key '__proto__'/,
    );
    expect(() => expandSweep(viaJson('{"grid":{"__proto__":[1]}}'))).toThrow(/forbidden key/);
    expect(() => parseRunConfig(viaJson('{"model":{"constructor":{"prototype":{"polluted":1}}}}'))).toThrow(
      /model.constructor: forbidden key 'constructor'/,
    );
    expect(() => setConfigPath({}, '__proto__.polluted', 1)).toThrow(/not a run config field/);
    expect(configValue({}, '__proto__')).toBeUndefined();
    expect(configValue({ loss: { alpha: 0.5 } }, 'loss.alpha')).toBe(0.5);
  });
});

describe('ablation table', () => {
  const outcomes: RunOutcome[] = [
    { values: { alpha: 0.5, lambda_class: 0.5 }, seed: 0, status: 'succeeded', metrics: { miou: 0.5 } },
    { values: { alpha: 0.5, lambda_class: 0.5 }, seed: 1, status: 'succeeded', metrics: { miou: 0.7 } },
    { values: { alpha: 1, lambda_class: 0.5 }, seed: 0, status: 'failed', metrics: null },
  ];

  it('refuses a metric named __proto__ like any unknown metric, and no prototype is touched', () => {
    expect(() => buildAblationTable(outcomes, ['alpha'], ['__proto__', 'miou'])).toThrow(/metrics: __proto__ is not a metric; known: /);
    // A run reporting such a key (metrics arrive as JSON) gets no column for it and leaves the prototype alone.
    const odd: RunOutcome = { ...outcomes[0], metrics: JSON.parse('{"__proto__": 1, "miou": 0.5}') as Record<string, number> };
    const t = buildAblationTable([odd], ['alpha']);
    expect(t.metrics).toEqual(['miou']);
    expect(Object.getPrototypeOf(t.lines[0].cells)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).miou).toBeUndefined();
  });

  it('gives mean ± sample std per cell and marks missing runs', () => {
    const t = buildAblationTable(outcomes, ['alpha', 'lambda_class']);
    expect(t.lines[0].cells.miou.mean).toBeCloseTo(0.6, 12);
    expect(t.lines[0].cells.miou.std).toBeCloseTo(Math.SQRT2 * 0.1, 12);
    expect(t.lines[1].cells.miou).toEqual({ mean: null, std: null, n: 0 });
    const md = tableToMarkdown(t, 3);
    expect(md).toContain('| 0.5 | 0.5 | 0.600 ± 0.141 | 2/2 |');
    expect(md).toContain('| 1 | 0.5 | – | 0/1 |');
    expect(tableToCsv(t).split('\n')[0]).toBe('alpha,lambda_class,miou_mean,miou_std,miou_n,finished,runs');
  });

  it('refuses unknown metrics, listing the known ones, and never makes a column of eval_images', () => {
    expect(() => buildAblationTable(outcomes, ['alpha'], ['miou', 'bogus'])).toThrow(
      /^metrics: bogus is not a metric; known: top1, ice_top1, .*, miou, map$/,
    );
    expect(() => buildAblationTable(outcomes, ['alpha'], ['eval_images'])).toThrow(/eval_images is not a metric/);
    const t = buildAblationTable([{ values: { lr: 1 }, seed: 0, status: 'succeeded', metrics: { top1: 0.9, eval_images: 16 } }], ['lr']);
    expect(t.metrics).toEqual(['top1']);
  });
});

describe('ablation table: collapses are shown, never hidden', () => {
  const ice = (alpha: number, seed: number, fg: number, constMaps: number, miou: number): RunOutcome => ({
    values: { alpha },
    seed,
    status: 'succeeded',
    metrics: { miou, map: fg === 1 ? 0.5 : 0.7, fg_fraction: fg, iou_fg: fg === 1 ? 0.07 : 0.4, ice_const_maps: constMaps },
  });
  const outcomes = [ice(0.5, 0, 1, 1, 0.467), ice(0.5, 1, 1, 1, 0.467), ice(1, 0, 0.3, 0.1, 0.55), ice(1, 1, 0.25, 1, 0.5)];

  it('classifies a run by its maps', () => {
    expect(runDegeneracy({ fg_fraction: 1 })).toBe('all-foreground');
    expect(runDegeneracy({ fg_fraction: 0, ice_const_maps: 1 })).toBe('empty');
    expect(runDegeneracy({ fg_fraction: 0.4, ice_const_maps: 1 })).toBe('constant maps');
    expect(runDegeneracy({ fg_fraction: 0.4, ice_const_maps: 0.9 })).toBeNull();
    expect(runDegeneracy({ top1: 0.9 })).toBeNull();
    expect(runDegeneracy(null)).toBeNull();
  });

  it('always shows iou_fg and fg_fraction, flags degenerate cells and constant metrics in JSON, markdown and CSV', () => {
    const t = buildAblationTable(outcomes, ['alpha'], ['miou', 'map']);
    expect(t.metrics).toEqual(['miou', 'map', 'iou_fg', 'fg_fraction']);
    expect(t.lines[0].degenerate).toEqual({ runs: 2, of: 2, reasons: ['all-foreground'] });
    expect(t.lines[1].degenerate).toEqual({ runs: 1, of: 2, reasons: ['constant maps'] });
    expect(t.lines[0].cells.map).toMatchObject({ mean: 0.5, std: 0, constant: true });
    expect(t.lines[1].cells.map.constant).toBe(true);
    expect(t.lines[1].cells.miou.constant).toBeUndefined();

    const md = tableToMarkdown(t, 4).split('\n');
    expect(md[0]).toBe('| alpha | miou | map | iou_fg | fg_fraction | runs | flag |');
    expect(md[2]).toBe(
      '| 0.5 | 0.4670 ± 0.0000 ‡ | 0.5000 ± 0.0000 ‡ | 0.0700 ± 0.0000 ‡ | 1.0000 ± 0.0000 ‡ | 2/2 | ⚠ all-foreground 2/2 |',
    );
    expect(md[3]).toMatch(/ \| 2\/2 \| ⚠ constant maps 1\/2 \|$/);
    expect(md.slice(4).join('\n')).toMatch(/⚠ degenerate: 2 of 2 cells .*alpha=0\.5; alpha=1.*these cells are not results/);
    expect(md.slice(4).join('\n')).toMatch(/‡ exactly the same value for every seed/);

    const csv = tableToCsv(t).split('\n');
    expect(csv[0]).toBe(
      'alpha,miou_mean,miou_std,miou_n,miou_constant,map_mean,map_std,map_n,map_constant,iou_fg_mean,iou_fg_std,iou_fg_n,iou_fg_constant,' +
        'fg_fraction_mean,fg_fraction_std,fg_fraction_n,fg_fraction_constant,finished,runs,degenerate_runs,degenerate',
    );
    expect(csv[1].endsWith(',2,2,2,all-foreground')).toBe(true);
    expect(tableNotes(t)).toHaveLength(2);
  });

  it('adds nothing to tables of runs without ICE maps', () => {
    const t = buildAblationTable([{ values: { lr: 1 }, seed: 0, status: 'succeeded', metrics: { top1: 0.9 } }], ['lr']);
    expect(t.metrics).toEqual(['top1']);
    expect(t.lines[0].degenerate).toBeUndefined();
    expect(tableToMarkdown(t)).toBe('| lr | top1 | runs |\n| --- | --- | --- |\n| 1 | 0.9000 | 1/1 |');
    expect(tableNotes(t)).toEqual([]);
  });
});

describe('batch indices', () => {
  it('are a deterministic permutation per epoch', () => {
    const len = 10;
    const epoch0 = [0, 1, 2, 3, 4].flatMap((s) => batchIndices(len, 3, s, 2));
    expect([...epoch0].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(batchIndices(len, 3, 2, 2)).toEqual(batchIndices(len, 3, 2, 2));
    expect(batchIndices(len, 4, 0, 10)).not.toEqual(batchIndices(len, 3, 0, 10));
  });

  it('give data-parallel ranks disjoint slices of each epoch', () => {
    const len = 12;
    const r0 = [0, 1, 2].flatMap((s) => batchIndices(len, 1, s, 2, 0, 2));
    const r1 = [0, 1, 2].flatMap((s) => batchIndices(len, 1, s, 2, 1, 2));
    expect(new Set([...r0, ...r1]).size).toBe(12);
  });
});
