import { describe, expect, it } from '@jest/globals';
import type { AblationTable, TableLine } from './types';
import {
  alignSteps,
  axisPlot,
  cellText,
  defaultPlotMetric,
  degeneracyText,
  gallery,
  mapFileName,
  plotAxes,
  seriesGroups,
} from './view-model';

const line = (alpha: number, lambda: number, mean: number | null, extra: Partial<TableLine> = {}): TableLine => ({
  key: { alpha, lambda_class: lambda },
  runs: 2,
  finished: 2,
  cells: { miou: { mean, std: mean === null ? null : 0.01, n: mean === null ? 0 : 2 } },
  ...extra,
});
const table = (lines: TableLine[]): Pick<AblationTable, 'rows' | 'lines'> => ({ rows: ['alpha', 'lambda_class'], lines });

describe('results page view model', () => {
  it('writes a cell as mean ± std over seeds, marks a constant metric and a degenerate line', () => {
    expect(cellText({ mean: 0.81234, std: 0.01, n: 2 })).toBe('0.8123 ± 0.0100');
    expect(cellText({ mean: 0.5, std: 0, n: 1 })).toBe('0.5000');
    expect(cellText({ mean: 1, std: 0, n: 3, constant: true })).toBe('1 ± 0 ‡');
    expect(cellText({ mean: null, std: null, n: 0 })).toBe('–');
    expect(cellText(undefined)).toBe('–');
    expect(degeneracyText(line(1, 1, 0.4, { degenerate: { runs: 2, of: 2, reasons: ['all-foreground'] } }))).toBe('⚠ all-foreground 2/2');
    expect(degeneracyText(line(1, 1, 0.4, { degenerate: null }))).toBe('');
  });

  it('plots a metric against α with one line per λ_class, in order, gaps where a cell has no value', () => {
    const t = table([line(1, 0.975, 0.7), line(0.5, 0.5, 0.4), line(0.25, 0.975, null), line(0.5, 0.975, 0.6), line(1, 0.5, 0.5)]);
    expect(plotAxes(t)).toEqual(['alpha', 'lambda_class']);
    const p = axisPlot(t, 'alpha', 'miou');
    expect(p.x).toEqual([0.25, 0.5, 1]);
    expect(p.series).toEqual([
      { label: 'lambda_class=0.5', y: [null, 0.4, 0.5], std: [null, 0.01, 0.01] },
      { label: 'lambda_class=0.975', y: [null, 0.6, 0.7], std: [null, 0.01, 0.01] },
    ]);
    const q = axisPlot(t, 'lambda_class', 'miou');
    expect(q.x).toEqual([0.5, 0.975]);
    expect(q.series.map((s) => s.label)).toEqual(['alpha=0.25', 'alpha=0.5', 'alpha=1']);
  });

  it('offers only numeric axes with two or more values as x, α before λ_class whatever their names', () => {
    const t: Pick<AblationTable, 'rows' | 'lines'> = {
      rows: ['model.preset', 'loss.lambdaClass', 'loss.alpha', 'seed'],
      lines: [
        { key: { 'model.preset': 'a', 'loss.lambdaClass': 0.5, 'loss.alpha': 1, seed: 0 }, runs: 1, finished: 1, cells: {} },
        { key: { 'model.preset': 'b', 'loss.lambdaClass': 0.9, 'loss.alpha': 2, seed: 0 }, runs: 1, finished: 1, cells: {} },
      ],
    };
    expect(plotAxes(t)).toEqual(['loss.alpha', 'loss.lambdaClass']);
  });

  it('starts the sweep plot on a score, not on a count', () => {
    expect(defaultPlotMetric(['eval_images', 'fg_fraction', 'iou_fg', 'miou'])).toBe('miou');
    expect(defaultPlotMetric(['eval_images', 'val_loss'])).toBe('val_loss');
    expect(defaultPlotMetric([])).toBeUndefined();
  });

  it("splits a run's series into loss, learning-rate, throughput and metric curves; single final points are no curve", () => {
    const pts = (n: number) => Array.from({ length: n }, (_, i) => ({ step: i + 1, value: i }));
    expect(
      seriesGroups({ loss: pts(3), l_ice: pts(3), l_bg: pts(3), lr: pts(3), img_per_sec: pts(3), 'final.miou': pts(1), val_top1: pts(2) }),
    ).toEqual({
      loss: ['l_bg', 'l_ice', 'loss'],
      lr: ['lr'],
      throughput: ['img_per_sec'],
      metrics: ['val_top1'],
    });
  });

  it('aligns step series on the union of their steps', () => {
    expect(
      alignSteps([
        {
          label: 'a',
          points: [
            { step: 1, value: 1 },
            { step: 3, value: 3 },
          ],
        },
        { label: 'b', points: [{ step: 2, value: 2 }] },
      ]),
    ).toEqual({
      x: [1, 2, 3],
      series: [
        { label: 'a', y: [1, null, 3] },
        { label: 'b', y: [null, 2, null] },
      ],
    });
  });

  it('lays saved overlays out image × method from paths, relative names or URLs', () => {
    expect(mapFileName('/srv/artifacts/evaluations/e1/maps/0003-ice.png')).toBe('0003-ice.png');
    expect(mapFileName('/evaluations/e1/maps/0003-generic-attention.png?x=1')).toBe('0003-generic-attention.png');
    expect(mapFileName('maps\\0001-ice.png')).toBe('0001-ice.png');
    const g = gallery(
      [
        '/a/0000-ice.png',
        '/a/0000-rollout.png',
        '/evaluations/e/maps/0002-ice.png',
        '/a/0002-rollout.png',
        '/a/contact-sheet.png',
        '/a/0002-other.png',
      ],
      ['ice', 'gradcam', 'rollout'],
    );
    expect(g.images).toEqual([0, 2]);
    expect(g.methods).toEqual(['ice', 'rollout']);
    expect(g.file(2, 'ice')).toBe('0002-ice.png');
    expect(g.file(0, 'gradcam')).toBeUndefined();
  });
});
