import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  aptInstall,
  formatFacts,
  gatherFacts,
  parseFacts,
  parsePkgQuery,
  parseServiceState,
  pkgQuery,
  serviceState,
  systemctl,
} from '../../src/transport/os.js';

test('dpkg-query output is read as installed name -> version, skipping removed and unknown packages', () => {
  const out = 'nginx\tii \t1.22.1-9\nmariadb-server\trc \t1:10.11.6-0\nkeepalived\thi \t1:2.2.7-1\n';
  assert.deepEqual([...parsePkgQuery(out)], [
    ['nginx', '1.22.1-9'],
    ['keepalived', '1:2.2.7-1'],
  ]);
});

test('a package query treats "not found" (exit 1) as an answer and only exit 2 as a failure', () => {
  assert.match(pkgQuery(['nginx', 'haproxy']).text, /^dpkg-query -W -f='\$\{Package\}\\t\$\{db:Status-Abbrev\}\\t\$\{Version\}\\n' nginx haproxy; \[ \$\? -le 1 \]$/);
  assert.throws(() => pkgQuery([]), /at least one/);
});

test('apt-get install runs without questions, keeps config files, and refreshes an old index', () => {
  const t = aptInstall(['nginx', 'mariadb-server=1:10.11.6-0+deb12u1']).text;
  assert.match(t, /export DEBIAN_FRONTEND=noninteractive/);
  assert.match(t, /-mmin -1440/);
  assert.match(t, /apt-get install -y -q .*--force-confold nginx mariadb-server=1:10.11.6-0\+deb12u1 \|\| \{ apt-get update/);
});

test('systemctl commands quote the unit, and daemon-reload takes none', () => {
  assert.equal(systemctl('restart', 'nginx').text, 'systemctl restart nginx');
  assert.equal(systemctl('daemon-reload').text, 'systemctl daemon-reload');
  assert.equal(systemctl('stop', 'odd unit').text, "systemctl stop 'odd unit'");
  assert.throws(() => systemctl('restart'), /needs a unit/);
});

test('service states are read per unit; static units count as enabled and unknown units as absent', () => {
  const out = 'nginx\tactive\tenabled\tloaded\nk3s\tinactive\tdisabled\tloaded\nsystemd-udevd\tactive\tstatic\tloaded\nhaproxy\tinactive\t\tnot-found\n';
  const st = parseServiceState(out, ['nginx', 'k3s', 'systemd-udevd', 'haproxy', 'missing']);
  assert.deepEqual(st.get('nginx'), { active: true, enabled: true, exists: true });
  assert.deepEqual(st.get('k3s'), { active: false, enabled: false, exists: true });
  assert.deepEqual(st.get('systemd-udevd'), { active: true, enabled: true, exists: true });
  assert.deepEqual(st.get('haproxy'), { active: false, enabled: false, exists: false });
  assert.deepEqual(st.get('missing'), { active: false, enabled: false, exists: false });
  assert.match(serviceState(['nginx', 'k3s']).text, /^for u in nginx k3s; do/);
});

test('facts are parsed from key=value lines, with the architecture in Debian terms', () => {
  const f = parseFacts('os=ubuntu\nosVersion=24.04\narch=aarch64\ninit=systemd\nhostname=node-1\n');
  assert.deepEqual(f, { os: 'ubuntu', osVersion: '24.04', arch: 'arm64', init: 'systemd', hostname: 'node-1' });
  assert.deepEqual(parseFacts(formatFacts(f)), f);
  assert.equal(parseFacts('arch=riscv64\n').arch, 'riscv64');
});

test('the facts command runs in a plain POSIX shell and prints every key', async () => {
  const { execFileSync } = await import('node:child_process');
  const f = parseFacts(execFileSync('sh', ['-c', gatherFacts().text], { encoding: 'utf8' }));
  assert.ok(f.os && f.arch && f.hostname && f.init, JSON.stringify(f));
});
