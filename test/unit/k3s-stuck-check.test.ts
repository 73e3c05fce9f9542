// The readiness probe's view of a k3s server held back by a check that never
// passes on its own: the probe's `failing=` line (the [-] checks of the last
// "Waiting for kube-apiserver to be ready" line), and the decision to name it.
// The probe's shell pipeline runs here on a journal line as k3s writes it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { parseServerProbe, serverProbe, stuckBootCheck } from '../../src/phases/k3s-health.js';
import { DIFFERENT_TOKEN_LOG } from '../../src/phases/k3s-token.js';

const LINE = 'time="2026-12-01T19:02:35Z" level=info msg="Waiting for kube-apiserver to be ready: an error on the server (\\"[+]ping ok\\\\n[+]etcd ok\\\\n[+]poststarthook/aggregator-reload-proxy-client-cert ok\\\\n[-]autoregister-completion failed: reason withheld\\\\n[+]poststarthook/apiservice-openapi-controller ok\\\\nreadyz check failed\\") has prevented the request from succeeding"';

/** The probe's journal part (from its one journal read on) with k3s's journal replaced by `lines`. */
function journalPart(lines: string[]): string {
  const probe = serverProbe(null).text;
  const i = probe.indexOf('m=$(');
  assert.ok(i > 0, 'the probe reads the journal once, into m');
  const part = probe.slice(i);
  assert.equal(part.split('journalctl -u k3s --no-pager -o cat').length, 2, 'one journal read');
  const r = spawnSync('sh', ['-c', part.replace('journalctl -u k3s --no-pager -o cat', `printf '%s\\n' ${lines.map((l) => `'${l.replace(/'/g, `'\\''`)}'`).join(' ')}`)], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test("the probe's failing= line lists the [-] checks of k3s's last waiting line", () => {
  assert.equal(journalPart(['level=info msg="Starting k3s"', LINE]), 'failing=autoregister-completion \n');
});

test('the same journal read finds the token message', () => {
  assert.equal(journalPart([`level=fatal msg="${DIFFERENT_TOKEN_LOG}"`, LINE]), 'tokenlog=yes\nfailing=autoregister-completion \n');
  assert.equal(journalPart(['level=info msg="Starting k3s"']), 'failing=\n');
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
