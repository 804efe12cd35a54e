import { z } from 'zod';
import type { SchemaObject } from '@nestjs/swagger/dist/interfaces/open-api-spec.interface.js';

/** OpenAPI body/response schemas straight from the zod schemas that validate them. */
export function openApiSchema(schema: z.ZodType): SchemaObject {
  try {
    const { $schema: _ignored, ...json } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
    return json;
  } catch {
    return { type: 'object' };
  }
}
