import { Injectable, type OnModuleInit } from '@nestjs/common';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { InjectBullBoard, type BullBoardInstance } from '@bull-board/nestjs';
import { JobQueue } from '@ice/orchestration';

/** Shows the JobQueue's own queue handles on the dashboard (their prefix is configured, not the default). */
@Injectable()
export class QueueDashboard implements OnModuleInit {
  constructor(
    @InjectBullBoard() private readonly board: BullBoardInstance,
    private readonly queue: JobQueue,
  ) {}

  onModuleInit(): void {
    for (const q of Object.values(this.queue.queues)) this.board.addQueue(new BullMQAdapter(q));
  }
}
