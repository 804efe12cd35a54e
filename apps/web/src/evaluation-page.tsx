import { getJson } from './api';
import { API, AuthImg, ErrorLine, Section, StatusBadge, When } from './components';
import { useLoad } from './hooks';
import type { Evaluation } from './types';
import { fmt, gallery, isFinished, mapFileName } from './view-model';

/** An evaluation: one row per method, and its saved overlays side by side (image × method). */
export function EvaluationPage({ id }: { id: string }) {
  // Evaluations have no event stream: re-read every 2 s until finished.
  const ev = useLoad((s) => getJson<Evaluation>(`${API}evaluations/${id}`, s), [id], {
    everyMs: 2000,
    poll: (d) => !d || !isFinished(d.status),
  });
  const e = ev.data;
  const rows = e?.result?.rows ?? [];
  const columns = e?.result?.columns ?? [...new Set(rows.flatMap((r) => Object.keys(r.metrics)))];
  const saved = e?.result?.savedMaps;
  const g = saved
    ? gallery(
        saved.files,
        rows.map((r) => r.method),
      )
    : null;
  const label = (m: string): string => rows.find((r) => r.method === m)?.label ?? m;
  const mapPath = (file: string): string => `${API}evaluations/${id}/maps/${encodeURIComponent(file)}`;
  return (
    <>
      <h1>
        Evaluation <code>{id}</code>
      </h1>
      <ErrorLine error={ev.error} />
      {e && (
        <p class="summary">
          <StatusBadge status={e.status} /> {e.protocol}
          {e.runId && (
            <>
              {' of run '}
              <a href={`#/runs/${e.runId}`}>{e.runId.slice(0, 8)}</a>
            </>
          )}
          {e.progress?.total ? ` · ${e.progress.done ?? 0}/${e.progress.total} images` : ''} · created <When at={e.createdAt} />
          {e.error && <span class="error"> {e.error}</span>}
        </p>
      )}
      {rows.length > 0 && (
        <Section title="Scores" testId="evaluation-scores">
          <table>
            <thead>
              <tr>
                <th>method</th>
                {columns.map((c) => (
                  <th key={c}>{c}</th>
                ))}
                <th>images</th>
                <th>images/s</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.method} data-method={r.method}>
                  <td>{r.label}</td>
                  {columns.map((c) => (
                    <td key={c} class="num" data-metric={c}>
                      {fmt(r.metrics[c])}
                    </td>
                  ))}
                  <td class="num">{r.images}</td>
                  <td class="num">{fmt(r.imagesPerSecond, 1)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {e?.result?.conventions?.length ? (
            <details>
              <summary>conventions</summary>
              <ul>
                {e.result.conventions.map((c) => (
                  <li key={c}>{c}</li>
                ))}
              </ul>
            </details>
          ) : null}
        </Section>
      )}
      {g && g.images.length > 0 && (
        <Section title="Map gallery" testId="gallery">
          <table class="gallery" data-testid="gallery-grid">
            <thead>
              <tr>
                <th>image</th>
                {g.methods.map((m) => (
                  <th key={m}>{label(m)}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {g.images.map((i) => (
                <tr key={i}>
                  <th>#{i}</th>
                  {g.methods.map((m) => {
                    const f = g.file(i, m);
                    return (
                      <td key={m}>{f ? <AuthImg path={mapPath(f)} alt={`${label(m)}, image ${i}`} testId="gallery-image" /> : '–'}</td>
                    );
                  })}
                </tr>
              ))}
            </tbody>
          </table>
          {saved?.contactSheet && (
            <p class="muted">
              The same as one image:{' '}
              <a href={mapPath(mapFileName(saved.contactSheet))} target="_blank" rel="noreferrer">
                contact sheet
              </a>
            </p>
          )}
        </Section>
      )}
      {e && isFinished(e.status) && !g?.images.length && <p class="muted">No saved maps (submit with saveMaps: N to keep overlays).</p>}
    </>
  );
}
