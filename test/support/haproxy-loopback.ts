// A real HAProxy on loopback running a rendered haproxy.cfg in front of
// stand-in data nodes (test/support/standin-nodes.ts), for the tests of the
// datastore route (test/unit/haproxy-writer-hold, haproxy-vip-release).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { HaproxyDatastoreInput } from '../../src/render/haproxy-datastore.js';
import type { HaproxyLbInput } from '../../src/render/haproxy.js';
import { sleep, type StandinNode } from './standin-nodes.js';

/**
 * The load balancer's input around `datastore`: the API listener every
 * haproxy.cfg has, unused by these tests, on 127.0.0.1:`apiPort` with one
 * server on that same port.
 */
export function datastoreOnlyInput(apiPort: number, datastore: HaproxyDatastoreInput): HaproxyLbInput {
  return {
    listenPort: apiPort,
    listenAddress: '127.0.0.1',
    servers: [{ name: 'server1', address: '127.0.0.1', port: apiPort }],
    connectTimeoutMs: 1000,
    idleTimeoutMs: 3_600_000,
    healthCheck: { path: '/ping', intervalMs: 1000, fall: 2, rise: 2 },
    datastore,
  };
}

/**
 * The rendered config made to run without root on one host: no chroot, user
 * or group, no syslog, the admin socket at `adminSocket`, and each data node
 * checked on its own port (in a cluster every node's check is on checkPort;
 * here the nodes share one address).
 */
export function loopbackHaproxyCfg(cfg: string, adminSocket: string, nodes: readonly StandinNode[]): string {
  let out = cfg
    .replace(/^\s+(chroot|user|group) .*\n/gm, '')
    .replace(/^\s+log \/dev\/log local0\n/m, '')
    .replace(/stats socket \S+/, `stats socket ${adminSocket}`)
    .replace(/default-server check port \d+/, 'default-server check');
  for (const n of nodes) out = out.replace(new RegExp(`(server ${n.name} ${n.address.replaceAll('.', '\\.')}:${n.port} id \\d+)`), `$1 port ${n.checkPort}`);
  return out;
}

/**
 * Write `cfg` to `dir`/haproxy.cfg and start HAProxy on it in the
 * foreground, killed when the test ends; after `settleMs` it must still run
 * (its stderr is the failure message).
 */
export async function startHaproxy(t: TestContext, haproxy: string, dir: string, cfg: string, settleMs: number): Promise<ChildProcess> {
  const path = join(dir, 'haproxy.cfg');
  writeFileSync(path, cfg);
  const proc = spawn(haproxy, ['-db', '-f', path], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d.toString()));
  t.after(() => proc.kill('SIGKILL'));
  await sleep(settleMs);
  assert.equal(proc.exitCode, null, stderr);
  return proc;
}
