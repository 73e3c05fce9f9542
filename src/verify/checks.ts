import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { KubeItem } from '../kube/kubectl-host.js';
import type { Cluster } from '../spec/cluster.js';

/**
 * The pure parts of verify and status: reading Node objects, telling the
 * lab's simulated nodes apart, pool membership, and the test objects.
 */

export interface NodeState {
  name: string;
  ready: boolean;
  /** Reason and message of the Ready condition when not Ready. */
  why: string;
  kubeletVersion: string;
  roles: string[];
  /** Simulated by kwok (the lab's k3s): pods on it run no container. */
  simulated: boolean;
}

interface NodeItem extends KubeItem {
  status?: {
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
    nodeInfo?: { kubeletVersion?: string };
  };
}

export function nodeStates(items: readonly KubeItem[]): NodeState[] {
  return (items as NodeItem[])
    .map((n) => {
      const ready = n.status?.conditions?.find((c) => c.type === 'Ready');
      const labels = n.metadata.labels ?? {};
      return {
        name: n.metadata.name,
        ready: ready?.status === 'True',
        why: ready ? (ready.status === 'True' ? '' : `${ready.reason ?? ready.status}${ready.message ? `: ${ready.message}` : ''}`) : 'no Ready condition yet',
        kubeletVersion: n.status?.nodeInfo?.kubeletVersion ?? '',
        roles: Object.keys(labels).filter((k) => k.startsWith('node-role.kubernetes.io/')).map((k) => k.slice('node-role.kubernetes.io/'.length)).sort(),
        // kwok manages only nodes carrying this annotation (FACTS: lab's control plane).
        simulated: n.metadata.annotations?.['kwok.x-k8s.io/node'] === 'fake',
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** The hosts that should be nodes: servers and agents (node-name is the host name). */
export function expectedNodes(spec: Cluster): string[] {
  return spec.hosts.filter((h) => h.roles.includes('server') || h.roles.includes('agent')).map((h) => h.name);
}

/** Every expected node present and Ready; otherwise the names and reasons. */
export function judgeNodes(expected: readonly string[], nodes: readonly NodeState[]): { ok: boolean; detail: string } {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const problems: string[] = [];
  for (const name of expected) {
    const n = byName.get(name);
    if (!n) problems.push(`${name}: no Node object (not joined; look at \`journalctl -u k3s\` or \`-u k3s-agent\` on ${name})`);
    else if (!n.ready) problems.push(`${name}: not Ready (${n.why})`);
  }
  const extra = nodes.filter((n) => !expected.includes(n.name)).map((n) => n.name);
  const ready = expected.filter((e) => byName.get(e)?.ready).length;
  const head = `${ready}/${expected.length} nodes Ready${extra.length ? `; not in the cluster file: ${extra.join(', ')}` : ''}`;
  return { ok: problems.length === 0, detail: problems.length ? `${head}\n${problems.join('\n')}` : head };
}

/** The pool an address belongs to, or null. Pools hold ranges `a-b` and CIDRs. */
export function poolOf(ip: string, pools: readonly { name: string; addresses: readonly string[] }[]): string | null {
  const family = isIPv4(ip) ? 'ipv4' : isIPv6(ip) ? 'ipv6' : null;
  if (!family) return null;
  for (const p of pools) {
    const bl = new BlockList();
    for (const a of p.addresses) {
      const range = /^\s*([^-\s]+)\s*-\s*([^-\s]+)\s*$/.exec(a);
      const cidr = /^([^/]+)\/(\d+)$/.exec(a);
      const fam = (x: string) => (isIPv4(x) ? 'ipv4' : 'ipv6');
      if (range) bl.addRange(range[1]!, range[2]!, fam(range[1]!));
      else if (cidr) bl.addSubnet(cidr[1]!, Number(cidr[2]), fam(cidr[1]!));
    }
    if (bl.check(ip, family)) return p.name;
  }
  return null;
}

export const VERIFY_NAMESPACE = 'k8s-ha-verify';
export const VERIFY_APP = 'k8s-ha-verify';

/**
 * The test workload: a namespace of its own (removing it removes everything),
 * a Deployment serving HTTP on port 80 and a LoadBalancer Service for it.
 */
export function verifyObjects(image: string): Record<string, unknown>[] {
  const labels = { app: VERIFY_APP, 'app.kubernetes.io/managed-by': 'k8s-ha' };
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: VERIFY_NAMESPACE, labels } },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: VERIFY_APP, namespace: VERIFY_NAMESPACE, labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: VERIFY_APP } },
        template: {
          metadata: { labels: { app: VERIFY_APP } },
          spec: { containers: [{ name: 'http', image, ports: [{ containerPort: 80 }] }] },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: VERIFY_APP, namespace: VERIFY_NAMESPACE, labels },
      spec: { type: 'LoadBalancer', selector: { app: VERIFY_APP }, ports: [{ name: 'http', port: 80, targetPort: 80 }] },
    },
  ];
}

/** The first ingress address of a LoadBalancer Service, if assigned. */
export function ingressAddress(svc: KubeItem | undefined): string | null {
  const ing = (svc?.status as { loadBalancer?: { ingress?: { ip?: string }[] } } | undefined)?.loadBalancer?.ingress;
  return ing?.[0]?.ip ?? null;
}
