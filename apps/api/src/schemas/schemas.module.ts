import { Module } from '@nestjs/common';
import { SchemasController } from './schemas.controller';

/** GET /schemas/<file>: the JSON Schemas of run configs, sweeps and evaluations (also committed under configs/schema/). */
@Module({ controllers: [SchemasController] })
export class SchemasModule {}
