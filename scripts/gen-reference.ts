/**
 * Writes the schema's generated files: schema/cluster.schema.json and
 * docs/cluster-file.md. Run after changing src/spec/schema.ts:
 *   node --import tsx scripts/gen-reference.ts          (write)
 *   node --import tsx scripts/gen-reference.ts --check  (exit 1 when stale)
 * test/unit/spec-reference.test.ts fails while they are out of date.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clusterReferenceMarkdown, clusterSchemaJsonText } from '../src/spec/reference.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export const GENERATED: readonly { path: string; render: () => string }[] = [
  { path: 'schema/cluster.schema.json', render: clusterSchemaJsonText },
  { path: 'docs/cluster-file.md', render: clusterReferenceMarkdown },
];

function current(path: string): string | undefined {
  try {
    return readFileSync(join(root, path), 'utf8');
  } catch {
    return undefined;
  }
}

function main(check: boolean): number {
  let stale = 0;
  for (const g of GENERATED) {
    const text = g.render();
    if (current(g.path) === text) continue;
    stale++;
    if (check) {
      process.stderr.write(`${g.path} is out of date: run node --import tsx scripts/gen-reference.ts\n`);
    } else {
      mkdirSync(dirname(join(root, g.path)), { recursive: true });
      writeFileSync(join(root, g.path), text);
      process.stdout.write(`wrote ${g.path}\n`);
    }
  }
  return check && stale ? 1 : 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = main(process.argv.includes('--check'));
}
