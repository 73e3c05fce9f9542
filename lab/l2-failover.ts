/**
 * MetalLB L2 failover on a lab, for the test (test/lab/metallb.test.ts) and
 * the benchmark (bench/metallb-failover.ts): a web server on every agent
 * behind a LoadBalancer Service with `externalTrafficPolicy: Local` (so the
 * node that answers ARP also serves the request, and a request never hops to
 * the dead node), then the machine announcing the address is killed (a crash:
 * `lab stop --hard`) and the address is polled over HTTP from this machine
 * until it answers again.
 */
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import type { Kubectl, KubeItem, KubeList } from '../src/kube/kubectl-host.js';
import type { Lab } from './index.js';
import { waitFor } from './testing.js';

export const FAILOVER_NS = 'lab-l2-failover';
const APP = 'web';

export interface FailoverResult {
  address: string;
  /** The node that announced the address before, and after. */
  from: string;
  to: string;
  /** From the first failed request to the answer after the last one, in ms (0: none failed). */
  outageMs: number;
  /** Requests that failed in between (each with a 500 ms timeout, 100 ms apart). */
  failed: number;
}

/** One GET: the status code, or a thrown error (refused, timeout). */
export function httpStatus(url: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** The failover's waits poll twice a second. */
const until = <T>(what: string, timeoutMs: number, fn: () => Promise<T | null>): Promise<T> => waitFor(what, timeoutMs, fn, 500);


/** The web Deployment (one pod per agent) and its Service; resolves with the address once it answers HTTP from here. */
export async function deployFailoverWeb(k: Kubectl, image: string, agents: number): Promise<string> {
  const labels = { app: APP };
  const objects = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: FAILOVER_NS } },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: APP, namespace: FAILOVER_NS },
      spec: {
        replicas: agents,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            // One pod per agent, none on a server: with externalTrafficPolicy Local only nodes with a
            // pod announce the address, so the machine killed is always an agent, never a k3s server.
            affinity: {
              nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'DoesNotExist' }] }] } },
              podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: labels }, topologyKey: 'kubernetes.io/hostname' }] },
            },
            containers: [{ name: 'http', image, ports: [{ containerPort: 80 }], readinessProbe: { httpGet: { path: '/', port: 80 }, periodSeconds: 2 } }],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: APP, namespace: FAILOVER_NS },
      spec: { type: 'LoadBalancer', externalTrafficPolicy: 'Local', selector: labels, ports: [{ port: 80, targetPort: 80 }] },
    },
  ];
  await k.run(['apply', '-f', '-'], { stdin: objects.map((o) => JSON.stringify(o)).join('\n') });
  await until(`${agents} web pods ready`, 180_000, async () => {
    const pods = await k.json<KubeList>(['get', 'pods', '-n', FAILOVER_NS, '-l', `app=${APP}`]);
    const ready = pods.items.filter((p) => ((p.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'));
    return ready.length >= agents ? true : null;
  });
  const address = await until('an address on the web Service', 120_000, async () => {
    const svc = await k.json<KubeItem>(['get', 'service', '-n', FAILOVER_NS, APP]);
    return (svc.status as { loadBalancer?: { ingress?: { ip?: string }[] } } | undefined)?.loadBalancer?.ingress?.[0]?.ip ?? null;
  });
  await until(`HTTP from http://${address}/`, 120_000, async () => ((await httpStatus(`http://${address}/`, 2_000)) === 200 ? true : null));
  return address;
}

/**
 * The nodes in the order MetalLB v0.14's layer-2 election ranks them for one
 * address (speaker/layer2_controller.go: sha256 of "node#address"): the first
 * eligible one announces it. A node that is cordoned (unschedulable) or has
 * NetworkUnavailable is not eligible, so a drain moves the address to the next.
 */
export function l2Order(address: string, nodes: string[]): string[] {
  const key = (n: string) => createHash('sha256').update(`${n}#${address}`).digest('hex');
  return [...nodes].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/**
 * The node MetalLB's speakers say announces the Service now: the newest
 * `nodeAssigned` event ("announcing from node "X" with protocol "layer2"").
 */
export async function announcer(k: Kubectl, after = 0): Promise<string | null> {
  const ev = await k.json<KubeList>(['get', 'events', '-n', FAILOVER_NS, '--field-selector', `reason=nodeAssigned,involvedObject.name=${APP}`]);
  const items = ev.items
    .map((e) => {
      const x = e as KubeItem & { message?: string; lastTimestamp?: string; eventTime?: string; metadata: { creationTimestamp?: string } };
      return { at: Date.parse(x.lastTimestamp ?? x.eventTime ?? x.metadata.creationTimestamp ?? '') || 0, node: /from node "([^"]+)"/.exec(x.message ?? '')?.[1] ?? null };
    })
    .filter((e) => e.node && e.at >= after - 1_000)
    .sort((a, b) => a.at - b.at);
  return items.at(-1)?.node ?? null;
}

/**
 * Stop the announcing machine (`hard`: killed, a crash; else a clean power-off) while polling
 * the address over HTTP; the outage is from the first failed request to the answer that
 * follows the last one. Done once the machine is down and the address has answered for 3 s.
 */
export async function measureFailover(lab: Lab, k: Kubectl, address: string, opts: { hard?: boolean; timeoutMs?: number } = {}): Promise<FailoverResult> {
  const timeoutMs = opts.timeoutMs ?? 90_000;
  const from = await until('the announcing node (nodeAssigned event)', 60_000, () => announcer(k));
  const url = `http://${address}/`;
  const t0 = Date.now();
  let stopped = false;
  const stopping = lab.stop(from, { hard: opts.hard ?? true }).then(() => void (stopped = true));
  let failed = 0;
  let firstFail = -1;
  let recovered = -1;
  let streakFrom = Date.now();
  for (;;) {
    const at = Date.now();
    const ok = await httpStatus(url, 500).then((c) => c === 200, () => false);
    if (!ok) {
      failed++;
      if (firstFail < 0) firstFail = at;
      recovered = -1;
      streakFrom = Infinity;
    } else {
      if (recovered < 0 && firstFail >= 0) recovered = Date.now();
      if (streakFrom === Infinity) streakFrom = Date.now();
    }
    if (stopped && ok && Date.now() - streakFrom >= 3_000) break;
    if (Date.now() - t0 > timeoutMs) {
      await stopping.catch(() => undefined);
      throw new Error(`${url} did not answer steadily within ${timeoutMs / 1000} s after ${from} was stopped (${failed} requests failed)`);
    }
    await sleep(100);
  }
  await stopping;
  const to = (await until('the new announcing node', 30_000, async () => {
    const n = await announcer(k, t0);
    return n && n !== from ? n : null;
  }).catch(() => '?')) as string;
  return { address, from, to, outageMs: firstFail < 0 ? 0 : recovered - firstFail, failed };
}
