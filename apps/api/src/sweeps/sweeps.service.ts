import { ConflictException, Injectable, Logger, NotFoundException, type MessageEvent } from '@nestjs/common';
import type { Observable } from 'rxjs';
import { buildAblationTable, canonicalAxes, rowValueOf, tableNotes, tableToCsv, tableToMarkdown, type RunOutcome } from '@ice/experiments';
import {
  EventBus,
  isTerminalSweepStatus,
  JobQueue,
  RunRepository,
  runStatusEvent,
  SweepRepository,
  sweepOutcome,
  sweepStatusEvent,
  type SweepEntity,
} from '@ice/orchestration';
import { eventStream } from '../common/sse';
import { parseRequest, SweepListQuery, TableQuery } from '../common/request-schemas';
import { SubmissionRules } from '../runs/submission.rules';
import { runView, sweepView } from '../runs/run.views';

export type TableResponse = { format: 'json'; body: unknown } | { format: 'csv' | 'markdown'; body: string };

@Injectable()
export class SweepsService {
  private readonly log = new Logger('sweeps');

  constructor(
    private readonly sweeps: SweepRepository,
    private readonly runs: RunRepository,
    private readonly queue: JobQueue,
    private readonly bus: EventBus,
    private readonly rules: SubmissionRules,
  ) {}

  /** A grid of runs as one flow; every (cell, seed) is validated before anything is stored. */
  async submit(raw: unknown) {
    const { request, cells } = this.rules.sweep(raw);
    await this.rules.admit(cells.map((c) => c.config));
    const { sweep, runs } = await this.sweeps.create({
      name: request.name ?? null,
      spec: request,
      axes: Object.keys(request.grid),
      runs: cells.map((c) => ({ cellKey: c.cellKey, cell: c.values, seed: c.seed, config: this.rules.stored(c.config) })),
    });
    try {
      // The repository returns the runs in the order of the cells.
      await this.queue.enqueueSweep(
        sweep.id,
        runs.map((r, i) => ({ runId: r.id, config: cells[i].config })),
      );
    } catch (e) {
      await this.sweeps.setStatus(sweep.id, 'failed');
      throw e;
    }
    const counts = await this.sweeps.countsOf(sweep.id);
    return { ...sweepView(sweep, counts), runIds: runs.map((r) => r.id) };
  }

  async require(id: string): Promise<SweepEntity> {
    const sweep = await this.sweeps.get(id);
    if (!sweep) throw new NotFoundException(`sweep ${id} does not exist`);
    return sweep;
  }

  async get(id: string) {
    const sweep = await this.require(id);
    const counts = await this.sweeps.countsOf(id);
    const runs = await this.runs.ofSweep(id);
    return { ...sweepView(sweep, counts), runs: runs.map(runView) };
  }

  async list(rawQuery: unknown) {
    const q = parseRequest(SweepListQuery, rawQuery, 'query');
    const { items, total } = await this.sweeps.list({ status: q.status, name: q.name }, q);
    const counts = await this.sweeps.counts(items.map((s) => s.id));
    return { items: items.map((s) => sweepView(s, counts.get(s.id)!)), total, limit: q.limit, offset: q.offset };
  }

  /** The ablation table: one line per grid cell (by the chosen rows), mean ± std over seeds per metric. */
  async table(id: string, rawQuery: unknown): Promise<TableResponse> {
    const q = parseRequest(TableQuery, rawQuery, 'query');
    const sweep = await this.require(id);
    const runs = await this.runs.ofSweep(id);
    // Aliases and sweeps stored before the one vocabulary come out as config paths; unknown names are a 400 listing the known ones.
    const rows = canonicalAxes(q.rows ?? sweep.axes, 'rows', 'INPUT_INVALID');
    const outcomes: RunOutcome[] = runs.map((run) => ({
      values: Object.fromEntries(rows.map((r) => [r, rowValueOf(run.cell, run.config.run, r) ?? '–'])),
      seed: run.seed,
      status: run.status,
      metrics: run.status === 'succeeded' ? run.metrics : null,
    }));
    const table = buildAblationTable(outcomes, rows, q.metrics);
    switch (q.format) {
      case 'json':
        return { format: 'json', body: { sweepId: id, status: sweep.status, ...table, notes: tableNotes(table) } };
      case 'csv':
        return { format: 'csv', body: tableToCsv(table) };
      case 'markdown':
        return { format: 'markdown', body: tableToMarkdown(table, q.digits) + '\n' };
    }
  }

  /**
   * Cancels every unfinished run of a sweep in one call: one UPDATE cancels the queued runs and
   * flags the running ones, their jobs leave the queue at once (bulk removal), and the running
   * ones' workers are told to stop (between two training steps). When nothing is left running,
   * the sweep is settled here; otherwise its finalize job settles it when the last run stops.
   */
  async cancel(id: string) {
    const sweep = await this.require(id);
    if (isTerminalSweepStatus(sweep.status)) throw new ConflictException(`sweep ${id} has already finished (${sweep.status})`);
    const t0 = performance.now();
    const { cancelled, stopping } = await this.runs.requestCancelOfSweep(id);
    const removedJobs = await this.queue.removeRunJobs(cancelled);
    await Promise.all(stopping.map((r) => this.bus.requestCancel({ runId: r.id })));
    // One event per cancelled run would be thousands: the sweep's stream carries the counts, each run's own stream its status.
    const counts = await this.sweeps.countsOf(id);
    // Settled here when nothing is left running; either way the event carries the row's status and its change time.
    if (counts.queued === 0 && counts.running === 0) await this.sweeps.setStatus(id, sweepOutcome(counts));
    await this.bus.publish(sweepStatusEvent(await this.require(id), counts));
    await this.publishRunStatuses(
      id,
      cancelled.map((r) => r.id),
    );
    this.log.log(
      `sweep ${id}: cancelled ${cancelled.length} queued runs (${removedJobs} jobs removed) and stopping ${stopping.length} running in ${Math.round(performance.now() - t0)} ms`,
    );
    const after = await this.require(id);
    return { ...sweepView(after, counts), cancelled: cancelled.length, stopping: stopping.length, removedJobs };
  }

  /** Each cancelled run's status event (so that its own stream ends), from one read of the sweep's rows. */
  private async publishRunStatuses(sweepId: string, ids: readonly string[]): Promise<void> {
    const wanted = new Set(ids);
    const rows = (await this.runs.ofSweep(sweepId)).filter((r) => wanted.has(r.id));
    for (let i = 0; i < rows.length; i += 500) await Promise.all(rows.slice(i, i + 500).map((r) => this.bus.publish(runStatusEvent(r))));
  }

  events(id: string): Observable<MessageEvent> {
    return eventStream({
      subscribe: (fn) => this.bus.onSweepEvent(id, fn),
      snapshot: async () => {
        const sweep = await this.require(id);
        return [sweepStatusEvent(sweep, await this.sweeps.countsOf(id))];
      },
      isEnd: (e) => e.type === 'sweep.status' && isTerminalSweepStatus(e.status),
    });
  }
}
