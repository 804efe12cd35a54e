import { Injectable, NotFoundException, type MessageEvent } from '@nestjs/common';
import type { Observable } from 'rxjs';
import { IceError } from '@ice/core';
import { AXIS_ALIASES, buildAblationTable, tableNotes, tableToCsv, tableToMarkdown, type RunOutcome } from '@ice/experiments';
import {
  EventBus,
  isTerminalSweepStatus,
  JobQueue,
  RunRepository,
  SweepRepository,
  sweepStatusEvent,
  type RunEntity,
  type SweepEntity,
} from '@ice/orchestration';
import { eventStream } from '../common/sse';
import { parseRequest, SweepListQuery, TableQuery } from '../common/request-schemas';
import { SubmissionRules } from '../runs/submission.rules';
import { runView, sweepView } from '../runs/run.views';

const canonical = (name: string): string => AXIS_ALIASES[name] ?? name;

function valueAt(obj: unknown, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj);
}

/** A table row's value for a run: its grid cell's value on that axis, else the value in its config (e.g. seed). */
function rowValue(run: RunEntity, axes: readonly string[], row: string): number | string | boolean | undefined {
  const axis = axes.find((a) => canonical(a) === canonical(row));
  if (axis !== undefined) return run.cell[axis];
  const v = valueAt(run.config.run, canonical(row));
  return typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean' ? v : undefined;
}

export type TableResponse = { format: 'json'; body: unknown } | { format: 'csv' | 'markdown'; body: string };

@Injectable()
export class SweepsService {
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
    const rows = q.rows ?? sweep.axes;
    for (const r of rows) {
      if (runs.length && runs.every((run) => rowValue(run, sweep.axes, r) === undefined)) {
        throw new IceError(
          'INPUT_INVALID',
          `rows: ${r} is neither a grid axis of this sweep (${sweep.axes.join(', ')}) nor a run config field`,
        );
      }
    }
    const outcomes: RunOutcome[] = runs.map((run) => ({
      values: Object.fromEntries(rows.map((r) => [r, rowValue(run, sweep.axes, r) ?? '–'])),
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
