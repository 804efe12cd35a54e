import { Body, Controller, Post } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { RunConfigSchema } from '@ice/experiments';
import { openApiSchema } from '../common/openapi';
import { RunsService } from '../runs/runs.service';

@ApiTags('experiments')
@Controller('experiments')
export class ExperimentsController {
  constructor(private readonly runs: RunsService) {}

  @Post()
  @ApiSecurity('api-key')
  @ApiOperation({ summary: 'Submit one fine-tuning run; returns the queued run' })
  @ApiBody({ schema: openApiSchema(RunConfigSchema) })
  submit(@Body() body: unknown) {
    return this.runs.submit(body);
  }
}
