import { Body, Controller, Get, HttpCode, Param, Post, Query, Res, Sse, type MessageEvent } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiProduces, ApiQuery, ApiSecurity, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import type { Observable } from 'rxjs';
import { SweepRequestSchema } from '@ice/experiments';
import { SWEEP_STATUSES } from '@ice/orchestration';
import { openApiSchema } from '../common/openapi';
import { parseId } from '../common/request-schemas';
import { SweepsService } from './sweeps.service';

@ApiTags('sweeps')
@Controller('sweeps')
export class SweepsController {
  constructor(private readonly sweeps: SweepsService) {}

  @Post()
  @ApiSecurity('api-key')
  @ApiOperation({ summary: 'Submit a grid (α and λ_class first) of runs, optionally repeated over seeds' })
  @ApiBody({ schema: openApiSchema(SweepRequestSchema) })
  submit(@Body() body: unknown) {
    return this.sweeps.submit(body);
  }

  @Get()
  @ApiOperation({ summary: 'List sweeps with run counts per status' })
  @ApiQuery({ name: 'status', required: false, enum: SWEEP_STATUSES })
  @ApiQuery({ name: 'name', required: false })
  @ApiQuery({ name: 'limit', required: false, type: Number })
  @ApiQuery({ name: 'offset', required: false, type: Number })
  list(@Query() query: Record<string, unknown>) {
    return this.sweeps.list(query);
  }

  @Get(':id')
  @ApiOperation({ summary: 'A sweep and its runs' })
  get(@Param('id') id: string) {
    return this.sweeps.get(parseId(id));
  }

  @Get(':id/table')
  @ApiOperation({ summary: 'Ablation table: rows = grid cells, columns = metrics, mean ± std over seeds' })
  @ApiQuery({
    name: 'rows',
    required: false,
    description:
      'comma-separated axes: run config paths (loss.alpha,loss.lambdaClass) or their aliases (alpha,lambda_class); default: the grid axes',
  })
  @ApiQuery({ name: 'metrics', required: false, description: 'comma-separated metric names (default: all)' })
  @ApiQuery({ name: 'format', required: false, enum: ['json', 'csv', 'markdown'] })
  @ApiProduces('application/json', 'text/csv', 'text/markdown')
  async table(@Param('id') id: string, @Query() query: Record<string, unknown>, @Res({ passthrough: true }) res: Response) {
    const t = await this.sweeps.table(parseId(id), query);
    switch (t.format) {
      case 'json':
        return t.body;
      case 'csv':
        res.type('text/csv');
        return t.body;
      case 'markdown':
        res.type('text/markdown');
        return t.body;
    }
  }

  @Post(':id/cancel')
  @HttpCode(202)
  @ApiSecurity('api-key')
  @ApiOperation({
    summary:
      'Cancel every unfinished run of the sweep in one call: queued runs at once (their jobs leave the queue), running ones stop between two steps',
  })
  cancel(@Param('id') id: string) {
    return this.sweeps.cancel(parseId(id));
  }

  @Sse(':id/events')
  @ApiOperation({ summary: 'Server-sent events: sweep.status and the status/progress of its runs until the sweep finishes' })
  events(@Param('id') id: string): Observable<MessageEvent> {
    return this.sweeps.events(parseId(id));
  }
}
