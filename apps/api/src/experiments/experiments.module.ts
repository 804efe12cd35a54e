import { Module } from '@nestjs/common';
import { RunsModule } from '../runs/runs.module';
import { ExperimentsController } from './experiments.controller';

/** POST /experiments: one run, submitted through RunsService. */
@Module({ imports: [RunsModule], controllers: [ExperimentsController] })
export class ExperimentsModule {}
