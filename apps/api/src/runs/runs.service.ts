import { ConflictException, Injectable, NotFoundException, type MessageEvent } from '@nestjs/common';
import type { Observable } from 'rxjs';
import {
  EventBus,
  isTerminalRunStatus,
  JobQueue,
  MetricRepository,
  RunRepository,
  runProgressEvent,
  runStatusEvent,
  type OrchestrationEvent,
  type RunEntity,
} from '@ice/orchestration';
import { eventStream } from '../common/sse';
import { MetricsQuery, parseRequest, RunListQuery } from '../common/request-schemas';
import { SubmissionRules } from './submission.rules';
import { runView } from './run.views';

@Injectable()
export class RunsService {
  constructor(
    private readonly runs: RunRepository,
    private readonly metrics: MetricRepository,
    private readonly queue: JobQueue,
    private readonly bus: EventBus,
    private readonly rules: SubmissionRules,
  ) {}

  /** One experiment: validated, stored, queued (one job per data-parallel rank). */
  async submit(raw: unknown) {
    const config = this.rules.runConfig(raw);
    await this.rules.admit([config]);
    const run = await this.runs.create({ cellKey: '', cell: {}, seed: config.seed, config: this.rules.stored(config) });
    try {
      await this.queue.enqueueRun({ runId: run.id, config });
    } catch (e) {
      await this.runs.fail(run.id, `could not be queued: ${(e as Error).message}`, true);
      throw e;
    }
    return runView(run);
  }

  async require(id: string): Promise<RunEntity> {
    const run = await this.runs.get(id);
    if (!run) throw new NotFoundException(`run ${id} does not exist`);
    return run;
  }

  async get(id: string) {
    return runView(await this.require(id));
  }

  async list(rawQuery: unknown) {
    const q = parseRequest(RunListQuery, rawQuery, 'query');
    const { items, total } = await this.runs.list({ status: q.status, sweepId: q.sweepId }, q);
    return { items: items.map(runView), total, limit: q.limit, offset: q.offset };
  }

  async series(id: string, rawQuery: unknown) {
    const q = parseRequest(MetricsQuery, rawQuery, 'query');
    await this.require(id);
    return { runId: id, series: await this.metrics.series(id, q.names) };
  }

  /**
   * A queued run is cancelled at once (and its jobs removed from the queue); a running one is flagged and its worker told to stop
   * (it aborts between two training steps, so within a second or so on small models).
   */
  async cancel(id: string) {
    const before = await this.require(id);
    if (isTerminalRunStatus(before.status)) throw new ConflictException(`run ${id} has already finished (${before.status})`);
    const run = (await this.runs.requestCancel(id))!;
    if (run.status === 'cancelled') {
      // Its jobs leave the waiting list now rather than being picked up only to find the row cancelled.
      const worldSize = run.config.run.worldSize;
      await this.queue.removeRunJobs([{ id, worldSize: typeof worldSize === 'number' ? worldSize : 1 }]);
      await this.bus.publish(runStatusEvent(run));
    } else await this.bus.requestCancel({ runId: id });
    return runView(run);
  }

  events(id: string): Observable<MessageEvent> {
    return eventStream({
      subscribe: (fn) => this.bus.onRunEvent(id, fn),
      snapshot: async () => {
        const run = await this.require(id);
        const events: OrchestrationEvent[] = [runStatusEvent(run)];
        if (run.progress && !isTerminalRunStatus(run.status)) events.unshift(runProgressEvent(run, run.progress));
        return events;
      },
      isEnd: (e) => e.type === 'run.status' && isTerminalRunStatus(e.status),
    });
  }
}
