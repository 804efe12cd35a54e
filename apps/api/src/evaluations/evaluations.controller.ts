import { Body, Controller, Get, HttpCode, Param, Post, Query, type StreamableFile } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiProduces, ApiQuery, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { EVALUATION_SPEC_PROTOCOLS } from '@ice/evaluation';
import { RUN_STATUSES } from '@ice/orchestration';
import { openApiSchema } from '../common/openapi';
import { parseId } from '../common/request-schemas';
import { EvaluationRequestSchema } from './evaluation.request';
import { EvaluationsService } from './evaluations.service';

@ApiTags('evaluations')
@Controller('evaluations')
export class EvaluationsController {
  constructor(private readonly evaluations: EvaluationsService) {}

  @Post()
  @ApiSecurity('api-key')
  @ApiOperation({
    summary:
      "Evaluate a finished run's checkpoint or a weights file with a protocol (accuracy, segmentation, jaccard, corloc, localization)",
  })
  @ApiBody({ schema: openApiSchema(EvaluationRequestSchema) })
  submit(@Body() body: unknown) {
    return this.evaluations.submit(body);
  }

  @Get()
  @ApiOperation({ summary: 'List evaluations, newest first, with their result rows' })
  @ApiQuery({ name: 'status', required: false, enum: RUN_STATUSES })
  @ApiQuery({ name: 'protocol', required: false, enum: EVALUATION_SPEC_PROTOCOLS })
  @ApiQuery({ name: 'runId', required: false })
  @ApiQuery({ name: 'limit', required: false, type: Number })
  @ApiQuery({ name: 'offset', required: false, type: Number })
  list(@Query() query: Record<string, unknown>) {
    return this.evaluations.list(query);
  }

  @Get(':id')
  @ApiOperation({ summary: 'An evaluation: status, progress, and its result (one row per method: metrics, images, images/s; conventions)' })
  get(@Param('id') id: string) {
    return this.evaluations.get(parseId(id));
  }

  @Post(':id/cancel')
  @HttpCode(202)
  @ApiSecurity('api-key')
  @ApiOperation({ summary: 'Stop a queued or running evaluation' })
  cancel(@Param('id') id: string) {
    return this.evaluations.cancel(parseId(id));
  }

  @Get(':id/maps/:file')
  @ApiProduces('image/png')
  @ApiOperation({ summary: 'A saved map overlay or the contact sheet (file names in result.savedMaps)' })
  map(@Param('id') id: string, @Param('file') file: string): Promise<StreamableFile> {
    return this.evaluations.mapFile(parseId(id), file);
  }
}
