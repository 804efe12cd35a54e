import { SetMetadata } from '@nestjs/common';
import type { Job } from 'bullmq';
import { JOB_NAMES, type JobName, type JobPayload } from './jobs';

/** What a handler gets besides its validated payload. */
export interface JobContext {
  job: Job;
  token: string | undefined;
  /** Fires when BullMQ cancels the job (a user's cancel, or the worker shutting down). */
  signal: AbortSignal | undefined;
}

/** One job name's handler; the registry checks at boot that each name has exactly one. */
export interface JobHandler<N extends JobName> {
  handle(payload: JobPayload<N>, ctx: JobContext): Promise<unknown>;
}

export const JOB_HANDLER_METADATA = 'ice:job-handler';

/** Marks a provider as the handler of `name`. */
export const HandlesJob = (name: JobName): ClassDecorator => SetMetadata(JOB_HANDLER_METADATA, name);

export type HandlerMap = { [N in JobName]: JobHandler<N> };

/**
 * Builds name → handler, failing start-up when a job name has no handler, two handlers, or a
 * handler claims a name that does not exist: a worker that cannot run every job it may receive
 * must not start taking jobs.
 */
export function buildHandlerMap(found: readonly { name: string; handler: JobHandler<JobName>; owner: string }[]): HandlerMap {
  const byName = new Map<string, { handler: JobHandler<JobName>; owner: string }[]>();
  for (const f of found) byName.set(f.name, [...(byName.get(f.name) ?? []), f]);
  const problems: string[] = [];
  for (const [name, hs] of byName) {
    if (!(JOB_NAMES as string[]).includes(name)) problems.push(`${hs.map((h) => h.owner).join(', ')} handle(s) unknown job ${name}`);
    if (hs.length > 1) problems.push(`job ${name} has ${hs.length} handlers: ${hs.map((h) => h.owner).join(', ')}`);
  }
  for (const name of JOB_NAMES) if (!byName.has(name)) problems.push(`job ${name} has no handler`);
  if (problems.length) throw new Error(`job handler registry: ${problems.join('; ')}`);
  return Object.fromEntries(JOB_NAMES.map((n) => [n, byName.get(n)![0].handler])) as HandlerMap;
}
