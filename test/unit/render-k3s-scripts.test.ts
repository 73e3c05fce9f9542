import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { KILLALL_PATH, renderKillall, renderUninstall, uninstallPath } from '../../src/render/k3s-scripts.js';

const shell = (script: string) => spawnSync('sh', ['-n'], { input: script, encoding: 'utf8' });

test('the killall and uninstall scripts are valid POSIX sh (dash -n) and the same on every render', () => {
  for (const s of [renderKillall(), renderUninstall('server'), renderUninstall('agent')]) {
    const r = shell(s);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(s.startsWith('#!/bin/sh\n'));
  }
  assert.equal(renderUninstall('server'), renderUninstall('server'));
});

test("k3s-uninstall.sh removes the server's unit and k3s-agent-uninstall.sh the agent's, each runs the killall script and removes both scripts and the binary", () => {
  const server = renderUninstall('server');
  const agent = renderUninstall('agent');
  assert.equal(uninstallPath('server'), '/usr/local/bin/k3s-uninstall.sh');
  assert.equal(uninstallPath('agent'), '/usr/local/bin/k3s-agent-uninstall.sh');
  assert.match(server, /rm -f \/etc\/systemd\/system\/k3s\.service \/etc\/systemd\/system\/k3s\.service\.env\n/);
  assert.match(agent, /rm -f \/etc\/systemd\/system\/k3s-agent\.service \/etc\/systemd\/system\/k3s-agent\.service\.env\n/);
  for (const s of [server, agent]) {
    assert.match(s, new RegExp(`\\[ -x ${KILLALL_PATH} \\] && ${KILLALL_PATH}`));
    assert.match(s, /rm -f \/usr\/local\/bin\/k3s \/usr\/local\/bin\/k3s-killall\.sh/);
    assert.match(s, /rm -f "\$0"/);
    // The datastore is never touched from a node.
    assert.doesNotMatch(s, /mariadb|mysql/);
  }
});

test('k3s-killall.sh keeps every iptables rule but those of kube-proxy, the CNI plugins and flannel', () => {
  const k = renderKillall();
  const line = /"\$t-save" 2>\/dev\/null \| (grep [^|]+) \|/.exec(k)?.[1];
  assert.ok(line, 'no iptables filter in the script');
  const rules = ['-A INPUT -p tcp --dport 22 -j ACCEPT', '-A KUBE-SERVICES -j RETURN', ':CNI-FORWARD - [0:0]', '-A FORWARD -s 10.42.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT', '-A POSTROUTING -j MASQUERADE'];
  const r = spawnSync('sh', ['-c', line], { input: rules.join('\n') + '\n', encoding: 'utf8' });
  assert.deepEqual(r.stdout.trim().split('\n'), ['-A INPUT -p tcp --dport 22 -j ACCEPT', '-A POSTROUTING -j MASQUERADE']);
});
