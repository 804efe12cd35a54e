import { getJson } from './api';
import { Cell, ErrorLine, Eta, ProgressBar, Section, StatusBadge, When, API } from './components';
import { useLoad } from './hooks';
import type { Evaluation, Page, Run, Sweep } from './types';
import { fmt } from './view-model';

/** Everything recent at a glance; lists have no event stream, so they are re-read every few seconds. */
export function OverviewPage() {
  const sweeps = useLoad((s) => getJson<Page<Sweep>>(`${API}sweeps?limit=50`, s), [], { everyMs: 3000 });
  const runs = useLoad((s) => getJson<Page<Run>>(`${API}runs?limit=50`, s), [], { everyMs: 3000 });
  const evals = useLoad((s) => getJson<Page<Evaluation>>(`${API}evaluations?limit=20`, s), [], { everyMs: 5000 });
  return (
    <>
      <Section title={`Sweeps${sweeps.data ? ` (${sweeps.data.total})` : ''}`} testId="sweeps">
        <ErrorLine error={sweeps.error} />
        <table>
          <thead>
            <tr>
              <th>sweep</th>
              <th>status</th>
              <th>axes</th>
              <th>runs</th>
              <th>created</th>
            </tr>
          </thead>
          <tbody>
            {sweeps.data?.items.map((s) => (
              <tr key={s.id} data-sweep-id={s.id}>
                <td>
                  <a href={`#/sweeps/${s.id}`}>{s.name ?? s.id.slice(0, 8)}</a>
                </td>
                <td>
                  <StatusBadge status={s.status} />
                </td>
                <td>{s.axes.join(' × ')}</td>
                <td>
                  {Object.entries(s.counts)
                    .filter(([, n]) => n > 0)
                    .map(([k, n]) => `${n} ${k}`)
                    .join(', ')}{' '}
                  of {s.runCount}
                </td>
                <td>
                  <When at={s.createdAt} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {sweeps.data?.items.length === 0 && <p class="muted">No sweeps yet: POST /sweeps (see /docs) or npm run demo.</p>}
      </Section>
      <Section title={`Runs${runs.data ? ` (${runs.data.total})` : ''}`} testId="runs">
        <ErrorLine error={runs.error} />
        <RunTable runs={runs.data?.items ?? []} showSweep />
      </Section>
      <Section title={`Evaluations${evals.data ? ` (${evals.data.total})` : ''}`} testId="evaluations">
        <ErrorLine error={evals.error} />
        <table>
          <thead>
            <tr>
              <th>evaluation</th>
              <th>protocol</th>
              <th>status</th>
              <th>run</th>
              <th>methods</th>
              <th>created</th>
            </tr>
          </thead>
          <tbody>
            {evals.data?.items.map((e) => (
              <tr key={e.id} data-evaluation-id={e.id}>
                <td>
                  <a href={`#/evaluations/${e.id}`}>{e.id.slice(0, 8)}</a>
                </td>
                <td>{e.protocol}</td>
                <td>
                  <StatusBadge status={e.status} />
                </td>
                <td>{e.runId ? <a href={`#/runs/${e.runId}`}>{e.runId.slice(0, 8)}</a> : '–'}</td>
                <td>{e.result?.rows.map((r) => r.method).join(', ') ?? '–'}</td>
                <td>
                  <When at={e.createdAt} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {evals.data?.items.length === 0 && (
          <p class="muted">No evaluations yet: POST /evaluations with a finished run (saveMaps: N keeps overlays for the gallery).</p>
        )}
      </Section>
    </>
  );
}

export function RunTable({ runs, showSweep = false }: { runs: Run[]; showSweep?: boolean }) {
  return (
    <table class="runs">
      <thead>
        <tr>
          <th>run</th>
          {showSweep && <th>sweep</th>}
          <th>cell</th>
          <th>seed</th>
          <th>status</th>
          <th>progress</th>
          <th>loss</th>
          <th>ETA</th>
        </tr>
      </thead>
      <tbody>
        {runs.map((r) => (
          <tr key={r.id} data-run-id={r.id}>
            <td>
              <a href={`#/runs/${r.id}`}>{r.id.slice(0, 8)}</a>
            </td>
            {showSweep && <td>{r.sweepId ? <a href={`#/sweeps/${r.sweepId}`}>{r.sweepId.slice(0, 8)}</a> : '–'}</td>}
            <td>
              <Cell cell={r.cell} />
            </td>
            <td>{r.seed}</td>
            <td title={r.error ?? ''}>
              <StatusBadge status={r.status} />
            </td>
            <td>
              <ProgressBar progress={r.progress} status={r.status} />
            </td>
            <td>{fmt(r.progress?.loss)}</td>
            <td>
              <Eta progress={r.progress} status={r.status} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
