import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { followEvents, type SseMessage } from './api';

export interface Loaded<T> {
  data: T | undefined;
  error: string | undefined;
  reload: () => void;
}

/**
 * Loads `fn` now, again whenever `deps` change or `reload` is called, and every `everyMs` while
 * `poll` says so (lists and evaluations have no event stream). A newer load wins over an older one.
 */
export function useLoad<T>(
  fn: (signal: AbortSignal) => Promise<T>,
  deps: unknown[],
  opts: { everyMs?: number; poll?: (d: T | undefined) => boolean } = {},
): Loaded<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<string>();
  const [tick, setTick] = useState(0);
  const dataRef = useRef<T | undefined>(undefined);
  dataRef.current = data;
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    const ac = new AbortController();
    fn(ac.signal).then(
      (d) => {
        if (ac.signal.aborted) return;
        setData(d);
        setError(undefined);
      },
      (e: unknown) => {
        if (!ac.signal.aborted) setError(e instanceof Error ? e.message : String(e));
      },
    );
    return () => ac.abort();
    // deps are the caller's, plus the reload counter
  }, [...deps, tick]);
  useEffect(() => {
    if (!opts.everyMs) return;
    const t = setInterval(() => {
      if (!opts.poll || opts.poll(dataRef.current)) reload();
    }, opts.everyMs);
    return () => clearInterval(t);
    // the interval only depends on its period
  }, [opts.everyMs, reload]);
  return { data, error, reload };
}

/** Follows an SSE endpoint while the component is shown; `onEvent` gets every parsed event. */
export function useEvents<E>(path: string | null, onEvent: (e: E) => void): { live: boolean } {
  const [live, setLive] = useState(false);
  const handler = useRef(onEvent);
  handler.current = onEvent;
  useEffect(() => {
    if (!path) return;
    const ac = new AbortController();
    setLive(true);
    followEvents(path, (m: SseMessage) => handler.current(JSON.parse(m.data) as E), ac.signal)
      .catch(() => undefined)
      .finally(() => {
        if (!ac.signal.aborted) setLive(false);
      });
    return () => ac.abort();
  }, [path]);
  return { live };
}
