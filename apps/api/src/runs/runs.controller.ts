import { Controller, Get, HttpCode, Param, Post, Query, Sse, type MessageEvent } from '@nestjs/common';
import { ApiOperation, ApiQuery, ApiSecurity, ApiTags } from '@nestjs/swagger';
import type { Observable } from 'rxjs';
import { RUN_STATUSES } from '@ice/orchestration';
import { parseId } from '../common/request-schemas';
import { RunsService } from './runs.service';

@ApiTags('runs')
@Controller('runs')
export class RunsController {
  constructor(private readonly runs: RunsService) {}

  @Get()
  @ApiOperation({ summary: 'List runs, newest first' })
  @ApiQuery({ name: 'status', required: false, enum: RUN_STATUSES })
  @ApiQuery({ name: 'sweepId', required: false })
  @ApiQuery({ name: 'limit', required: false, type: Number })
  @ApiQuery({ name: 'offset', required: false, type: Number })
  list(@Query() query: Record<string, unknown>) {
    return this.runs.list(query);
  }

  @Get(':id')
  @ApiOperation({ summary: 'A run: status, progress (step, loss, throughput, ETA), final metrics, checkpoints' })
  get(@Param('id') id: string) {
    return this.runs.get(parseId(id));
  }

  @Get(':id/metrics')
  @ApiOperation({ summary: "A run's metric series (loss, lr, throughput… per step)" })
  @ApiQuery({ name: 'names', required: false, description: 'comma-separated metric names' })
  metrics(@Param('id') id: string, @Query() query: Record<string, unknown>) {
    return this.runs.series(parseId(id), query);
  }

  @Sse(':id/events')
  @ApiOperation({ summary: 'Server-sent events: run.status and run.progress until the run finishes' })
  events(@Param('id') id: string): Observable<MessageEvent> {
    return this.runs.events(parseId(id));
  }

  @Post(':id/cancel')
  @HttpCode(202)
  @ApiSecurity('api-key')
  @ApiOperation({ summary: 'Stop a queued or running run' })
  cancel(@Param('id') id: string) {
    return this.runs.cancel(parseId(id));
  }
}
