import { Module } from '@nestjs/common';
import { HealthController } from './health.controller';

/** GET /health: Redis and PostgreSQL reachability. */
@Module({ controllers: [HealthController] })
export class HealthModule {}
