// The readiness probe's view of a k3s server held back by a check that never
// passes on its own: the probe's `failing=` line (the [-] checks of the last
// "Waiting for kube-apiserver to be ready" line), and the decision to name it.
// The probe's shell pipeline runs here on a journal line as k3s writes it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { parseServerProbe, serverProbe, stuckBootCheck } from '../../src/phases/k3s-health.js';

const LINE = 'time="2026-12-01T19:02:35Z" level=info msg="Waiting for kube-apiserver to be ready: an error on the server (\\"[+]ping ok\\\\n[+]etcd ok\\\\n[+]poststarthook/aggregator-reload-proxy-client-cert ok\\\\n[-]autoregister-completion failed: reason withheld\\\\n[+]poststarthook/apiservice-openapi-controller ok\\\\nreadyz check failed\\") has prevented the request from succeeding"';

test("the probe's failing= line lists the [-] checks of k3s's last waiting line", () => {
  // The probe's pipeline with the journal replaced by the line above.
  const probe = serverProbe(null).text;
  const i = probe.indexOf("printf 'failing=");
  assert.ok(i > 0, 'the probe prints failing=');
  const failing = probe.slice(i).replace('journalctl -u k3s --no-pager -o cat', `printf '%s\\n' ${`'${LINE.replace(/'/g, `'\\''`)}'`}`);
  const r = spawnSync('sh', ['-c', failing], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'failing=autoregister-completion \n');
});

const probe = (failing: string, ping = 'pong') => parseServerProbe(`ping=${ping}\nreadyz=error\nactive=activating\nentered=0\nfailing=${failing}\n`);

test('stuckBootCheck names autoregister-completion only when it alone fails and the server answers /ping', () => {
  assert.equal(stuckBootCheck(probe('autoregister-completion ')), 'autoregister-completion');
  assert.equal(stuckBootCheck(probe('poststarthook/autoregister-completion')), 'autoregister-completion');
  // Another failing check may still pass by itself: wait as usual.
  assert.equal(stuckBootCheck(probe('autoregister-completion poststarthook/rbac/bootstrap-roles')), null);
  assert.equal(stuckBootCheck(probe('etcd')), null);
  assert.equal(stuckBootCheck(probe('')), null);
  assert.equal(stuckBootCheck(probe('autoregister-completion', 'curl: (7) Failed to connect')), null);
});
