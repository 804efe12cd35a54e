import { NestFactory } from '@nestjs/core';
import { ExpressAdapter, type NestExpressApplication } from '@nestjs/platform-express';
import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { OrchestrationConfig } from '@ice/orchestration';
import { ApiModule } from './app.module';
import { API_KEY_HEADER } from './common/api-key';
import { mountResultsPage } from './common/results-page';

/** The configured application (not yet listening): used by main.ts and by the e2e tests. */
export async function createApiApp(
  config: OrchestrationConfig,
  opts: { logger?: false | ('error' | 'warn' | 'log')[] } = {},
): Promise<INestApplication> {
  const app = await NestFactory.create<NestExpressApplication>(ApiModule.forRoot(config), new ExpressAdapter(), {
    logger: opts.logger ?? ['error', 'warn', 'log'],
  });
  app.enableShutdownHooks();
  const doc = new DocumentBuilder()
    .setTitle('ICE orchestrator')
    .setDescription(
      'Fine-tuning runs, ablation sweeps and evaluations of ICE vision transformers. Mutating requests need an API key.\n\n' +
        'JSON Schemas of the request files, for editors (put the URL in a file’s `"$schema"`): ' +
        '[run config](/schemas/run-config.json), [sweep](/schemas/sweep.json), [evaluation](/schemas/evaluation.json); ' +
        'examples in the repository’s `configs/`.',
    )
    .setVersion(config.codeVersion)
    .addApiKey({ type: 'apiKey', in: 'header', name: API_KEY_HEADER }, 'api-key')
    .build();
  SwaggerModule.setup('docs', app, () => SwaggerModule.createDocument(app, doc));
  mountResultsPage(app);
  return app;
}
