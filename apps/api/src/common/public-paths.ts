import * as path from 'node:path';
import { Inject, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { map, type Observable } from 'rxjs';
import { ArtifactStore, ORCHESTRATION_CONFIG, type OrchestrationConfig } from '@ice/orchestration';

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The API's own top-level routes: a string starting with one is a URL, not a server path. */
const API_ROUTES = new Set(['evaluations', 'runs', 'sweeps', 'experiments', 'queues', 'docs', 'health', 'ui']);

/** An absolute path of two or more segments, at the start of a string or after a space, quote, bracket, = or comma. */
const OTHER_ABSOLUTE_PATH = /(^|[\s'"([=,])(\/([\w.@+-]+)\/(?:[\w.@+-]+\/)*[\w.@+-]*)/g;

function isPlain(v: object): boolean {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null || Array.isArray(v);
}

/**
 * What a client sees of the server's files: names relative to the artifact directory
 * (`runs/<id>/final.safetensors`) or to their data root, never absolute paths (the server's
 * layout is none of a client's business, and a shared deployment's users see each other's runs).
 * The rows keep the absolute paths the workers need; responses go through `redact` (one
 * interceptor for every JSON body and SSE event, and the error filter for messages).
 */
@Injectable()
export class PublicPaths {
  private readonly pattern: RegExp | null;
  private readonly roots: string[];

  constructor(@Inject(ORCHESTRATION_CONFIG) config: OrchestrationConfig, artifacts: ArtifactStore) {
    // Longest first, so a root inside another (artifacts inside the working directory) wins.
    this.roots = [...new Set([artifacts.root, ...config.dataRoots, path.resolve(config.embeddedDb.dataDir, '..'), process.cwd()])]
      .map((r) => path.resolve(r))
      .filter((r) => r !== path.parse(r).root)
      .sort((a, b) => b.length - a.length);
    // A root followed by a separator (→ the rest is the relative name) or ending the path (→ '.').
    this.pattern = this.roots.length
      ? new RegExp(`(${this.roots.map(escapeRegExp).join('|')})(?:${escapeRegExp(path.sep)}|(?![\\w.-]))`, 'g')
      : null;
  }

  /** A path as a client may see it: relative to the root it lies in; any other absolute path by its file name only. */
  name(p: string): string {
    if (!path.isAbsolute(p)) return p;
    const abs = path.resolve(p);
    for (const r of this.roots) {
      const rel = path.relative(r, abs);
      if (!rel.startsWith('..') && !path.isAbsolute(rel)) return rel === '' ? '.' : rel;
    }
    return path.basename(abs);
  }

  /**
   * Every string in a JSON value (objects, arrays, strings; other class instances untouched) with
   * the server's paths made relative to their root. `elsewhere: 'basename'` (bodies and events)
   * also cuts any other absolute file path down to its name (a library's path in the backend
   * line, a path in a worker's error); error messages keep them (`'keep'`), since there they echo
   * the client's own input ("/etc/passwd is outside the configured data roots").
   */
  redact<T>(value: T, elsewhere: 'basename' | 'keep' = 'basename'): T {
    return this.walk(value, elsewhere) as T;
  }

  private walk(v: unknown, elsewhere: 'basename' | 'keep'): unknown {
    if (typeof v === 'string') return this.text(v, elsewhere);
    if (typeof v !== 'object' || v === null) return v;
    if (v instanceof Date || !isPlain(v)) return v;
    if (Array.isArray(v)) return v.map((x) => this.walk(x, elsewhere));
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.walk(x, elsewhere)]));
  }

  /** Paths inside the roots, whole strings or inside messages, made relative; the API's own URLs (/evaluations/…) as they are. */
  private text(s: string, elsewhere: 'basename' | 'keep'): string {
    const inRoots = this.pattern ? s.replace(this.pattern, (m) => (m.endsWith(path.sep) ? '' : '.')) : s;
    if (elsewhere === 'keep') return inRoots;
    return inRoots.replace(OTHER_ABSOLUTE_PATH, (m: string, before: string, p: string, first: string) =>
      API_ROUTES.has(first) ? m : `${before}${path.posix.basename(p)}`,
    );
  }
}

/** Applies PublicPaths to every response body and SSE event (files are streams, and pass through). */
@Injectable()
export class PublicPathsInterceptor implements NestInterceptor {
  constructor(private readonly paths: PublicPaths) {}

  intercept(_ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(map((body: unknown) => this.paths.redact(body)));
  }
}
