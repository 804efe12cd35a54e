import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { getJson } from './api';
import { Chart } from './chart';
import { API, ErrorLine, Section, StatusBadge, When } from './components';
import { useEvents, useLoad } from './hooks';
import { RunTable } from './overview-page';
import type { AblationTable, Run, StreamEvent, SweepDetail } from './types';
import { axisPlot, cellText, defaultPlotMetric, degeneracyText, isFinished, plotAxes } from './view-model';

/** A sweep: live status of its runs (SSE), its ablation table and a metric against α or λ_class. */
export function SweepPage({ id }: { id: string }) {
  const sweep = useLoad((s) => getJson<SweepDetail>(`${API}sweeps/${id}`, s), [id]);
  const table = useLoad((s) => getJson<AblationTable>(`${API}sweeps/${id}/table`, s), [id]);
  const [runPatch, setRunPatch] = useState<Record<string, Partial<Run>>>({});
  const [status, setStatus] = useState<{ status: string; counts: Record<string, number> }>();
  useEffect(() => {
    setRunPatch({});
    setStatus(undefined);
  }, [sweep.data]);

  // A finished run changes the table: re-read it, at most once a second.
  const pendingTable = useRef<ReturnType<typeof setTimeout>>(undefined);
  const refreshTable = (): void => {
    clearTimeout(pendingTable.current);
    pendingTable.current = setTimeout(table.reload, 1000);
  };
  useEffect(() => () => clearTimeout(pendingTable.current), []);

  const { live } = useEvents<StreamEvent>(`${API}sweeps/${id}/events`, (e) => {
    switch (e.type) {
      case 'run.progress':
        setRunPatch((p) => ({ ...p, [e.runId]: { ...p[e.runId], progress: e.progress } }));
        return;
      case 'run.status':
        setRunPatch((p) => ({
          ...p,
          [e.runId]: {
            ...p[e.runId],
            status: e.status,
            ...(e.metrics ? { metrics: e.metrics } : {}),
            ...(e.error ? { error: e.error } : {}),
          },
        }));
        if (isFinished(e.status)) refreshTable();
        return;
      case 'sweep.status':
        setStatus({ status: e.status, counts: e.counts });
        if (isFinished(e.status)) {
          sweep.reload();
          refreshTable();
        }
        return;
    }
  });

  const s = sweep.data;
  const runs = useMemo(() => (s?.runs ?? []).map((r) => ({ ...r, ...runPatch[r.id] })), [s, runPatch]);
  const shownStatus = status?.status ?? s?.status;
  const counts = status?.counts ?? s?.counts ?? {};
  const done = (counts.succeeded ?? 0) + (counts.failed ?? 0) + (counts.cancelled ?? 0);
  return (
    <>
      <h1>
        Sweep {s?.name ? `${s.name} ` : ''}
        <code>{id}</code>
      </h1>
      <ErrorLine error={sweep.error} />
      {s && (
        <p class="summary" data-testid="sweep-summary">
          <StatusBadge status={shownStatus ?? s.status} /> <span data-testid="sweep-done">{`${done} of ${s.runCount} runs finished`}</span>
          {' · '}
          {Object.entries(counts)
            .filter(([, n]) => n > 0)
            .map(([k, n]) => `${n} ${k}`)
            .join(', ')}
          {' · grid '}
          {s.axes.join(' × ')}
          {' · created '}
          <When at={s.createdAt} />
          {live && !isFinished(shownStatus ?? '') && <span class="live"> · live</span>}
        </p>
      )}
      <Section title="Ablation table" testId="ablation">
        <ErrorLine error={table.error} />
        {table.data && <AblationTableView table={table.data} />}
      </Section>
      {table.data && <AxisPlots table={table.data} />}
      <Section title="Runs" testId="sweep-runs">
        <RunTable runs={runs} />
      </Section>
    </>
  );
}

export function AblationTableView({ table }: { table: AblationTable }) {
  const flagged = table.lines.some((l) => l.degenerate !== undefined);
  return (
    <>
      <table class="ablation" data-testid="ablation-table">
        <thead>
          <tr>
            {table.rows.map((r) => (
              <th key={r}>{r}</th>
            ))}
            <th>runs</th>
            {table.metrics.map((m) => (
              <th key={m}>{m}</th>
            ))}
            {flagged && <th>degenerate maps</th>}
          </tr>
        </thead>
        <tbody>
          {table.lines.map((l, i) => (
            <tr key={i} class={l.degenerate ? 'degenerate' : ''} data-degenerate={l.degenerate ? 'true' : undefined}>
              {table.rows.map((r) => (
                <td key={r} data-axis={r}>
                  {String(l.key[r])}
                </td>
              ))}
              <td data-col="runs">
                {l.finished}/{l.runs}
              </td>
              {table.metrics.map((m) => (
                <td
                  key={m}
                  data-metric={m}
                  class={`num${l.cells[m]?.constant ? ' constant' : ''}${l.degenerate ? ' degenerate' : ''}`}
                  title={l.cells[m] ? `n = ${l.cells[m].n}${l.cells[m].constant ? '; the same value for every seed' : ''}` : ''}
                >
                  {cellText(l.cells[m])}
                </td>
              ))}
              {flagged && <td class="flag">{degeneracyText(l)}</td>}
            </tr>
          ))}
        </tbody>
      </table>
      {table.notes.map((n) => (
        <p class="note" key={n}>
          {n}
        </p>
      ))}
      <p class="muted">
        Download:{' '}
        <a href={`${API}sweeps/${table.sweepId}/table?format=csv`} download>
          CSV
        </a>{' '}
        ·{' '}
        <a href={`${API}sweeps/${table.sweepId}/table?format=markdown`} download>
          markdown
        </a>
      </p>
    </>
  );
}

function AxisPlots({ table }: { table: AblationTable }) {
  const axes = plotAxes(table);
  const [axis, setAxis] = useState<string>();
  const [metric, setMetric] = useState<string>();
  const x = axis && axes.includes(axis) ? axis : axes[0];
  const m = metric && table.metrics.includes(metric) ? metric : defaultPlotMetric(table.metrics);
  const plot = useMemo(() => (x && m ? axisPlot(table, x, m) : null), [table, x, m]);
  if (!axes.length || !table.metrics.length) return null;
  return (
    <Section title="Metric against the grid" testId="axis-plot">
      <p class="controls">
        <label>
          metric{' '}
          <select value={m} onChange={(e) => setMetric(e.currentTarget.value)} data-testid="plot-metric">
            {table.metrics.map((n) => (
              <option key={n}>{n}</option>
            ))}
          </select>
        </label>{' '}
        <label>
          against{' '}
          <select value={x} onChange={(e) => setAxis(e.currentTarget.value)} data-testid="plot-axis">
            {axes.map((a) => (
              <option key={a}>{a}</option>
            ))}
          </select>
        </label>{' '}
        <span class="muted">mean over seeds, one line per value of the other axes</span>
      </p>
      {plot && <Chart title={`${m} against ${x}`} xLabel={x} x={plot.x} series={plot.series} points testId="axis-chart" />}
    </Section>
  );
}
