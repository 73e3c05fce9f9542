import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fingerprint, FileHostKeyStore, hostKeyId, keyFromBlob, MemoryHostKeyStore } from '../../src/transport/hostkeys.js';

const ED = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAII7ozkhuTW7cDQhPjOLV6k2oek1dAPHC8uhWZ+ynOn';
const ED2 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOiKpUwX2JQ4Ft2RZt0b6lYQpG4eS1ohVjgx7q3V4y1D';

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-hostkeys-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a host key id is [address]:port, even on port 22', () => {
  assert.equal(hostKeyId('192.168.0.156', 22), '[192.168.0.156]:22');
});

test('fingerprints match what ssh-keygen -l prints', (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'k.pub'), `${ED}\n`);
  const out = execFileSync('ssh-keygen', ['-lf', join(dir, 'k.pub')], { encoding: 'utf8' });
  assert.equal(fingerprint(ED), out.split(' ')[1]);
});

test('a raw key blob becomes "<type> <base64>"', () => {
  const blob = Buffer.from(ED.split(' ')[1] ?? '', 'base64');
  assert.equal(keyFromBlob(blob), ED);
});

test('the known-hosts file is written in OpenSSH format with mode 0600, and a new key replaces the old line', async (t) => {
  const path = join(tempDir(t), 'state', 'known_hosts');
  const store = new FileHostKeyStore(path);
  assert.equal(await store.lookup('[10.0.0.1]:22'), undefined);
  await Promise.all([store.record('[10.0.0.1]:22', ED), store.record('[10.0.0.2]:2222', ED2)]);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(readFileSync(path, 'utf8'), `[10.0.0.1]:22 ${ED}\n[10.0.0.2]:2222 ${ED2}\n`);
  await store.record('[10.0.0.1]:22', ED2);
  assert.equal(await new FileHostKeyStore(path).lookup('[10.0.0.1]:22'), ED2);
  assert.equal(readFileSync(path, 'utf8').split('\n').filter(Boolean).length, 2);
  assert.equal(store.location, path);
});

test('the known-hosts file keeps comments and lines it does not understand', async (t) => {
  const path = join(tempDir(t), 'known_hosts');
  writeFileSync(path, `# pinned by hand\n|1|hashed= ssh-rsa AAAA\n[10.0.0.1]:22 ${ED} comment\n`);
  const store = new FileHostKeyStore(path);
  assert.equal(await store.lookup('[10.0.0.1]:22'), ED);
  await store.record('[10.0.0.3]:22', ED2);
  assert.match(readFileSync(path, 'utf8'), /^# pinned by hand\n\|1\|hashed= ssh-rsa AAAA\n\[10.0.0.1\]:22 /);
});

test('ssh-keygen finds the keys in the file, so OpenSSH can use it as UserKnownHostsFile', async (t) => {
  const path = join(tempDir(t), 'known_hosts');
  await new FileHostKeyStore(path).record('[10.0.0.9]:2200', ED);
  const out = execFileSync('ssh-keygen', ['-F', '[10.0.0.9]:2200', '-f', path], { encoding: 'utf8' });
  assert.match(out, /\[10.0.0.9\]:2200 ssh-ed25519/);
});

test('the memory store keeps keys for the run', async () => {
  const s = new MemoryHostKeyStore();
  await s.record('[a]:22', ED);
  assert.equal(await s.lookup('[a]:22'), ED);
});
