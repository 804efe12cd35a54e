import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import { expandSweep, parseRunConfig } from '@ice/experiments';
import { parseEvaluationRequest } from '../evaluations/evaluation.request';
import { PUBLISHED_SCHEMAS, SCHEMA_DIR } from './published-schemas';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const CONFIGS = path.join(ROOT, 'configs');

/** Each example file's kind, by its name: the validator the API and the CLI apply, and its JSON Schema. */
const KINDS = [
  { suffix: '.run.json', schema: 'run-config.json', parse: (raw: unknown) => parseRunConfig(raw) },
  { suffix: '.sweep.json', schema: 'sweep.json', parse: (raw: unknown) => expandSweep(raw) },
  {
    suffix: '.eval.json',
    schema: 'evaluation.json',
    parse: parseEvaluationRequest,
  },
];
/** The pre-training configs keep the names `npm run pretrain:digits` and the README use (`*-pretrain.json`). */
const kindOf = (file: string) => KINDS.find((k) => file.endsWith(k.suffix)) ?? (file.endsWith('-pretrain.json') ? KINDS[0] : undefined);

const read = (file: string): unknown => JSON.parse(fs.readFileSync(file, 'utf8'));

describe('published JSON Schemas', () => {
  it('are committed up to date (run `npm run schemas` after changing a zod schema)', () => {
    for (const [file, build] of Object.entries(PUBLISHED_SCHEMAS)) {
      expect({ file, schema: read(path.join(ROOT, SCHEMA_DIR, file)) }).toEqual({ file, schema: build() });
    }
  });

  it('list the model presets and default every field as the run contract does', () => {
    const run = PUBLISHED_SCHEMAS['run-config.json']() as { properties: Record<string, { properties: Record<string, unknown> }> };
    expect(run.properties.model.properties.preset).toMatchObject({
      default: 'digits-micro',
      enum: expect.arrayContaining(['deit_small_patch16_224']),
    });
    expect(run.properties.loss.properties.alpha).toMatchObject({ default: parseRunConfig({}).loss.alpha, type: 'number' });
  });
});

describe('configs/ examples', () => {
  const files = fs.readdirSync(CONFIGS).filter((f) => f.endsWith('.json'));
  const ajv = new Ajv2020({
    allErrors: true,
    strict: true,
    allowUnionTypes: true,
    formats: { uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i },
  });
  const validators = Object.fromEntries(Object.entries(PUBLISHED_SCHEMAS).map(([file, build]) => [file, ajv.compile(build())]));

  it('cover run, sweep and evaluation files, and every file there is one of them', () => {
    expect(files.filter((f) => !kindOf(f))).toEqual([]);
    for (const k of KINDS) expect(files.some((f) => f.endsWith(k.suffix))).toBe(true);
  });

  it.each(files)('%s is valid for ICE and for its JSON Schema, and names files that exist', (file) => {
    const raw = read(path.join(CONFIGS, file)) as Record<string, unknown>;
    const kind = kindOf(file)!;
    // Named by their kind's suffix, they name their schema (editors complete them); the pre-training configs may.
    if (file.endsWith(kind.suffix) || raw.$schema !== undefined) expect(raw.$schema).toBe(`./schema/${kind.schema}`);
    expect(() => kind.parse(raw)).not.toThrow();
    const validate = validators[kind.schema];
    expect(validate(raw) ? [] : validate.errors).toEqual([]);
    const text = JSON.stringify(raw);
    for (const m of text.matchAll(/"(assets\/[^"]+)"/g)) expect(fs.existsSync(path.join(ROOT, m[1]))).toBe(true);
  });

  it('have the ICE variants the README lists: official, paper head, ICE-f, pre-training, data-parallel', () => {
    const runs = files.filter((f) => kindOf(f) === KINDS[0]).map((f) => parseRunConfig(read(path.join(CONFIGS, f))));
    expect(runs.some((r) => r.mode === 'ice' && r.model.head === 'official' && r.worldSize === 1)).toBe(true);
    expect(runs.some((r) => r.model.head === 'paper' && r.loss.variant === 'paper')).toBe(true);
    expect(runs.some((r) => r.model.head === 'icef')).toBe(true);
    expect(runs.some((r) => r.mode === 'classify')).toBe(true);
    expect(runs.some((r) => r.worldSize > 1)).toBe(true);
  });

  it('a wrong field is refused by ICE and flagged by the JSON Schema alike', () => {
    const bad = { ...(read(path.join(CONFIGS, 'ice-official.run.json')) as object), loss: { alpha: 'half' }, stepz: 3 };
    expect(() => parseRunConfig(bad)).toThrow(/loss\.alpha.*|stepz/);
    const validate = validators['run-config.json'];
    expect(validate(bad)).toBe(false);
    expect(validate.errors?.map((e) => e.instancePath || e.params)).toEqual(expect.arrayContaining(['/loss/alpha']));
  });
});
