import { Injectable, Module, type DynamicModule, type OnModuleInit } from '@nestjs/common';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { BullBoardModule, InjectBullBoard, type BullBoardInstance } from '@bull-board/nestjs';
import { JobQueue } from '@ice/orchestration';
import { dashboardKeyMiddleware } from './api-key';

/** Shows JobQueue's own queue handles on the dashboard (their prefix is configured, not the default). */
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

/** /queues: the BullMQ dashboard, behind the API keys (header or Basic auth). */
@Module({})
export class QueueDashboardModule {
  static forRoot(apiKeys: readonly string[]): DynamicModule {
    return {
      module: QueueDashboardModule,
      imports: [BullBoardModule.forRoot({ route: '/queues', adapter: ExpressAdapter, middleware: dashboardKeyMiddleware(apiKeys) })],
      providers: [QueueDashboard],
    };
  }
}
