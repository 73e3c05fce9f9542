import type { Problem } from '../engine/errors.js';
import type { ObservedState } from '../engine/desired.js';
import { GALERA_TLS_FILES } from '../render/mariadb.js';
import type { Deployment } from '../cluster/deployment.js';
import { galeraNodes } from '../spec/cluster.js';

/**
 * Turning Galera's replication TLS on or off, or changing its CA, while data
 * nodes run. A member with socket.ssl and one without cannot talk (neither
 * can members that trust different CAs), so the rolling restart a changed
 * drop-in normally gets would split the cluster: the first node restarted
 * could not rejoin the others. Galera's socket.dynamic (accept both) would
 * allow a two-round rolling change; k8s-ha does not do that (yet), and
 * refuses instead, with the way out: stop every data node, and apply does a
 * full-outage recovery (galera-state.ts) with the new setting.
 */

/** What a running data node's wsrep_provider_options say of TLS (undefined when not read). */
export function runsTls(providerOptions: string | undefined): boolean | undefined {
  if (providerOptions === undefined) return undefined;
  const m = /(?:^|;)\s*socket\.ssl\s*=\s*([A-Za-z0-9]*)\s*(?:;|$)/.exec(providerOptions);
  return m !== null && /^(yes|true|on|1)$/i.test(m[1]!);
}

export interface RunningNode {
  name: string;
  /** wsrep_provider_options of the running server. */
  providerOptions: string | undefined;
  state: ObservedState;
}

export function tlsChangeProblems(d: Deployment, running: readonly RunningNode[]): Problem[] {
  const want = d.spec.datastore.galera?.tls ?? false;
  const ca = d.secrets.galeraTls?.caCert;
  const other: string[] = [];
  const otherCa: string[] = [];
  for (const n of running) {
    const tls = runsTls(n.providerOptions);
    if (tls === undefined) continue;
    if (tls !== want) other.push(n.name);
    else if (want && ca !== undefined && n.state.files.get(GALERA_TLS_FILES.caFile)?.content !== ca) otherCa.push(n.name);
  }
  const all = galeraNodes(d.spec).map((h) => h.name);
  const wayOut = `or change it with a full restart of the datastore: stop MariaDB on every data node (\`systemctl stop mariadb\` on ${all.join(', ')}; the k3s API is down until apply is done), then run apply: it bootstraps the most advanced node with the new setting and rejoins the others (README, "Galera datastore")`;
  other.sort();
  otherCa.sort();
  const problems: Problem[] = [];
  if (other.length) {
    problems.push({
      severity: 'error',
      path: 'datastore.galera.tls.enabled',
      message: `datastore.galera.tls.enabled is ${want} but ${other.join(', ')} ${other.length === 1 ? 'runs' : 'run'} Galera ${want ? 'without' : 'with'} TLS: a member with TLS and one without cannot talk, so restarting the data nodes one at a time would split the cluster`,
      hint: `set it back to ${!want}, ${wayOut}`,
    });
  }
  if (otherCa.length) {
    problems.push({
      severity: 'error',
      path: 'datastore.galera.tls',
      message: `${otherCa.join(', ')} ${otherCa.length === 1 ? 'runs' : 'run'} Galera TLS with another CA than the state file's (${GALERA_TLS_FILES.caFile} differs): was the state file lost or replaced? Members trusting different CAs cannot talk`,
      hint: `put back the state file the cluster was applied with (from a backup), ${wayOut}`,
    });
  }
  return problems;
}
