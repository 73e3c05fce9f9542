import { request } from 'node:http';
import { stringify } from 'yaml';
import type { Deployment } from '../cluster/deployment.js';
import { hostKubectl, type KubeItem, type KubeList, type Kubectl } from '../kube/kubectl-host.js';
import { SERVER_UNIT } from '../phases/k3s-servers.js';
import type { Host } from '../transport/host.js';
import { systemctl } from '../transport/os.js';
import { expectedNodes, ingressAddress, judgeNodes, nodeStates, poolOf, VERIFY_APP, VERIFY_NAMESPACE, verifyObjects } from './checks.js';
import { makeReport, seconds, type CheckResult, type VerifyReport } from './report.js';

/** An image that serves HTTP on port 80 and needs no configuration. */
export const DEFAULT_VERIFY_IMAGE = 'docker.io/library/nginx:1.27-alpine';

export interface VerifyTimeouts {
  /** Nodes to become Ready. Default 120000 ms. */
  nodesMs?: number;
  /** The Service to get an address from the pool. Default 120000 ms. */
  addressMs?: number;
  /** The address to answer HTTP (image pull, ARP). Default 180000 ms. */
  httpMs?: number;
  /** The API to answer through the load balancer with a server stopped. Default 60000 ms. */
  apiMs?: number;
  /** A restarted server to be ready again. Default 180000 ms. */
  backMs?: number;
}

export interface VerifyOptions {
  deployment: Deployment;
  /** A connected host by name (the engine's connections). */
  host(name: string): Promise<Host>;
  /** Stop each server in turn (opt-in: it stops servers). Default false. */
  drill?: boolean;
  /** The test Deployment's image. Default: the cluster file's verify.image, else DEFAULT_VERIFY_IMAGE. */
  image?: string;
  /** An HTTP GET from this machine: the status code, or a thrown error. Default node:http. */
  httpGet?: (url: string, timeoutMs: number) => Promise<number>;
  /** Called as each check finishes (live output). */
  onCheck?: (c: CheckResult) => void;
  timeouts?: VerifyTimeouts;
  /** Between tries while waiting. Default 2000 ms. */
  pollMs?: number;
  sleep?: (ms: number) => Promise<void>;
  signal?: AbortSignal;
}

function defaultHttpGet(url: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${seconds(timeoutMs)}`)));
    req.on('error', reject);
    req.end();
  });
}

const lastLine = (s: string): string => s.trim().split('\n').pop() ?? '';
const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/**
 * `k8s-ha verify`: prove the cluster works (PRODUCT.md). Every check is
 * reported with its result and time; the test objects are removed in a
 * `finally`, so a failed check leaves nothing behind; a drilled server is
 * started again in a `finally` too.
 */
export async function runVerify(o: VerifyOptions): Promise<VerifyReport> {
  const t0 = Date.now();
  const spec = o.deployment.spec;
  const t = { nodesMs: 120_000, addressMs: 120_000, httpMs: 180_000, apiMs: 60_000, backMs: 180_000, ...o.timeouts };
  const pollMs = o.pollMs ?? 2_000;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const httpGet = o.httpGet ?? defaultHttpGet;
  const checks: CheckResult[] = [];
  const servers = spec.hosts.filter((h) => h.roles.includes('server')).map((h) => h.name);

  const record = (c: CheckResult): CheckResult => {
    checks.push(c);
    o.onCheck?.(c);
    return c;
  };
  /** Run one check; an exception is that check's failure, not the run's. */
  const check = async (id: string, title: string, fn: () => Promise<{ status?: CheckResult['status']; detail: string }>): Promise<CheckResult> => {
    const tc = Date.now();
    try {
      const r = await fn();
      return record({ id, title, status: r.status ?? 'pass', detail: r.detail, ms: Date.now() - tc });
    } catch (e) {
      return record({ id, title, status: 'fail', detail: errText(e), ms: Date.now() - tc });
    }
  };
  /** Poll until `probe` returns null (ok) or the bound passes; the last reason otherwise. */
  const until = async (ms: number, probe: () => Promise<string | null>): Promise<string | null> => {
    const deadline = Date.now() + ms;
    for (;;) {
      if (o.signal?.aborted) return 'interrupted';
      const why = await probe().catch((e: unknown) => errText(e));
      if (why === null) return null;
      if (Date.now() >= deadline) return why;
      await sleep(pollMs);
    }
  };
  const readyz = async (k: Kubectl, server?: string): Promise<string | null> => {
    const r = await k.run([...(server ? ['--server', server] : []), '--request-timeout=5s', 'get', '--raw', '/readyz'], { allowFailure: true, timeoutMs: 20_000 });
    return r.code === 0 && r.stdout.trim() === 'ok' ? null : lastLine(r.stderr || r.stdout) || `exit ${r.code}`;
  };

  // The first server whose API answers carries every request; the others are for the drill.
  let k: Kubectl | null = null;
  const apiCheck = await check('api', 'Kubernetes API answers on a server', async () => {
    const why: string[] = [];
    for (const s of servers) {
      const kk = hostKubectl(await o.host(s));
      const w = await readyz(kk).catch((e: unknown) => errText(e));
      if (w === null) {
        k = kk;
        return { detail: `/readyz ok on ${s}` };
      }
      why.push(`${s}: ${w}`);
    }
    throw new Error(`no server's API answers:\n${why.join('\n')}\nlook at \`systemctl status k3s\` and \`journalctl -u k3s\` on the servers`);
  });
  if (apiCheck.status === 'fail' || !k) return makeReport(spec.name, checks, Date.now() - t0);
  const kube: Kubectl = k;

  await check('api-lb', `Kubernetes API answers through the load balancer (${spec.apiServerUrl})`, async () => {
    const why = await until(t.apiMs, () => readyz(kube, spec.apiServerUrl));
    if (why) throw new Error(`${spec.apiServerUrl}/readyz: ${why}; look at the load balancer (\`k8s-ha status\`) and that tls-san holds ${spec.apiAddress}`);
    return { detail: `/readyz ok through ${spec.apiServerUrl} (asked from ${kube.host})` };
  });

  let simulated = false;
  await check('nodes-ready', 'every node is Ready', async () => {
    const expected = expectedNodes(spec);
    let verdict = { ok: false, detail: '' };
    await until(t.nodesMs, async () => {
      const nodes = nodeStates((await kube.json<KubeList>(['get', 'nodes'])).items);
      simulated = nodes.some((n) => n.simulated);
      verdict = judgeNodes(expected, nodes);
      return verdict.ok ? null : verdict.detail;
    });
    if (!verdict.ok) throw new Error(verdict.detail);
    return { detail: verdict.detail };
  });

  const metallb = spec.metallb;
  if (!metallb) {
    record({ id: 'lb-address', title: 'a LoadBalancer Service gets an address from the pool', status: 'skip', detail: 'the cluster file has no metallb section', ms: 0 });
    record({ id: 'lb-http', title: 'the address answers HTTP from this machine', status: 'skip', detail: 'the cluster file has no metallb section', ms: 0 });
  } else {
    try {
      let address: string | null = null;
      await check('lb-address', 'a LoadBalancer Service gets an address from the pool', async () => {
        const yaml = verifyObjects(o.image ?? spec.verify.image ?? DEFAULT_VERIFY_IMAGE).map((x) => `---\n${stringify(x)}`).join('');
        await kube.run(['apply', '-f', '-'], { stdin: yaml });
        let svc: KubeItem | undefined;
        const why = await until(t.addressMs, async () => {
          svc = await kube.json<KubeItem>(['get', '-n', VERIFY_NAMESPACE, `service/${VERIFY_APP}`]);
          return ingressAddress(svc) ? null : 'no address assigned yet';
        });
        if (why) {
          // kwok (the lab's k3s with lab-simulated-kubelet) only pretends to run MetalLB's controller pod.
          const lab = simulated ? '; the nodes are simulated by kwok, so MetalLB\'s controller pod does not really run' : '';
          throw new Error(`the Service ${VERIFY_NAMESPACE}/${VERIFY_APP} got no address within ${seconds(t.addressMs)} (${why}); look at \`kubectl -n metallb-system get pods\` and \`kubectl -n ${VERIFY_NAMESPACE} describe service ${VERIFY_APP}\`${lab}`);
        }
        address = ingressAddress(svc);
        const pool = poolOf(address!, metallb.pools);
        if (!pool) throw new Error(`the Service got ${address}, which is in none of the pools (${metallb.pools.map((p) => `${p.name}: ${p.addresses.join(', ')}`).join('; ')}): is another load-balancer controller (servicelb) running?`);
        return { detail: `${address} from pool ${pool}` };
      });
      await check('lb-http', 'the address answers HTTP from this machine', async () => {
        if (!address) return { status: 'skip', detail: 'no address was assigned (see lb-address)' };
        if (simulated) {
          // Not a skip: a cluster whose pods run nowhere does not work, whatever its API says.
          throw new Error(`the nodes are simulated by kwok (the lab's k3s with lab-simulated-kubelet): no container runs, so nothing can answer on ${address}; run the nodes with real kubelets (the lab's default) or real k3s`);
        }
        const url = `http://${address}/`;
        let code = 0;
        const why = await until(t.httpMs, async () => {
          code = await httpGet(url, 5_000);
          return code > 0 && code < 500 ? null : `HTTP ${code}`;
        });
        if (why) throw new Error(`${url} did not answer within ${seconds(t.httpMs)} (${why}); is the image pulled (\`kubectl -n ${VERIFY_NAMESPACE} get pods\`), is this machine on the pool's network, do the speakers run?`);
        return { detail: `HTTP ${code} from ${url}` };
      });
    } finally {
      await check('cleanup', 'the test objects are removed', async () => {
        await kube.run(['delete', 'namespace', VERIFY_NAMESPACE, '--ignore-not-found', '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
        return { detail: `namespace ${VERIFY_NAMESPACE} deleted` };
      });
    }
  }

  if (o.drill) await drill();
  return makeReport(spec.name, checks, Date.now() - t0);

  /** Each server stopped in turn: the API answers through the LB, then the server comes back. */
  async function drill(): Promise<void> {
    if (servers.length < 2) {
      record({ id: 'drill', title: 'API survives a server stopped', status: 'skip', detail: `only ${servers.length} server: stopping it takes the API down (add a second server for HA)`, ms: 0 });
      return;
    }
    for (const s of servers) {
      const other = servers.find((x) => x !== s)!;
      const viaOther = hostKubectl(await o.host(other));
      const host = await o.host(s);
      try {
        await check(`drill:${s}:api`, `API answers through the load balancer with ${s} stopped`, async () => {
          await host.exec(systemctl('stop', SERVER_UNIT), { timeoutMs: 120_000 });
          const ts = Date.now();
          const why = await until(t.apiMs, () => readyz(viaOther, spec.apiServerUrl));
          if (why) throw new Error(`with ${s} stopped, ${spec.apiServerUrl}/readyz did not answer within ${seconds(t.apiMs)} (${why}); the load balancer does not take ${s} out, or ${other} is not ready`);
          return { detail: `/readyz ok through ${spec.apiServerUrl} ${seconds(Date.now() - ts)} after stopping ${s} (asked from ${other})` };
        });
      } finally {
        const back = await check(`drill:${s}:back`, `${s} comes back`, async () => {
          // Always: even a failed or interrupted stop may have left it down.
          await host.exec(systemctl('start', SERVER_UNIT), { timeoutMs: 120_000 });
          const mine = hostKubectl(host);
          const why = await until(t.backMs, async () => {
            const w = await readyz(mine);
            if (w) return `${s} /readyz: ${w}`;
            const node = nodeStates([await viaOther.json<KubeItem>(['get', 'node', s])])[0]!;
            return node.ready ? null : `node ${s} not Ready (${node.why})`;
          });
          if (why) throw new Error(`${s} was started again but is not ready within ${seconds(t.backMs)} (${why}); look at \`journalctl -u k3s\` on ${s}`);
          return { detail: `${s} ready and its node Ready` };
        });
        if (back.status === 'fail') {
          // Never stop the next server while one is still down.
          record({ id: 'drill', title: 'remaining servers drilled', status: 'skip', detail: `stopped after ${s} did not come back`, ms: 0 });
        }
      }
      if (checks.at(-1)?.id === 'drill') return;
    }
  }
}
