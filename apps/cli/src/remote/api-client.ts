/**
 * The one door from `ice` to the HTTP API: base URL and key (flag, environment, default), JSON
 * requests whose failures become exit codes with the API's own error message, and the SSE
 * streams as typed events.
 */
import { readSseStream, type OrchestrationEvent } from '@ice/orchestration';
import type { ApiTarget } from './api-target';
import { CliError, EXIT, exitCodeOfStatus } from './exit-codes';

const API_KEY_HEADER = 'x-api-key';
const REQUEST_TIMEOUT_MS = 30_000;

export interface ApiResponse {
  status: number;
  contentType: string;
  text: string;
  /** The parsed body when it is JSON, else the text. */
  body: unknown;
}

/** The API's error body ({statusCode, code?, message}) as one line: what the API said, word for word. */
function errorMessage(method: string, path: string, res: ApiResponse, target: ApiTarget): string {
  const b = res.body as { code?: unknown; message?: unknown } | string;
  const said =
    typeof b === 'object' && b !== null
      ? [
          typeof b.code === 'string' ? b.code : null,
          Array.isArray(b.message) ? b.message.join('; ') : typeof b.message === 'string' ? b.message : res.text,
        ]
          .filter(Boolean)
          .join(': ')
      : res.text.trim() || '(no body)';
  let hint = '';
  if (res.status === 401) hint = target.key ? ' (ICE_API_KEY is not one of the API keys)' : ' (set ICE_API_KEY to one of the API keys)';
  return `${method} ${path}: HTTP ${res.status}: ${said}${hint}`;
}

export class IceApiClient {
  constructor(readonly target: ApiTarget) {}

  private unreachable(e: unknown): CliError {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (e as Error).message;
    return new CliError(
      EXIT.unreachable,
      `cannot reach the API at ${this.target.url} (${why}); start it (npm run start:api) or point --api / ICE_API_URL at it`,
    );
  }

  /** One request; any status ≥ 400 throws a CliError with the API's message and the matching exit code. */
  async request(method: 'GET' | 'POST', path: string, body?: unknown): Promise<ApiResponse> {
    const headers: Record<string, string> = { accept: 'application/json, text/markdown, text/csv, */*' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.target.key) headers[API_KEY_HEADER] = this.target.key;
    let res: Response;
    try {
      res = await fetch(this.target.url + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (e) {
      throw this.unreachable(e);
    }
    const text = await res.text();
    const contentType = res.headers.get('content-type') ?? '';
    let parsed: unknown = text;
    if (contentType.includes('json')) {
      try {
        parsed = JSON.parse(text);
      } catch {
        // leave the text: the error message shows it
      }
    }
    const out: ApiResponse = { status: res.status, contentType, text, body: parsed };
    if (res.status >= 400) {
      const code = typeof parsed === 'object' && parsed !== null ? (parsed as { code?: unknown }).code : undefined;
      throw new CliError(exitCodeOfStatus(res.status, code), errorMessage(method, path, out, this.target));
    }
    return out;
  }

  async get<T>(path: string): Promise<T> {
    return (await this.request('GET', path)).body as T;
  }

  async post<T>(path: string, body: unknown): Promise<T> {
    return (await this.request('POST', path, body)).body as T;
  }

  /** GET that answers null on 404 (used to find out what an id names). */
  async find<T>(path: string): Promise<T | null> {
    try {
      return await this.get<T>(path);
    } catch (e) {
      if (e instanceof CliError && e.exitCode === EXIT.notFound) return null;
      throw e;
    }
  }

  /** The events of an SSE endpoint until the server ends the stream or `signal` aborts. */
  async *events(path: string, signal: AbortSignal): AsyncGenerator<OrchestrationEvent> {
    let res: Response;
    try {
      res = await fetch(this.target.url + path, { headers: { accept: 'text/event-stream' }, signal });
    } catch (e) {
      if (signal.aborted) return;
      throw this.unreachable(e);
    }
    if (!res.ok || !res.body) {
      const text = await res.text();
      throw new CliError(exitCodeOfStatus(res.status), `GET ${path}: HTTP ${res.status}: ${text}`);
    }
    try {
      for await (const m of readSseStream(res.body)) yield JSON.parse(m.data) as OrchestrationEvent;
    } catch (e) {
      if (signal.aborted) return;
      throw e;
    }
  }
}
