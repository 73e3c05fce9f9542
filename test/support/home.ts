import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A HOME holding the key files the examples and fixtures name
 * (~/.ssh/id_ed25519, ~/.ssh/lab): `validate` checks that a key file exists
 * and is a private key. Their bodies are not keys; nothing connects with them.
 */
export const STAND_IN_KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key: a stand-in for the tests\n-----END OPENSSH PRIVATE KEY-----\n';

export function homeWithKeys(dir?: string, names: readonly string[] = ['id_ed25519', 'lab']): string {
  const home = dir ?? mkdtempSync(join(tmpdir(), 'k8s-ha-home-'));
  mkdirSync(join(home, '.ssh'), { recursive: true, mode: 0o700 });
  for (const n of names) writeFileSync(join(home, '.ssh', n), STAND_IN_KEY, { mode: 0o600 });
  if (dir === undefined) process.on('exit', () => rmSync(home, { recursive: true, force: true }));
  return home;
}
