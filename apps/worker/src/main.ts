import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { loadOrchestrationConfig } from '@ice/orchestration';
import { WorkerModule } from './worker.module';

/** One worker process: concurrency 1 per queue by default; run one per GPU or per core (see launcher.ts). */
async function bootstrap(): Promise<void> {
  const config = loadOrchestrationConfig('worker');
  const app = await NestFactory.createApplicationContext(WorkerModule.forRoot(config), { logger: ['error', 'warn', 'log'] });
  app.enableShutdownHooks();
  new Logger('worker').log(
    `ready (pid ${process.pid}${process.env.CUDA_VISIBLE_DEVICES !== undefined ? `, CUDA_VISIBLE_DEVICES=${process.env.CUDA_VISIBLE_DEVICES}` : ''})`,
  );
}

bootstrap().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
});
