import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { loadOrchestrationConfig } from '@ice/orchestration';
import { createApiApp } from './app.factory';

async function bootstrap(): Promise<void> {
  const config = loadOrchestrationConfig('api');
  const app = await createApiApp(config);
  await app.listen(config.http.port, config.http.host);
  new Logger('api').log(
    `listening on http://${config.http.host}:${config.http.port} (results page at /ui, docs at /docs, queues at /queues); database: ` +
      `${config.databaseUrl ? 'DATABASE_URL' : `embedded at ${config.embeddedDb.dataDir}`}`,
  );
}

bootstrap().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
