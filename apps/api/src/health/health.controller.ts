import { Controller, Get, HttpStatus, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { JobQueue, OrchestrationDatabase } from '@ice/orchestration';
import { OpenRead } from '../common/api-key';

async function probe(fn: () => Promise<void>, timeoutMs = 2000): Promise<{ ok: boolean; latencyMs: number; error?: string }> {
  const t0 = performance.now();
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs).unref()),
    ]);
    return { ok: true, latencyMs: Math.round(performance.now() - t0) };
  } catch (e) {
    return { ok: false, latencyMs: Math.round(performance.now() - t0), error: (e as Error).message };
  }
}

@ApiTags('health')
@OpenRead()
@Controller('health')
export class HealthController {
  constructor(
    private readonly db: OrchestrationDatabase,
    private readonly queue: JobQueue,
  ) {}

  @Get()
  @ApiOperation({ summary: 'Redis and PostgreSQL reachability; 503 when either is down' })
  async health(@Res({ passthrough: true }) res: Response) {
    const [redis, postgres] = await Promise.all([probe(() => this.queue.ping()), probe(() => this.db.ping())]);
    const ok = redis.ok && postgres.ok;
    res.status(ok ? HttpStatus.OK : HttpStatus.SERVICE_UNAVAILABLE);
    return { status: ok ? 'ok' : 'degraded', redis, postgres };
  }
}
