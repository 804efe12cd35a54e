import { Injectable, Logger } from '@nestjs/common';
import {
  EventBus,
  HandlesJob,
  SweepRepository,
  sweepOutcome,
  sweepStatusEvent,
  type JobHandler,
  type JobPayload,
  type StatusCounts,
  type SweepStatus,
} from '@ice/orchestration';

// Shared with the API's bulk cancel, which settles a sweep whose runs are all cancelled at once.
export { sweepOutcome };

/** The flow's parent: runs when every run of the sweep has finished, and records the sweep's outcome. */
@Injectable()
@HandlesJob('sweep.finalize')
export class FinalizeSweepHandler implements JobHandler<'sweep.finalize'> {
  private readonly log = new Logger('sweep.finalize');

  constructor(
    private readonly sweeps: SweepRepository,
    private readonly bus: EventBus,
  ) {}

  async handle({ sweepId }: JobPayload<'sweep.finalize'>): Promise<{ status: SweepStatus | null; counts: StatusCounts }> {
    const counts = await this.sweeps.countsOf(sweepId);
    if (counts.queued + counts.running > 0) {
      // A flow the reconciler re-created for some runs only (after a Redis loss) while others still run: not the end yet.
      this.log.log(`sweep ${sweepId}: ${counts.queued + counts.running} run(s) not finished; the reconciler finalizes it once they are`);
      return { status: null, counts };
    }
    const status = sweepOutcome(counts);
    await this.sweeps.setStatus(sweepId, status);
    const sweep = await this.sweeps.get(sweepId);
    if (sweep) await this.bus.publish(sweepStatusEvent(sweep, counts));
    this.log.log(`sweep ${sweepId} ${status}: ${JSON.stringify(counts)}`);
    return { status, counts };
  }
}
