import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { getObjectUrl } from './api';
import type { Progress, Scalar } from './types';
import { duration } from './view-model';

export const API = new URL('../', document.baseURI).pathname;

export function StatusBadge({ status }: { status: string }) {
  return (
    <span class={`status status-${status}`} data-status={status}>
      {status}
    </span>
  );
}

export function ProgressBar({ progress, status }: { progress: Progress | null; status: string }) {
  const total = progress?.totalSteps ?? 0;
  const step = status === 'succeeded' ? total : (progress?.step ?? 0);
  const frac = total > 0 ? Math.min(1, step / total) : 0;
  return (
    <span class="progress" title={total ? `step ${step} of ${total}` : ''}>
      <span class="bar">
        <span class="fill" style={{ width: `${(frac * 100).toFixed(1)}%` }} />
      </span>
      <span class="label">{total ? `${step}/${total}` : '–'}</span>
    </span>
  );
}

export function Eta({ progress, status }: { progress: Progress | null; status: string }) {
  if (status !== 'running' || progress?.etaSeconds === undefined || progress.etaSeconds === null) return <>–</>;
  return <>{duration(progress.etaSeconds)}</>;
}

export function Cell({ cell }: { cell: Record<string, Scalar> | null }) {
  if (!cell || !Object.keys(cell).length) return <>–</>;
  return (
    <>
      {Object.entries(cell)
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(' ')}
    </>
  );
}

export function When({ at }: { at: string | null | undefined }) {
  if (!at) return <>–</>;
  const d = new Date(at);
  return <time dateTime={at}>{d.toLocaleString()}</time>;
}

export function ErrorLine({ error }: { error: string | undefined }) {
  if (!error) return null;
  // 401 on a read: the API wants a key for reads (READ_AUTH=on), which the page sends once it is typed in.
  const hint = error.startsWith('401') ? ' Type the API key in the field at the top right.' : '';
  return (
    <p class="error">
      {error}
      {hint}
    </p>
  );
}

export function Section({ title, children, testId }: { title: string; children: ComponentChildren; testId?: string }) {
  return (
    <section data-testid={testId}>
      <h2>{title}</h2>
      {children}
    </section>
  );
}

/** An image fetched with the API key (an <img src> cannot send the header). */
export function AuthImg({ path, alt, testId }: { path: string; alt: string; testId?: string }) {
  const [url, setUrl] = useState<string>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    const ac = new AbortController();
    let made: string | undefined;
    getObjectUrl(path, ac.signal).then(
      (u) => {
        made = u;
        if (ac.signal.aborted) URL.revokeObjectURL(u);
        else setUrl(u);
      },
      (e: unknown) => !ac.signal.aborted && setError(e instanceof Error ? e.message : String(e)),
    );
    return () => {
      ac.abort();
      if (made) URL.revokeObjectURL(made);
    };
  }, [path]);
  if (error) return <span class="error">{error}</span>;
  return url ? <img src={url} alt={alt} title={alt} data-testid={testId} /> : <span class="muted">loading…</span>;
}
