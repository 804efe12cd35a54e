import { Module } from '@nestjs/common';
import { RunsModule } from '../runs/runs.module';
import { SweepsController } from './sweeps.controller';
import { SweepsService } from './sweeps.service';

/** /sweeps: grids of runs as one flow, their events and ablation tables. */
@Module({ imports: [RunsModule], controllers: [SweepsController], providers: [SweepsService] })
export class SweepsModule {}
