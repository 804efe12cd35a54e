import { Injectable, Logger } from '@nestjs/common';
import {
  EventBus,
  HandlesJob,
  OrchestrationStore,
  type JobHandler,
  type JobPayload,
  type StatusCounts,
  type SweepStatus,
} from '@ice/orchestration';

export function sweepOutcome(c: StatusCounts): SweepStatus {
  const total = c.queued + c.running + c.succeeded + c.failed + c.cancelled;
  if (c.succeeded === total) return 'succeeded';
  if (c.cancelled === total) return 'cancelled';
  if (c.succeeded === 0) return 'failed';
  return 'partial';
}

/** The flow's parent: runs when every run of the sweep has finished, and records the sweep's outcome. */
@Injectable()
@HandlesJob('sweep.finalize')
export class FinalizeSweepHandler implements JobHandler<'sweep.finalize'> {
  private readonly log = new Logger('sweep.finalize');

  constructor(
    private readonly store: OrchestrationStore,
    private readonly bus: EventBus,
  ) {}

  async handle({ sweepId }: JobPayload<'sweep.finalize'>): Promise<{ status: SweepStatus; counts: StatusCounts }> {
    const counts = (await this.store.sweepCounts([sweepId])).get(sweepId)!;
    const status = sweepOutcome(counts);
    await this.store.setSweepStatus(sweepId, status);
    const sweep = await this.store.getSweep(sweepId);
    await this.bus.publish({ type: 'sweep.status', sweepId, status: sweep?.status ?? status, counts, at: new Date().toISOString() });
    this.log.log(`sweep ${sweepId} ${status}: ${JSON.stringify(counts)}`);
    return { status, counts };
  }
}
