import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { clusterJsonSchema, clusterReferenceMarkdown, clusterSchemaJsonText } from '../../src/spec/index.js';

test('schema/cluster.schema.json is up to date with the schema (run scripts/gen-reference.ts)', () => {
  assert.equal(readFileSync('schema/cluster.schema.json', 'utf8'), clusterSchemaJsonText());
});

test('docs/cluster-file.md is up to date with the schema (run scripts/gen-reference.ts)', () => {
  assert.equal(readFileSync('docs/cluster-file.md', 'utf8'), clusterReferenceMarkdown());
});

type Node = Record<string, unknown>;

/** Every property schema in the published JSON Schema, with its dotted path. */
function properties(node: Node, path = ''): [string, Node][] {
  const out: [string, Node][] = [];
  const props = node.properties as Record<string, Node> | undefined;
  for (const [k, v] of Object.entries(props ?? {})) {
    const p = path ? `${path}.${k}` : k;
    out.push([p, v], ...properties(v, p));
    const items = v.items as Node | undefined;
    if (items) out.push(...properties(items, `${p}[]`));
    for (const variant of (v.anyOf as Node[] | undefined) ?? []) out.push(...properties(variant, p));
  }
  return out;
}

test('every field of the published schema has a description', () => {
  const missing = properties(clusterJsonSchema())
    .filter(([, s]) => typeof s.description !== 'string' || (s.description as string).length < 5)
    .map(([p]) => p);
  assert.deepEqual(missing, []);
});

test('fields with a default are not required of the file\'s author', () => {
  const schema = clusterJsonSchema();
  assert.deepEqual(schema.required, ['apiVersion', 'name', 'hosts']);
  const lb = (schema.properties as Record<string, Node>).loadBalancer!;
  assert.equal(lb.required, undefined);
  assert.deepEqual(lb.default, {});
});

test('the published schema carries the documented defaults and no private keywords', () => {
  const text = clusterSchemaJsonText();
  assert.ok(!text.includes('errorMessage') && !text.includes('errorHint'));
  const byPath = new Map(properties(clusterJsonSchema()));
  assert.equal(byPath.get('loadBalancer.port')?.default, 6443);
  assert.equal(byPath.get('loadBalancer.timeouts.connect')?.default, '1s');
  assert.equal(byPath.get('loadBalancer.timeouts.idle')?.default, '1h');
  assert.equal(byPath.get('loadBalancer.healthCheck.interval')?.default, '500ms');
  assert.equal(byPath.get('datastore.port')?.default, 3306);
  assert.equal(byPath.get('datastore.password')?.default, 'generate');
  assert.deepEqual(byPath.get('k3s.disable')?.default, ['servicelb', 'traefik']);
  assert.equal(byPath.get('k3s.clusterCidr')?.default, '10.42.0.0/16');
  assert.equal(byPath.get('metallb.version')?.default, 'v0.14.9');
});

test('the reference documents every section with its fields', () => {
  const md = clusterReferenceMarkdown();
  for (const heading of ['## Top level', '## ssh', '## hosts[]', '## loadBalancer', '## datastore', '## k3s', '## metallb']) {
    assert.ok(md.includes(`\n${heading}\n`), heading);
  }
  assert.match(md, /\| `loadBalancer\.virtualIP\.routerId` \| integer 1–255 \| `51` \|/);
  assert.match(md, /\| `hosts\[\]\.address` \| string \| \*required\* \|/);
});
