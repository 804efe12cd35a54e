/**
 * JSON Schemas of the files people write — a run config and a sweep — generated from the zod
 * schemas that validate them (zod 4's toJSONSchema), so that an editor completes and checks the
 * same fields, enums, ranges and defaults the API and `ice train` accept. Written to
 * configs/schema/ by `npm run schemas` and served by the API under /schemas/.
 */
import { z } from 'zod';
import { VIT_PRESETS } from '@ice/core';
import { RunConfigSchema } from './run.contract';
import { SweepRequestSchema } from './sweep';

export type JsonSchema = Record<string, unknown>;

/** What `"$schema"` in a config file may hold: it names the schema for editors and is dropped on parsing. */
const SCHEMA_REF: JsonSchema = { type: 'string', description: 'the JSON Schema of this file (for editors); ignored by ICE' };

/** The input shape (defaults make fields optional), with what zod cannot express as JSON (refinements) filled in. */
export function inputJsonSchema(schema: z.ZodType): JsonSchema {
  return z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });
}

/** The schema of a property (`schema.properties[key]`). */
function property(schema: JsonSchema, key: string): JsonSchema {
  return (schema.properties as Record<string, JsonSchema>)[key];
}

/** The run config (RunConfig): one fine-tuning or pre-training run. */
export function runConfigJsonSchema(): JsonSchema {
  const { $schema, ...body } = inputJsonSchema(RunConfigSchema);
  // The preset is checked by a refinement (isVitPreset), which JSON Schema cannot carry: list the names.
  const model = property(body, 'model');
  (model.properties as Record<string, JsonSchema>).preset = { ...property(model, 'preset'), enum: Object.keys(VIT_PRESETS) };
  return {
    $schema,
    title: 'ICE run config',
    description:
      'One ICE fine-tuning or pre-training run: `ice train --config FILE`, `ice submit run FILE`, POST /experiments. ' +
      'Every field is optional; the defaults are the released code’s recipe on the built-in digits benchmark.',
    ...body,
    properties: { $schema: SCHEMA_REF, ...(body.properties as JsonSchema) },
  };
}

/** A sweep: a base run config, a grid of values per axis and the seeds. */
export function sweepJsonSchema(): JsonSchema {
  const { $schema, ...body } = inputJsonSchema(SweepRequestSchema);
  const { $schema: _run, title: _title, description: _description, ...run } = runConfigJsonSchema();
  const props = body.properties as Record<string, JsonSchema>;
  const { $schema: _ref, ...runProps } = run.properties as Record<string, JsonSchema>;
  return {
    $schema,
    title: 'ICE sweep',
    description:
      'A grid of ICE runs (every combination of the grid’s values, once per seed): `ice sweep --config FILE`, `ice submit sweep FILE`, POST /sweeps.',
    ...body,
    properties: {
      $schema: SCHEMA_REF,
      ...props,
      base: { ...run, properties: runProps, description: 'the run config every cell starts from' },
      grid: {
        ...props.grid,
        description:
          'axis → values. An axis is a run config field by its dotted path (e.g. loss.alpha, loss.lambdaClass, optimizer.lr) ' +
          'or a short alias of one (alpha, lambda_class, lr, …)',
      },
    },
  };
}
