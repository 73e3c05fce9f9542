import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { generateSecret, StateFile } from '../../src/cluster/state.js';

function dir(t: { after: (f: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'k8s-ha-state-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('the state file sits beside the cluster file', () => {
  assert.equal(StateFile.pathFor('/a/b/seed.yaml'), '/a/b/seed.state.yaml');
});

test('a generated secret is kept once an apply is about to use it: the same value comes back after saving and loading again', async (t) => {
  const p = join(dir(t), 'c.state.yaml');
  const s1 = await StateFile.load(p, 'c');
  const tok = s1.secret('k3sToken');
  assert.ok(s1.secret('k3sToken').equals(tok), 'the same value for the whole run');
  await s1.save();
  assert.ok(!(await StateFile.load(p, 'c')).has('k3sToken'), 'saved before keepGenerated');
  s1.keepGenerated();
  await s1.save();
  assert.equal(statSync(p).mode & 0o777, 0o600);
  const s2 = await StateFile.load(p, 'c');
  assert.ok(s2.secret('k3sToken').equals(tok));
});

test('many concurrent saves (hosts pinning keys at once) all land, none fails', async (t) => {
  const p = join(dir(t), 'c.state.yaml');
  const s = await StateFile.load(p, 'c');
  await Promise.all(Array.from({ length: 20 }, (_, i) => (s.setHostKey(`[10.0.0.${i}]:22`, `ssh-ed25519 KEY${i}`), s.save())));
  const again = await StateFile.load(p, 'c');
  for (let i = 0; i < 20; i++) assert.equal(again.hostKey(`[10.0.0.${i}]:22`), `ssh-ed25519 KEY${i}`);
});

test('a state file readable by others is tightened to 0600 on load', async (t) => {
  const p = join(dir(t), 'c.state.yaml');
  writeFileSync(p, 'version: 1\ncluster: c\nsecrets: {}\nhostKeys: {}\n');
  chmodSync(p, 0o644);
  await StateFile.load(p, 'c');
  assert.equal(statSync(p).mode & 0o777, 0o600);
});

test("another cluster's state file is refused with what to do", async (t) => {
  const p = join(dir(t), 'c.state.yaml');
  writeFileSync(p, 'version: 1\ncluster: other\nsecrets: {}\nhostKeys: {}\n');
  await assert.rejects(StateFile.load(p, 'c'), /belongs to cluster "other", not "c"/);
});

test('generated secrets are letters and digits of the expected length', () => {
  assert.match(generateSecret('token'), /^[A-Za-z0-9]{48}$/);
  assert.match(generateSecret('password'), /^[A-Za-z0-9]{32}$/);
  assert.notEqual(generateSecret('token'), generateSecret('token'));
});
