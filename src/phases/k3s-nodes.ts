import type { Change, RunContext } from '../engine/phase.js';
import type { Deployment } from '../cluster/deployment.js';
import { hostsWithRole } from '../spec/cluster.js';
import type { Host } from '../transport/host.js';
import { sh } from '../transport/quote.js';
import { kubectlArgs } from './k3s-health.js';
import { readNodes, type NodeState } from './k3s-versions.js';

/**
 * Node objects and their node-password secrets, through a server (FACTS:
 * k3s keeps the hash of each node's /etc/rancher/node/password in the
 * secret `NAME.node-password.k3s` in kube-system and refuses a join whose
 * password differs; deleting the Node deletes the secret). Used by node
 * removal (node-removal.ts) and by the re-join of a re-installed host.
 */

export const NODE_PASSWORD_SECRET_NS = 'kube-system';
/** Written by k3s on a node's first start; the uninstall scripts keep it (k3s#4865), a re-installed machine has none. */
export const NODE_PASSWORD_FILE = '/etc/rancher/node/password';
/** The secret k3s keeps the hash of a node's /etc/rancher/node/password in. */
export const nodePasswordSecret = (node: string): string => `${node}.node-password.k3s`;

/** A server that stays, whose API answered, and what it lists. */
export interface ApiView {
  via: string | null;
  nodes: NodeState[];
}

/** The first staying server whose API lists the Nodes. */
export async function apiView(ctx: RunContext<Deployment>): Promise<ApiView> {
  for (const s of hostsWithRole(ctx.cluster.spec, 'server')) {
    if (ctx.unreachable?.(s.name)) continue;
    try {
      const nodes = await readNodes([await ctx.host(s.name)]);
      if (nodes) return { via: s.name, nodes };
    } catch {
      // not answering: the next one
    }
  }
  return { via: null, nodes: [] };
}

/** Whether the node-password secret of `node` exists, as `via`'s API says. */
export async function hasNodePasswordSecret(h: Host, node: string): Promise<boolean> {
  const r = await h.exec(sh`${kubectlArgs('get', 'secret', '-n', NODE_PASSWORD_SECRET_NS, nodePasswordSecret(node), '-o', 'name', '--ignore-not-found')}`, { allowFailure: true, timeoutMs: 20_000 });
  return r.code === 0 && r.stdout.trim() !== '';
}

/**
 * Delete the Node object `node` (and then its node-password secret) through
 * `via`. Used by removal and by a re-installed host's re-join (k3s-agents.ts).
 */
export function deleteNodeChanges(node: string, via: string, has: { node: boolean; secret: boolean }, why: string): Change[] {
  const out: Change[] = [];
  if (has.node) {
    out.push({
      action: 'delete',
      target: { host: via, object: `Node/${node}` },
      before: 'registered',
      after: null,
      summary: `delete Node ${node} (through ${via}; ${why})`,
      apply: async (h) => void (await h.exec(sh`${kubectlArgs('delete', 'node', node, '--ignore-not-found', '--wait=true', '--timeout=60s')}`, { timeoutMs: 90_000 })),
    });
  }
  // k3s deletes it with the Node; a double that does not, or a Node already
  // gone while the secret stayed, must not block the next join.
  if (has.node || has.secret) {
    out.push({
      action: 'delete',
      target: { host: via, object: `Secret/${NODE_PASSWORD_SECRET_NS}/${nodePasswordSecret(node)}` },
      before: has.secret ? 'present' : 'deleted with the Node by k3s',
      after: null,
      summary: `delete Secret ${NODE_PASSWORD_SECRET_NS}/${nodePasswordSecret(node)} if the Node's deletion left it, so a host named ${node} can join again`,
      apply: async (h) => void (await h.exec(sh`${kubectlArgs('delete', 'secret', '-n', NODE_PASSWORD_SECRET_NS, nodePasswordSecret(node), '--ignore-not-found')}`, { timeoutMs: 60_000 })),
    });
  }
  return out;
}

/**
 * A host re-installed under a name the cluster knows (new disk, so no
 * NODE_PASSWORD_FILE, and k3s not running) while the old machine's Node
 * object is still registered: its new password would be refused against the
 * old secret and the node half-joined. The old Node and its secret go first,
 * deliberately, as the plan says. A host that merely had k3s uninstalled
 * (reset, removal) keeps its password file and re-joins as itself.
 */
export function rejoinChanges(name: string, o: { via: string | null; node: NodeState | null; nodePasswordFile: boolean; running: boolean }): Change[] {
  if (!o.via || !o.node || o.nodePasswordFile || o.running) return [];
  return deleteNodeChanges(name, o.via, { node: true, secret: true }, `${name} was re-installed: it has no ${NODE_PASSWORD_FILE} and k3s does not run there, but the cluster still has the old machine's Node ${name}, whose node-password secret would refuse the new join`);
}
