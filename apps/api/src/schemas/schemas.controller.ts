import { Controller, Get, NotFoundException, Param, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { PUBLISHED_SCHEMAS } from './published-schemas';

@ApiTags('schemas')
@Controller('schemas')
export class SchemasController {
  @Get()
  @ApiOperation({ summary: 'The published JSON Schemas (run config, sweep, evaluation), by file name' })
  list() {
    return { schemas: Object.keys(PUBLISHED_SCHEMAS).map((file) => ({ file, url: `/schemas/${file}` })) };
  }

  @Get(':file')
  @ApiOperation({
    summary: 'A JSON Schema for editors: run-config.json, sweep.json or evaluation.json (put its URL in a file’s "$schema")',
  })
  get(@Param('file') file: string, @Res({ passthrough: true }) res: Response) {
    if (!Object.hasOwn(PUBLISHED_SCHEMAS, file))
      throw new NotFoundException(`no schema ${file}; published: ${Object.keys(PUBLISHED_SCHEMAS).join(', ')}`);
    res.type('application/schema+json');
    return PUBLISHED_SCHEMAS[file]();
  }
}
