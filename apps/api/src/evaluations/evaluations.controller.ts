import { Body, Controller, Get, Param, Post, Query } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiQuery, ApiSecurity, ApiTags } from '@nestjs/swagger';
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
  @ApiOperation({ summary: "Evaluate a finished run's checkpoint or a weights file" })
  @ApiBody({ schema: openApiSchema(EvaluationRequestSchema) })
  submit(@Body() body: unknown) {
    return this.evaluations.submit(body);
  }

  @Get()
  @ApiQuery({ name: 'limit', required: false, type: Number })
  @ApiQuery({ name: 'offset', required: false, type: Number })
  list(@Query() query: Record<string, unknown>) {
    return this.evaluations.list(query);
  }

  @Get(':id')
  get(@Param('id') id: string) {
    return this.evaluations.get(parseId(id));
  }
}
