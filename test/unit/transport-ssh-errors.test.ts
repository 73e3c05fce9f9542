import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConnectionError } from '../../src/transport/host.js';
import { MemoryHostKeyStore } from '../../src/transport/hostkeys.js';
import { connectSsh } from '../../src/transport/ssh.js';

// These need no SSH server: they check what a user is told when connecting fails.

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-ssh-err-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function key(dir: string): string {
  const path = join(dir, 'id_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path]);
  return path;
}

async function listen(onConnection: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(onConnection);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  return { server, port: typeof addr === 'object' && addr ? addr.port : 0 };
}

test('a port nobody listens on is reported as refused, asking whether sshd runs there', async (t) => {
  const { server, port } = await listen(() => undefined);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const keyFile = key(tempDir(t));
  await assert.rejects(
    connectSsh({ name: 'db1', address: '127.0.0.1', port, keyFile }, { hostKeys: new MemoryHostKeyStore(), env: {} }),
    (e: unknown) => {
      assert.ok(e instanceof ConnectionError);
      assert.equal(e.message, `db1 (127.0.0.1:${port}): connecting: connection refused\n  hint: is sshd running on 127.0.0.1 and listening on port ${port}?`);
      return true;
    },
  );
});

test('a server that never answers the handshake times out after connectTimeoutMs, with a reachability hint', async (t) => {
  const sockets: Socket[] = [];
  const { server, port } = await listen((s) => sockets.push(s));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const keyFile = key(tempDir(t));
  const t0 = Date.now();
  await assert.rejects(
    connectSsh({ name: 'db1', address: '127.0.0.1', port, keyFile }, { hostKeys: new MemoryHostKeyStore(), connectTimeoutMs: 400, env: {} }),
    /db1 \(127.0.0.1:\d+\): connecting: timed out\n  hint: is 127.0.0.1 up and reachable from here, does a firewall let port \d+ through, and is sshd running\?/,
  );
  assert.ok(Date.now() - t0 < 3000);
});

test('with no key file, no agent and no ~/.ssh key, connecting says how to give one', async (t) => {
  const home = tempDir(t);
  await assert.rejects(
    connectSsh({ name: 'a1', address: '127.0.0.1', port: 1 }, { hostKeys: new MemoryHostKeyStore(), env: { HOME: home } }),
    /a1 \(127.0.0.1:1\): connecting: no SSH key to log in with\n  hint: give the host a keyFile, or load a key into ssh-agent/,
  );
});

test('agent authentication without SSH_AUTH_SOCK says to start an agent', async () => {
  await assert.rejects(
    connectSsh({ name: 'a1', address: '127.0.0.1', port: 1, agent: true }, { hostKeys: new MemoryHostKeyStore(), env: {} }),
    /connecting: agent authentication asked for, but SSH_AUTH_SOCK is not set\n  hint: start ssh-agent/,
  );
});

test('a passphrase-protected key file is refused before connecting, pointing to ssh-agent', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'locked');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'pass phrase', '-f', path]);
  await assert.rejects(
    connectSsh({ name: 'a1', address: '127.0.0.1', port: 1, keyFile: path }, { hostKeys: new MemoryHostKeyStore(), env: {} }),
    /connecting: cannot use key file .*locked: .*\n  hint: the key is protected by a passphrase: load it into ssh-agent/,
  );
});

test('~ in a key file path is the home directory', async (t) => {
  const home = tempDir(t);
  await assert.rejects(
    connectSsh({ name: 'a1', address: '127.0.0.1', port: 1, keyFile: '~/.ssh/nope' }, { hostKeys: new MemoryHostKeyStore(), env: { HOME: home } }),
    new RegExp(`cannot read key file ${home}/.ssh/nope: ENOENT`),
  );
});
