/**
 * The one vocabulary of sweep axes. An axis is named by the run config's own dotted path
 * (`loss.lambdaClass`); the short aliases people type (`alpha`, `lambda_class`, `lambdaClass`,
 * `lr`, …) are accepted everywhere (grids, table rows, the CLI) and turned into the path here,
 * once. The known paths are read off RunConfigSchema itself, so a field added to the contract is
 * an axis at once, and nothing else — no user key ever becomes an object path unchecked.
 */
import type { z } from 'zod';
import { IceError, type IceErrorCode } from '@ice/core';
import { RunConfigSchema } from './run.contract';

/** Short names of axes → their run config paths (the paper's ablation axes and a few common fields). */
export const AXIS_ALIASES: Readonly<Record<string, string>> = {
  alpha: 'loss.alpha',
  lambda_class: 'loss.lambdaClass',
  lambdaClass: 'loss.lambdaClass',
  variant: 'loss.variant',
  head: 'model.head',
  preset: 'model.preset',
  lr: 'optimizer.lr',
  steps: 'steps',
};

/** The zod wrappers that hold a field's own schema (defaults, optionality, pipes). */
function unwrap(s: z.ZodType): z.ZodType {
  const def = s._zod.def as { type: string; innerType?: z.ZodType; in?: z.ZodType };
  if (def.innerType && ['default', 'prefault', 'optional', 'nullable', 'readonly', 'catch'].includes(def.type))
    return unwrap(def.innerType);
  if (def.type === 'pipe' && def.in) return unwrap(def.in);
  return s;
}

/** Every leaf field of a zod object schema as a dotted path, in declaration order. */
export function schemaLeafPaths(schema: z.ZodType, prefix: readonly string[] = []): string[] {
  const s = unwrap(schema);
  const def = s._zod.def as { type: string; shape?: Record<string, z.ZodType> };
  if (def.type !== 'object' || !def.shape) return [prefix.join('.')];
  return Object.entries(def.shape).flatMap(([k, v]) => schemaLeafPaths(v, [...prefix, k]));
}

/** The run config's leaf paths: the names a sweep axis or a table row can have. */
export const RUN_CONFIG_PATHS: readonly string[] = Object.freeze(schemaLeafPaths(RunConfigSchema));
const PATHS = new Set(RUN_CONFIG_PATHS);

/** "loss.alpha (alpha), loss.lambdaClass (lambda_class, lambdaClass), …": what an error lists. */
export function knownAxesText(): string {
  return RUN_CONFIG_PATHS.map((p) => {
    const aliases = Object.keys(AXIS_ALIASES).filter((a) => AXIS_ALIASES[a] === p && a !== p);
    return aliases.length ? `${p} (${aliases.join(', ')})` : p;
  }).join(', ');
}

/** The canonical path of an axis name (a path or an alias), or null when it names no run config field. */
export function canonicalAxisOrNull(name: string): string | null {
  const p = Object.hasOwn(AXIS_ALIASES, name) ? AXIS_ALIASES[name] : name;
  return PATHS.has(p) ? p : null;
}

/** The canonical path of an axis name; IceError(code) naming it and listing the known ones otherwise. */
export function canonicalAxis(name: string, field: string, code: IceErrorCode = 'CONFIG_INVALID'): string {
  const p = canonicalAxisOrNull(name);
  if (p === null) throw new IceError(code, `${field}: unknown axis '${name}'; known: ${knownAxesText()}`);
  return p;
}

/** Canonical names of a list of axes; two names of the same field are refused. */
export function canonicalAxes(names: readonly string[], field: string, code: IceErrorCode = 'CONFIG_INVALID'): string[] {
  const out: string[] = [];
  const from = new Map<string, string>();
  for (const n of names) {
    const p = canonicalAxis(n, field, code);
    if (from.has(p)) throw new IceError(code, `${field}: '${from.get(p)}' and '${n}' both name ${p}`);
    from.set(p, n);
    out.push(p);
  }
  return out;
}

/** Sets a whitelisted path (see RUN_CONFIG_PATHS) in a plain JSON object, creating the objects on the way as own fields. */
export function setConfigPath(target: Record<string, unknown>, path: string, value: unknown): void {
  if (!PATHS.has(path)) throw new IceError('CONFIG_INVALID', `${path} is not a run config field`);
  const parts = path.split('.');
  let node = target;
  for (const p of parts.slice(0, -1)) {
    const next = Object.hasOwn(node, p) ? node[p] : undefined;
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[p] = {};
    node = node[p] as Record<string, unknown>;
  }
  node[parts[parts.length - 1]] = value;
}

/** The value at a whitelisted path of a (parsed or stored) run config; undefined where absent. */
export function configValue(config: unknown, path: string): unknown {
  if (!PATHS.has(path)) return undefined;
  let node: unknown = config;
  for (const p of path.split('.')) {
    if (typeof node !== 'object' || node === null || !Object.hasOwn(node, p)) return undefined;
    node = (node as Record<string, unknown>)[p];
  }
  return node;
}

/** A grid cell's values keyed by canonical paths (cells stored before the vocabulary was one may use aliases). */
export function canonicalCell(cell: Readonly<Record<string, number | string | boolean>>): Record<string, number | string | boolean> {
  // fromEntries defines own fields: a stored key can never reach a prototype.
  return Object.fromEntries(Object.entries(cell).map(([k, v]) => [canonicalAxisOrNull(k) ?? k, v]));
}

/** A table row's value for a run (`row` a canonical path): its grid cell's value on that axis, else its config's (e.g. seed). */
export function rowValueOf(
  cell: Readonly<Record<string, number | string | boolean>>,
  config: unknown,
  row: string,
): number | string | boolean | undefined {
  const own = canonicalCell(cell);
  if (Object.hasOwn(own, row)) return own[row];
  const v = configValue(config, row);
  return typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean' ? v : undefined;
}
