import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommandError, ConnectionError, FileCheckError } from '../../src/transport/host.js';
import { MemoryHost, ok } from '../../src/transport/memory.js';
import {
  aptInstall,
  gatherFacts,
  parseFacts,
  parsePkgQuery,
  parseServiceState,
  pkgQuery,
  serviceState,
  systemctl,
} from '../../src/transport/os.js';
import { sh } from '../../src/transport/quote.js';
import { MASK, Secret } from '../../src/util/secret.js';

test('the memory host answers the facts command from the facts it was given', async () => {
  const h = new MemoryHost({ name: 'lb1', facts: { os: 'ubuntu', osVersion: '24.04', arch: 'arm64' } });
  const f = parseFacts((await h.exec(gatherFacts())).stdout);
  assert.deepEqual(f, { os: 'ubuntu', osVersion: '24.04', arch: 'arm64', init: 'systemd', hostname: 'lb1' });
});

test('installing packages through apt-get makes the package query see them', async () => {
  const h = new MemoryHost({ name: 'db1', packages: { curl: '7.88' }, catalog: { 'mariadb-server': { version: '1:10.11.6' } } });
  let got = parsePkgQuery((await h.exec(pkgQuery(['curl', 'mariadb-server']))).stdout);
  assert.deepEqual([...got], [['curl', '7.88']]);
  await h.exec(aptInstall(['mariadb-server', 'nginx=1.22.1-9']));
  got = parsePkgQuery((await h.exec(pkgQuery(['curl', 'mariadb-server', 'nginx']))).stdout);
  assert.deepEqual(Object.fromEntries(got), { curl: '7.88', 'mariadb-server': '1:10.11.6', nginx: '1.22.1-9' });
});

test('a package that brings a daemon starts and enables it on install, as Debian does', async () => {
  const h = new MemoryHost({
    name: 'lb1',
    catalog: { nginx: { services: ['nginx'], files: { '/etc/nginx/nginx.conf': 'default\n' } } },
  });
  await h.exec(aptInstall(['nginx']));
  assert.deepEqual(parseServiceState((await h.exec(serviceState(['nginx']))).stdout, ['nginx']).get('nginx'), {
    active: true,
    enabled: true,
    exists: true,
  });
  assert.equal(h.text('/etc/nginx/nginx.conf'), 'default\n');
});

test('systemctl acts on the service model and counts restarts and reloads', async () => {
  const h = new MemoryHost({ name: 's1', services: { k3s: {}, nginx: { active: true, enabled: true } } });
  await h.exec(systemctl('enable', 'k3s'));
  await h.exec(systemctl('start', 'k3s'));
  await h.exec(systemctl('restart', 'k3s.service'));
  await h.exec(systemctl('reload', 'nginx'));
  await h.exec(systemctl('daemon-reload'));
  assert.deepEqual(h.services.get('k3s'), { active: true, enabled: true, restarts: 1, reloads: 0, starts: 1, stops: 0 });
  assert.equal(h.services.get('nginx')?.reloads, 1);
  assert.equal(h.daemonReloads, 1);
  assert.equal((await h.exec(systemctl('is-active', 'nginx'))).stdout, 'active\n');
  await h.exec(systemctl('stop', 'nginx'));
  const r = await h.exec(systemctl('is-active', 'nginx'), { allowFailure: true });
  assert.deepEqual([r.code, r.stdout], [3, 'inactive\n']);
  const st = parseServiceState((await h.exec(serviceState(['nginx', 'k3s', 'nope']))).stdout, ['nginx', 'k3s', 'nope']);
  assert.deepEqual(Object.fromEntries(st), {
    nginx: { active: false, enabled: true, exists: true },
    k3s: { active: true, enabled: true, exists: true },
    nope: { active: false, enabled: false, exists: false },
  });
});

test('restarting an unknown unit fails the way systemctl does', async () => {
  const h = new MemoryHost({ name: 's1' });
  await assert.rejects(h.exec(systemctl('restart', 'k3s')), (e: unknown) => {
    assert.ok(e instanceof CommandError);
    assert.equal(e.code, 5);
    assert.match(e.message, /s1: `systemctl restart k3s` exited with 5:\n {4}Failed to restart k3s.service: Unit k3s.service not found./);
    return true;
  });
});

test('every command is logged, so a test can assert that nothing was restarted', async () => {
  const h = new MemoryHost({ name: 's1', services: { k3s: { active: true } } });
  await h.exec(serviceState(['k3s']));
  await h.exec(systemctl('is-active', 'k3s'));
  assert.equal(h.log.length, 2);
  assert.ok(!h.log.some((c) => /systemctl (restart|reload|start|stop)/.test(c)));
});

test('registered handlers answer other commands and get the stdin; the latest registration wins', async () => {
  const h = new MemoryHost({ name: 'db1' });
  const seen: string[] = [];
  h.handle(/^mysql /, (_cmd, stdin) => {
    seen.push(stdin);
    return ok('first');
  });
  h.handle((t) => t.includes('SELECT 2'), () => ok('second'));
  assert.equal((await h.exec(sh`mysql -e ${'SELECT 1'}`, { stdin: new Secret('pw-123456') })).stdout, 'first');
  assert.equal((await h.exec(sh`mysql -e ${'SELECT 2'}`)).stdout, 'second');
  assert.deepEqual(seen, ['pw-123456']);
});

test('a command nothing answers fails with 127 and says how to answer it', async () => {
  const h = new MemoryHost({ name: 'x' });
  await assert.rejects(h.exec(sh`k3s --version`), /exited with 127:\n {4}memory host x: nothing answers this command; register a handler/);
});

test('an injected failure fails the next matching command once, with its stderr, secrets masked', async () => {
  const h = new MemoryHost({ name: 'lb1', services: { nginx: { active: true } } });
  const pw = new Secret('s3cret-pass');
  h.failNext(/restart nginx/, { code: 1, stderr: 'Job for nginx.service failed; password s3cret-pass' });
  await assert.rejects(h.exec(systemctl('restart', 'nginx'), { secrets: [pw] }), (e: unknown) => {
    assert.ok(e instanceof CommandError);
    assert.match(e.message, /lb1: `systemctl restart nginx` exited with 1:\n {4}Job for nginx.service failed; password \*{8}/);
    assert.ok(!e.message.includes('s3cret-pass'));
    return true;
  });
  assert.equal(h.services.get('nginx')?.restarts, 0);
  await h.exec(systemctl('restart', 'nginx'));
  assert.equal(h.services.get('nginx')?.restarts, 1);
  assert.equal(MASK.length, 8);
});

test('an atomic write sets content, mode and owner, and reports them through stat', async () => {
  const h = new MemoryHost({ name: 'lb1' });
  await h.writeFile('/etc/k8s-ha/token', 'abc', { mode: 0o600, owner: 'root', group: 'k3s' });
  const st = await h.stat('/etc/k8s-ha/token');
  assert.deepEqual(st, {
    mode: 0o600,
    owner: 'root',
    group: 'k3s',
    size: 3,
    sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  });
  assert.equal((await h.readFile('/etc/k8s-ha/token'))?.toString(), 'abc');
  assert.equal(await h.readFile('/nope'), null);
  assert.equal(await h.stat('/nope'), null);
  assert.deepEqual(h.writes, ['/etc/k8s-ha/token']);
});

test('an atomic write whose check fails leaves the old file and no temp file, and says what the checker said', async () => {
  const h = new MemoryHost({ name: 'lb1', files: { '/etc/nginx/nginx.conf': 'old\n' } });
  let checkedContent = '';
  h.handle(/^nginx -t -c /, (cmd) => {
    const tmp = cmd.text.replace(/^nginx -t -c /, '');
    checkedContent = h.text(tmp) ?? '';
    return { code: 1, stdout: '', stderr: 'nginx: [emerg] unknown directive "bogus" in /etc/nginx/.nginx.conf.tmp:1' };
  });
  await assert.rejects(
    h.writeFile('/etc/nginx/nginx.conf', 'bogus;\n', { check: (tmp) => sh`nginx -t -c ${tmp}` }),
    (e: unknown) => {
      assert.ok(e instanceof FileCheckError);
      assert.match(e.message, /^lb1: writing \/etc\/nginx\/nginx.conf: the check `nginx -t -c \S+` rejected the new content \(exit 1\); the old file was left in place:\n {4}nginx: \[emerg\] unknown directive "bogus"/);
      return true;
    },
  );
  assert.equal(checkedContent, 'bogus;\n');
  assert.equal(h.text('/etc/nginx/nginx.conf'), 'old\n');
  assert.deepEqual([...h.files.keys()], ['/etc/nginx/nginx.conf']);
  assert.deepEqual(h.writes, []);
});

test('a passing check lets the new content replace the old', async () => {
  const h = new MemoryHost({ name: 'lb1', files: { '/etc/nginx/nginx.conf': 'old\n' } });
  h.handle(/^nginx -t/, () => ok());
  await h.writeFile('/etc/nginx/nginx.conf', 'new\n', { check: (tmp) => sh`nginx -t -c ${tmp}` });
  assert.equal(h.text('/etc/nginx/nginx.conf'), 'new\n');
  assert.deepEqual([...h.files.keys()], ['/etc/nginx/nginx.conf']);
});

test('a dropped connection fails every later call until reconnect', async () => {
  const h = new MemoryHost({ name: 's2', services: { k3s: {} } });
  h.disconnectAfter(2);
  await h.exec(systemctl('start', 'k3s'));
  await h.writeFile('/etc/a', 'x');
  await assert.rejects(h.exec(systemctl('restart', 'k3s')), (e: unknown) => {
    assert.ok(e instanceof ConnectionError);
    assert.match(e.message, /^s2 \(10.0.0.1:22\): running `systemctl restart k3s`: the connection was lost/);
    return true;
  });
  await assert.rejects(h.readFile('/etc/a'), ConnectionError);
  await assert.rejects(h.stat('/etc/a'), ConnectionError);
  assert.equal(h.connected, false);
  assert.equal(h.services.get('k3s')?.restarts, 0);
  h.reconnect();
  await h.exec(systemctl('restart', 'k3s'));
  assert.equal(h.services.get('k3s')?.restarts, 1);
});

test('removing a file is logged as a write, and removing a missing file is not an error', async () => {
  const h = new MemoryHost({ name: 'a', files: { '/etc/x': '1' } });
  await h.removeFile('/etc/x');
  await h.removeFile('/etc/x');
  assert.equal(h.files.size, 0);
  assert.deepEqual(h.writes, ['/etc/x']);
});
