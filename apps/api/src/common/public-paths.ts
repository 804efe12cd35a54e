import * as path from 'node:path';
import { Inject, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { map, type Observable } from 'rxjs';
import { ArtifactStore, ORCHESTRATION_CONFIG, type OrchestrationConfig } from '@ice/orchestration';

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

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

  /** Every string in a JSON value (objects, arrays, strings; other class instances untouched) with the server's paths made relative. */
  redact<T>(value: T): T {
    return this.walk(value) as T;
  }

  private walk(v: unknown): unknown {
    if (typeof v === 'string') return this.text(v);
    if (typeof v !== 'object' || v === null) return v;
    if (v instanceof Date || !isPlain(v)) return v;
    if (Array.isArray(v)) return v.map((x) => this.walk(x));
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.walk(x)]));
  }

  /** Paths inside the roots, whole strings or inside messages, made relative; anything else (URLs like /evaluations/…) as it is. */
  private text(s: string): string {
    return this.pattern ? s.replace(this.pattern, (m) => (m.endsWith(path.sep) ? '' : '.')) : s;
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
