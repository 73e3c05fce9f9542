/**
 * The local files a cluster file names are checked when it is loaded, before
 * any host is contacted: secret files, SSH keys, the k3s binary (run with
 * --version) and the MetalLB manifest's digest. Each case writes the seed
 * with one bad file into a temporary directory.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { loadClusterFile, type Diagnostic } from '../../src/spec/index.js';
import { homeWithKeys } from '../support/home.js';
import { standInK3s } from '../support/offline-example.js';

const SEED = readFileSync('examples/seed.yaml', 'utf8');
const PINNED = String(parseDocument(SEED).getIn(['k3s', 'version']));

/** The seed in a fresh directory (with a HOME holding its key), changed by `edit`; the load's diagnostics. */
function load(t: TestContext, edit: (dir: string, set: (path: (string | number)[], v: unknown) => void) => void): Diagnostic[] {
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-files-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const home = homeWithKeys(join(dir, 'home'));
  const doc = parseDocument(SEED);
  edit(dir, (path, v) => doc.setIn(path, doc.createNode(v)));
  writeFileSync(join(dir, 'cluster.yaml'), String(doc));
  return loadClusterFile(join(dir, 'cluster.yaml'), { HOME: home }).diagnostics;
}

function only(diags: Diagnostic[], path: string, message: RegExp): void {
  const errors = diags.filter((d) => d.severity === 'error');
  assert.equal(errors.length, 1, errors.map((d) => `${d.path}: ${d.message}`).join('\n') || 'no error');
  assert.equal(errors[0]!.path, path);
  assert.match(errors[0]!.message, message);
  assert.ok(errors[0]!.hint && errors[0]!.line !== undefined, 'with a fix and a line');
}

test('an empty secret file is refused at its path (it would become an empty password)', (t) => {
  const d = load(t, (dir, set) => {
    writeFileSync(join(dir, 'db-pass'), '\n');
    set(['datastore', 'password'], { file: 'db-pass' });
  });
  only(d, 'datastore.password.file', /secret file .*db-pass is empty/);
});

test('a secret file that is a directory is refused', (t) => {
  const d = load(t, (dir, set) => {
    mkdirSync(join(dir, 'secrets'));
    set(['datastore', 'password'], { file: 'secrets' });
  });
  only(d, 'datastore.password.file', /secret file .*secrets is a directory/);
});

test('a token file of two lines is refused: the value would carry a newline', (t) => {
  const d = load(t, (dir, set) => {
    writeFileSync(join(dir, 'token'), 'first\nsecond\n');
    set(['k3s', 'token'], { file: 'token' });
  });
  only(d, 'k3s.token.file', /holds more than one line/);
});

test('a missing key file is refused at ssh.keyFile', (t) => {
  only(load(t, (_dir, set) => set(['ssh', 'keyFile'], '~/.ssh/nope')), 'ssh.keyFile', /key file .*\/\.ssh\/nope does not exist/);
});

test('a host\'s own key file that is a directory is refused at that host', (t) => {
  const d = load(t, (dir, set) => {
    mkdirSync(join(dir, 'keys'));
    set(['hosts', 2, 'ssh'], { keyFile: join(dir, 'keys') });
  });
  only(d, 'hosts[2].ssh.keyFile', /key file .*keys is a directory/);
});

test('a public key given as the key file is refused, saying it is the public half', (t) => {
  const d = load(t, (dir, set) => {
    writeFileSync(join(dir, 'id.pub'), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA op@host\n');
    set(['ssh', 'keyFile'], join(dir, 'id.pub'));
  });
  only(d, 'ssh.keyFile', /is not a private key \(it is the public half\)/);
});

const local = (dir: string, set: (p: (string | number)[], v: unknown) => void, body: string | Buffer, mode = 0o755) => {
  writeFileSync(join(dir, 'k3s'), body, { mode });
  set(['k3s', 'install'], { source: 'local', path: 'k3s' });
};

test('a local k3s binary of another version than k3s.version is refused, naming both', (t) => {
  const d = load(t, (dir, set) => local(dir, set, standInK3s('v1.30.2+k3s1')));
  only(d, 'k3s.install.path', new RegExp(`is k3s v1\\.30\\.2\\+k3s1, but k3s\\.version is ${PINNED.replace(/[.+]/g, '\\$&')}`));
});

test('a local k3s binary of the pinned version is accepted; so is the lab\'s stand-in, which reports +labk3s instead of +k3sN', (t) => {
  assert.deepEqual(load(t, (dir, set) => local(dir, set, standInK3s(PINNED))).filter((x) => x.severity === 'error'), []);
  assert.deepEqual(load(t, (dir, set) => local(dir, set, standInK3s(PINNED.replace(/\+k3s\d+$/, '+labk3s')))).filter((x) => x.severity === 'error'), []);
});

test('a local "k3s binary" that is no program (an archive, install.sh without #!) is refused', (t) => {
  only(load(t, (dir, set) => local(dir, set, 'PK\u0003\u0004 zip bytes')), 'k3s.install.path', /is not a program \(no ELF header\)/);
});

test('a local k3s binary that is not executable is refused with the chmod to run', (t) => {
  only(load(t, (dir, set) => local(dir, set, standInK3s(PINNED), 0o644)), 'k3s.install.path', /is not executable, so its version cannot be read/);
});

test('a program that does not answer --version like k3s is refused', (t) => {
  only(load(t, (dir, set) => local(dir, set, '#!/bin/sh\necho hello\n')), 'k3s.install.path', /--version did not answer like k3s/);
});

test('a k3s binary for another architecture is taken without running it (it is for the hosts)', (t) => {
  // An ELF header whose e_machine is not this machine's: aarch64 (183) on x64, x86-64 (62) elsewhere.
  const elf = Buffer.alloc(64);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf.writeUInt16LE(process.arch === 'arm64' ? 62 : 183, 18);
  assert.deepEqual(load(t, (dir, set) => local(dir, set, elf)).filter((x) => x.severity === 'error'), []);
});

test('a local MetalLB manifest whose sha256 is not the one given is refused when loading, not at apply', (t) => {
  const d = load(t, (dir, set) => {
    writeFileSync(join(dir, 'metallb.yaml'), 'apiVersion: v1\nkind: Namespace\n');
    set(['metallb', 'manifest'], { file: 'metallb.yaml', sha256: createHash('sha256').update('something else').digest('hex') });
  });
  only(d, 'metallb.manifest.sha256', /metallb\.yaml has sha256 [0-9a-f]{64}, not [0-9a-f]{64}/);
});
