import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { getJson } from './api';
import { Chart } from './chart';
import { API, Cell, ErrorLine, Eta, ProgressBar, Section, StatusBadge, When } from './components';
import { useEvents, useLoad } from './hooks';
import type { Evaluation, MetricSeries, Page, Run, StreamEvent } from './types';
import { alignSteps, duration, fmt, isFinished, seriesGroups } from './view-model';

/** A run: live status and progress (SSE), its loss and metric curves, its final metrics and evaluations. */
export function RunPage({ id }: { id: string }) {
  const run = useLoad((s) => getJson<Run>(`${API}runs/${id}`, s), [id]);
  const series = useLoad((s) => getJson<{ series: MetricSeries }>(`${API}runs/${id}/metrics`, s), [id]);
  const evals = useLoad((s) => getJson<Page<Evaluation>>(`${API}evaluations?runId=${id}&limit=20`, s), [id]);
  const [patch, setPatch] = useState<Partial<Run>>({});
  useEffect(() => setPatch({}), [run.data]);

  // New points arrive with each progress report: re-read the series at most every 2 s.
  const lastSeries = useRef(0);
  const { live } = useEvents<StreamEvent>(`${API}runs/${id}/events`, (e) => {
    switch (e.type) {
      case 'run.progress':
        setPatch((p) => ({ ...p, progress: e.progress }));
        if (Date.now() - lastSeries.current > 2000) {
          lastSeries.current = Date.now();
          series.reload();
        }
        return;
      case 'run.status':
        setPatch((p) => ({ ...p, status: e.status }));
        if (isFinished(e.status)) {
          run.reload();
          series.reload();
        }
        return;
      case 'sweep.status':
        return;
    }
  });

  const r = run.data ? { ...run.data, ...patch } : undefined;
  const groups = useMemo(() => seriesGroups(series.data?.series ?? {}), [series.data]);
  const chart = (names: string[]) => alignSteps(names.map((n) => ({ label: n, points: series.data!.series[n] })));
  return (
    <>
      <h1>
        Run <code>{id}</code>
      </h1>
      <ErrorLine error={run.error} />
      {r && (
        <table class="facts" data-testid="run-facts">
          <tbody>
            <tr>
              <th>status</th>
              <td>
                <StatusBadge status={r.status} /> {live && !isFinished(r.status) && <span class="live">live</span>}
                {r.error && <span class="error"> {r.error}</span>}
              </td>
            </tr>
            <tr>
              <th>sweep</th>
              <td>
                {r.sweepId ? <a href={`#/sweeps/${r.sweepId}`}>{r.sweepId}</a> : '–'} <Cell cell={r.cell} /> seed {r.seed}
              </td>
            </tr>
            <tr>
              <th>progress</th>
              <td>
                <ProgressBar progress={r.progress} status={r.status} /> loss {fmt(r.progress?.loss)} · ETA{' '}
                <Eta progress={r.progress} status={r.status} />
              </td>
            </tr>
            <tr>
              <th>time</th>
              <td>
                created <When at={r.createdAt} /> · took {duration(r.durationMs === null ? null : r.durationMs / 1000)} · attempts{' '}
                {r.attempts}
              </td>
            </tr>
          </tbody>
        </table>
      )}
      <Section title="Curves" testId="run-curves">
        <ErrorLine error={series.error} />
        {series.data && !Object.keys(series.data.series).length && <p class="muted">No points yet.</p>}
        {groups.loss.length > 0 && <Chart title="loss" xLabel="step" {...chart(groups.loss)} testId="loss-chart" />}
        {groups.metrics.length > 0 && <Chart title="metric curves" xLabel="step" {...chart(groups.metrics)} testId="metrics-chart" />}
        {groups.lr.length > 0 && <Chart title="learning rate" xLabel="step" {...chart(groups.lr)} testId="lr-chart" />}
        {groups.throughput.length > 0 && (
          <Chart title="throughput (images/s)" xLabel="step" {...chart(groups.throughput)} testId="throughput-chart" />
        )}
      </Section>
      {r?.metrics && (
        <Section title="Final metrics" testId="run-metrics">
          <table class="facts">
            <tbody>
              {Object.entries(r.metrics)
                .sort(([a], [b]) => a.localeCompare(b))
                .map(([k, v]) => (
                  <tr key={k} data-metric={k}>
                    <th>{k}</th>
                    <td class="num">{fmt(v)}</td>
                  </tr>
                ))}
            </tbody>
          </table>
        </Section>
      )}
      {!!evals.data?.items.length && (
        <Section title="Evaluations of this run">
          <ul>
            {evals.data.items.map((e) => (
              <li key={e.id}>
                <a href={`#/evaluations/${e.id}`}>{e.protocol}</a> <StatusBadge status={e.status} /> <When at={e.createdAt} />
              </li>
            ))}
          </ul>
        </Section>
      )}
    </>
  );
}
