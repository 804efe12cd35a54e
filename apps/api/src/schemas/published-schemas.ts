/**
 * The JSON Schemas the project publishes, by file name: committed under configs/schema/ (written
 * by `npm run schemas`, checked up to date by a test) and served at GET /schemas/<file>. Each is
 * generated from the zod schema that validates the same input, so they cannot drift apart.
 */
import { inputJsonSchema, runConfigJsonSchema, sweepJsonSchema, type JsonSchema } from '@ice/experiments';
import { EvaluationRequestSchema } from '../evaluations/evaluation.request';

function evaluationJsonSchema(): JsonSchema {
  const { $schema, ...body } = inputJsonSchema(EvaluationRequestSchema);
  return {
    $schema,
    title: 'ICE evaluation',
    description: 'A protocol scored on a data set for a finished run (runId) or a weights file: `ice submit eval FILE`, POST /evaluations.',
    ...body,
    properties: {
      $schema: { type: 'string', description: 'the JSON Schema of this file (for editors); ignored by ICE' },
      ...(body.properties as JsonSchema),
    },
  };
}

export const PUBLISHED_SCHEMAS: Readonly<Record<string, () => JsonSchema>> = {
  'run-config.json': runConfigJsonSchema,
  'sweep.json': sweepJsonSchema,
  'evaluation.json': evaluationJsonSchema,
};

/** Where the committed copies live, relative to the repository root. */
export const SCHEMA_DIR = 'configs/schema';
