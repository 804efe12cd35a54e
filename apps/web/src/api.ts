/**
 * The page's one door to the API: JSON reads, server-sent events and images, all sending the API
 * key when one is set (an API run with READ_AUTH asks for it on reads too; an <img> or an
 * EventSource cannot send a header, so images and events go through fetch as well).
 */
const KEY_STORAGE = 'ice.apiKey';

export function apiKey(): string {
  return localStorage.getItem(KEY_STORAGE) ?? '';
}

export function setApiKey(key: string): void {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const key = apiKey();
  return key ? { ...extra, 'x-api-key': key } : extra;
}

/** An API answer that was not 2xx, with the API's own message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function failure(res: Response): Promise<ApiError> {
  const text = await res.text();
  let message = text || res.statusText;
  try {
    const body = JSON.parse(text) as { message?: unknown };
    if (typeof body.message === 'string') message = body.message;
    else if (Array.isArray(body.message)) message = body.message.map((m) => JSON.stringify(m)).join('; ');
  } catch {
    // not JSON: keep the text
  }
  return new ApiError(res.status, `${res.status}: ${message}`);
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  const res = await fetch(path, { headers: headers({ accept: 'application/json' }), signal });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

/** An image (or any file) as an object URL; the caller revokes it. */
export async function getObjectUrl(path: string, signal?: AbortSignal): Promise<string> {
  const res = await fetch(path, { headers: headers(), signal });
  if (!res.ok) throw await failure(res);
  return URL.createObjectURL(await res.blob());
}

export interface SseMessage {
  event: string;
  data: string;
}

/** Splits a text/event-stream buffer into complete events and the unfinished rest. */
export function parseSseChunk(buf: string): { messages: SseMessage[]; rest: string } {
  const messages: SseMessage[] = [];
  let i: number;
  while ((i = buf.indexOf('\n\n')) >= 0) {
    const block = buf.slice(0, i);
    buf = buf.slice(i + 2);
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
    }
    if (data.length) messages.push({ event, data: data.join('\n') });
  }
  return { messages, rest: buf };
}

/**
 * Follows an SSE endpoint until it ends or `signal` aborts; reconnects after a dropped connection
 * (the API starts every stream with a snapshot, so nothing is missed). Resolves when the stream
 * ends normally (the subject finished).
 */
export async function followEvents(path: string, onEvent: (e: SseMessage) => void, signal: AbortSignal): Promise<void> {
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      const res = await fetch(path, { headers: headers({ accept: 'text/event-stream' }), signal });
      if (!res.ok || !res.body) throw await failure(res);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        const parsed = parseSseChunk(buf + value);
        buf = parsed.rest;
        parsed.messages.forEach(onEvent);
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ApiError && e.status < 500) throw e;
      await new Promise((r) => setTimeout(r, Math.min(10_000, 1000 * 2 ** attempt)));
    }
  }
}
