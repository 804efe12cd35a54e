/**
 * The typed job registry on top of BullMQ: each job name has exactly one handler (a provider marked
 * @HandlesJob), checked when the worker boots, and every job is routed to it with its payload
 * parsed once against the job's schema.
 */
import { SetMetadata } from '@nestjs/common';
import { UnrecoverableError, type Job } from 'bullmq';
import { IceError } from '@ice/core';
import { JOB_DEFINITIONS, JOB_NAMES, isJobName, parseJobPayload, type JobName, type JobPayload } from './jobs';
import type { QueueName } from './queues';

/** Why a job's AbortSignal fired: a user's cancel ends the run; a shutdown hands the job back. */
export const CANCEL_REASON_USER = 'user-cancel';
export const CANCEL_REASON_SHUTDOWN = 'worker-shutdown';
/** Another rank of the data-parallel run failed for good: this rank stops without writing an outcome. */
export const CANCEL_REASON_GROUP_FAILED = 'group-failed';

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
  /**
   * A delivered payload that does not parse: record why on the row it names (when it names one)
   * before the job fails for good. Without it the job just fails.
   */
  rejectPayload?(raw: unknown, error: IceError): Promise<void>;
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

/**
 * Routes a job taken from `queue` to its handler: a job that belongs elsewhere, or whose payload
 * does not parse, fails for good (retrying cannot fix it); the handler may first record why.
 */
export async function dispatchJob(
  handlers: HandlerMap,
  queue: QueueName,
  job: Job,
  token: string | undefined,
  signal: AbortSignal | undefined,
): Promise<unknown> {
  if (!isJobName(job.name) || JOB_DEFINITIONS[job.name].queue !== queue) {
    throw new UnrecoverableError(`no job named ${job.name} belongs on queue ${queue}`);
  }
  const handler: JobHandler<JobName> = handlers[job.name];
  let payload: JobPayload<JobName>;
  try {
    payload = parseJobPayload(job.name, job.data);
  } catch (e) {
    const error = e instanceof IceError ? e : new IceError('INPUT_INVALID', String(e));
    await handler.rejectPayload?.(job.data, error);
    throw new UnrecoverableError(error.message);
  }
  return handler.handle(payload, { job, token, signal });
}
