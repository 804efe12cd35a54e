/**
 * `npm run schemas`: writes the published JSON Schemas (run config, sweep, evaluation) to
 * configs/schema/, generated from the zod schemas that validate them, formatted by the project's
 * Prettier settings. A test fails when the committed files are out of date.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as prettier from 'prettier';
import { PUBLISHED_SCHEMAS, SCHEMA_DIR } from '../src/schemas/published-schemas';

const ROOT = path.resolve(__dirname, '..', '..', '..');

async function main(): Promise<void> {
  const dir = path.join(ROOT, SCHEMA_DIR);
  fs.mkdirSync(dir, { recursive: true });
  for (const [file, build] of Object.entries(PUBLISHED_SCHEMAS)) {
    const target = path.join(dir, file);
    const options = await prettier.resolveConfig(target);
    const text = await prettier.format(JSON.stringify(build()), { ...options, filepath: target });
    const same = fs.existsSync(target) && fs.readFileSync(target, 'utf8') === text;
    if (!same) fs.writeFileSync(target, text);
    console.log(`${path.relative(ROOT, target)}${same ? ' (unchanged)' : ' written'}`);
  }
}

void main();
