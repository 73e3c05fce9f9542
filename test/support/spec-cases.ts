import assert from 'node:assert/strict';
import { parseDocument } from 'yaml';
import type { Diagnostic, Severity } from '../../src/spec/index.js';

/**
 * Invalid cluster files as edits of a valid one, and the check that every
 * error a case expects is reported (at exactly those paths), with a fix and
 * a position. Shared by the spec-invalid tests.
 */
type Path = (string | number)[];
export type SeedEdit = { set: Path; to: unknown } | { del: Path } | { add: Path; item: unknown } | { text: [string, string] };
export type Expect = [Severity, string, RegExp];

export function seedVariant(seedText: string, edits: SeedEdit[]): string {
  let text = seedText;
  for (const e of edits.filter((x): x is Extract<SeedEdit, { text: [string, string] }> => 'text' in x)) {
    assert.ok(text.includes(e.text[0]), `seed contains ${e.text[0]}`);
    text = text.replace(e.text[0], e.text[1]);
  }
  const doc = parseDocument(text);
  for (const e of edits) {
    if ('set' in e) doc.setIn(e.set, doc.createNode(e.to));
    else if ('del' in e) doc.deleteIn(e.del);
    else if ('add' in e) doc.addIn(e.add, doc.createNode(e.item));
  }
  return String(doc);
}

export function checkDiagnostics(diags: Diagnostic[], expect: Expect[]): void {
  const errorPaths = [...new Set(diags.filter((d) => d.severity === 'error').map((d) => d.path))].sort();
  const expectedErrorPaths = [...new Set(expect.filter((e) => e[0] === 'error').map((e) => e[1]))].sort();
  assert.deepEqual(errorPaths, expectedErrorPaths, `errors:\n${diags.map((d) => `${d.severity} ${d.path}: ${d.message}`).join('\n')}`);
  for (const [severity, path, message] of expect) {
    const found = diags.some((d) => d.severity === severity && d.path === path && message.test(d.message));
    assert.ok(found, `expected ${severity} at ${path} matching ${message}; got:\n${diags.map((d) => `${d.severity} ${d.path}: ${d.message}`).join('\n')}`);
  }
  for (const d of diags) {
    assert.ok(d.hint && d.hint.length > 5, `diagnostic at ${d.path} has a fix hint`);
    assert.ok(d.line !== undefined && d.column !== undefined, `diagnostic at ${d.path} has a position`);
  }
}
