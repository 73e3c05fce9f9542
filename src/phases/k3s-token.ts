import { hostsWithRole, type Cluster, type ClusterHost } from '../spec/cluster.js';
import type { Host } from '../transport/host.js';
import { Secret } from '../util/secret.js';

/**
 * The k3s token as it lives on a server. FACTS: the token file is
 * `K10<sha256 of CA>::server:<secret>`; the secret part is what encrypts the
 * bootstrap data in the datastore, so two tokens belong to the same cluster
 * exactly when their secret parts are equal.
 */
export const SERVER_TOKEN_PATH = '/var/lib/rancher/k3s/server/token';

/** The message k3s logs when the datastore was bootstrapped with another token (FACTS). */
export const DIFFERENT_TOKEN_LOG = 'bootstrap data already found and encrypted with different token';

/** What a k3s node logs, retrying every few seconds, when a server refuses its node password (k3s#802, FACTS). */
export const NODE_PASSWORD_REJECTED_LOG = 'Node password rejected';
/** Where k3s keeps a node's password (kept by its uninstall scripts). */
export const NODE_PASSWORD_PATH = '/etc/rancher/node/password';

/** What the user is told when a server refuses a node's password: the Secret belongs to another machine with that name. */
export function nodePasswordRejectedMessage(node: string): { message: string; hint: string } {
  return {
    message:
      `k3s refused ${node}'s node password ("${NODE_PASSWORD_REJECTED_LOG}"): the cluster keeps kube-system/${node.toLowerCase()}.node-password.k3s, ` +
      `the hash of the ${NODE_PASSWORD_PATH} of the machine that first joined as ${node}, and this machine has another one (a new or reinstalled machine with an old node's name)`,
    hint:
      `if this machine replaces the old ${node}, delete the old node (\`k3s kubectl delete node ${node}\` on a server; k3s then deletes its node-password secret) and apply again; ` +
      `to keep the old node's identity instead, put the old machine's ${NODE_PASSWORD_PATH} back on ${node} (a k8s-ha backup holds it: \`k8s-ha restore\` does that)`,
  };
}

/** The secret part of a token: `K10<hash>::<user>:<secret>` -> `<secret>`; a short token is its own secret. */
export function tokenPassphrase(token: string): string {
  const t = token.trim();
  const m = /^K10[0-9a-f]*::[^:]+:(.+)$/s.exec(t);
  return m ? m[1]! : t;
}

export function sameClusterToken(a: Secret, b: Secret): boolean {
  return tokenPassphrase(a.reveal()) === tokenPassphrase(b.reveal());
}

/** A server's token file, or null when k3s never started there. Read as root; never printed. */
export async function readServerToken(host: Host): Promise<Secret | null> {
  const buf = await host.readFile(SERVER_TOKEN_PATH);
  const text = buf?.toString('utf8').trim();
  return text ? new Secret(text) : null;
}

/** What the user is told when the cluster file's token and a server's disagree. */
export function differentTokenMessage(where: string, stateFile: string): { message: string; hint: string } {
  return {
    message:
      `${where} already belongs to a k3s cluster made with a different token: its bootstrap data (CA and keys) in the datastore is encrypted with that token, ` +
      `so a server started with the token k8s-ha has would fail with "${DIFFERENT_TOKEN_LOG}"`,
    hint:
      `either give k8s-ha the cluster's original token (restore ${stateFile} from your backup, or set k3s.token to \${env:NAME} or {file: PATH} holding it; ` +
      `\`sudo cat ${SERVER_TOKEN_PATH}\` on a working server shows it), or, to build a NEW cluster and lose the old one, uninstall k3s from the servers ` +
      '(k3s-uninstall.sh) and drop the datastore database, then apply again',
  };
}

export interface AdoptedToken {
  token: Secret;
  /** The server it was read from. */
  from: string;
}

/**
 * When the state file holds no token yet but a server already runs k3s (the
 * state file was lost), the cluster's token is on that server: use it rather
 * than generate a new one, which would lock every server out of the
 * datastore. Servers that cannot be reached are skipped: the phase's own
 * token check catches a mismatch later. Returns the secret part only, the
 * form a generated token has.
 */
export async function findServerToken(c: Cluster, connect: (h: ClusterHost) => Promise<Host>): Promise<AdoptedToken | null> {
  for (const s of hostsWithRole(c, 'server')) {
    let token: Secret | null;
    try {
      token = await readServerToken(await connect(s));
    } catch {
      continue;
    }
    if (token) return { token: new Secret(tokenPassphrase(token.reveal())), from: s.name };
  }
  return null;
}
