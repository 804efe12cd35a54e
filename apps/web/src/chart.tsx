import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { ChartSeries } from './view-model';

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

/** A line chart (uPlot) of several series over one shared x; drawn again when its data change. */
export function Chart(props: {
  title: string;
  xLabel: string;
  x: number[];
  series: ChartSeries[];
  points?: boolean;
  logY?: boolean;
  testId?: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const opts: uPlot.Options = {
      title: props.title,
      width: Math.max(320, el.clientWidth || 640),
      height: 280,
      scales: { x: { time: false }, y: props.logY ? { distr: 3 } : {} },
      axes: [{ label: props.xLabel }, {}],
      series: [
        { label: props.xLabel },
        ...props.series.map((s, i) => ({
          label: s.label,
          stroke: PALETTE[i % PALETTE.length],
          width: 1.5,
          spanGaps: true,
          points: { show: props.points ?? props.x.length <= 30 },
        })),
      ],
    };
    const plot = new uPlot(opts, [props.x, ...props.series.map((s) => s.y)] as uPlot.AlignedData, el);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(320, el.clientWidth), height: 280 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [props.title, props.xLabel, props.x, props.series, props.points, props.logY]);
  return <div class="chart" ref={box} data-testid={props.testId} />;
}
