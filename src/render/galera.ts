import { RenderInputError, assertInt, assertIp, assertPort, hostPort, managedHeader, sortedUnique } from './common.js';
import { GALERA_PORT, galeraProviderOptions, type GaleraTlsFiles } from './mariadb.js';
import { renderUnit } from './systemd.js';

/**
 * The pieces of a Galera datastore besides MariaDB's own drop-in: the health
 * check the load balancer reads on each data node, and garbd's settings.
 *
 * A node fit for kine's writes is Synced, in the primary component, and
 * ready (FACTS: a TCP or mysql-check passes on a Donor, a Joiner or a node
 * cut off in a non-primary component). HAProxy cannot ask MariaDB that
 * itself, so each node answers an HTTP check (the role clustercheck plays
 * with xinetd elsewhere): a systemd socket that runs one short script per
 * connection, reading wsrep status over the local socket as root.
 */

export const GALERA_CHECK_SCRIPT_PATH = '/usr/local/sbin/k8s-ha-galera-check';
export const GALERA_CHECK_SOCKET = 'k8s-ha-galera-check.socket';
export const GALERA_CHECK_SOCKET_PATH = `/etc/systemd/system/${GALERA_CHECK_SOCKET}`;
/** Accept=yes: systemd runs one instance of this template per connection. */
export const GALERA_CHECK_SERVICE_PATH = '/etc/systemd/system/k8s-ha-galera-check@.service';
/** Present on a node: the check answers 503 so the load balancer moves the writer off it first (maintenance). */
export const GALERA_DRAIN_FLAG = '/var/lib/k8s-ha/galera-drain';

/** Debian's garbd settings file, read by garb-systemd. */
export const GARB_DEFAULTS_PATH = '/etc/default/garb';
export const GARB_UNIT = 'garb';

/**
 * The check script (mode 0755). It reads the state with a bounded `timeout`
 * so a hung server answers nothing (and fails the check by timing out)
 * rather than piling up processes. `kineUser` is the datastore user k3s's
 * kine connects as: a node that holds none of its sessions (not the writer)
 * must also show that it can commit now (see the script's comments).
 */
export function renderGaleraCheckScript(input: { kineUser: string }): string {
  if (typeof input?.kineUser !== 'string' || !/^[A-Za-z0-9_]{1,80}$/.test(input.kineUser)) {
    throw new RenderInputError('kineUser', `must be a MariaDB user name of letters, digits and '_', got ${JSON.stringify(input?.kineUser)}`);
  }
  const l: string[] = [];
  l.push('#!/bin/sh');
  l.push(managedHeader('#', 'k8s-ha-galera-check: HTTP health check of this Galera node for the load balancer.').trimEnd());
  l.push('# 200 only when the node is Synced, in the primary component and ready;');
  l.push('# a Donor, Joiner, non-primary or stopped node answers 503 and gets no writes.');
  l.push('set -u');
  l.push('# Read the request up to its blank line first: closing with unread bytes');
  l.push('# would reset the connection and could lose the answer.');
  l.push("while IFS= read -r line; do case \"$line\" in ''|$(printf '\\r')) break ;; esac; done");
  l.push(`state=$(timeout 1 mariadb --batch --skip-column-names -e "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_comment', 'wsrep_cluster_status', 'wsrep_ready'); SELECT 'kine_sessions', COUNT(*) FROM information_schema.processlist WHERE user = '${input.kineUser}'" 2>/dev/null | tr '\\t\\n' '= ')`);
  l.push('# A node without kine\'s sessions would become the writer if chosen: it must');
  l.push('# also pass a causal read (wsrep_sync_wait=1), a round through the group that');
  l.push('# stalls while a silent member is not yet evicted. Writing then, while a lost');
  l.push("# writer's last write sets are still being ordered, can fail certification,");
  l.push("# and kine's read-back reports such a create as done. The writer itself is");
  l.push('# not held to it: a member joining or leaving must not move the writer.');
  l.push('case " $state" in');
  l.push('  *" kine_sessions=0 "*)');
  l.push('    causal=$(timeout 1 mariadb --batch --skip-column-names -e "SET SESSION wsrep_sync_wait = 1; SELECT \'ON\'" 2>/dev/null)');
  l.push('    state="$state wsrep_causal_read=${causal:-OFF} " ;;');
  l.push('  *) state="$state wsrep_causal_read=writer " ;;');
  l.push('esac');
  l.push('ok=0');
  l.push('case " $state" in *" wsrep_local_state_comment=Synced "*) ok=1 ;; esac');
  l.push('case " $state" in *" wsrep_cluster_status=Primary "*) ;; *) ok=0 ;; esac');
  l.push('case " $state" in *" wsrep_ready=ON "*) ;; *) ok=0 ;; esac');
  l.push('case " $state" in *" wsrep_causal_read=ON "*|*" wsrep_causal_read=writer "*) ;; *) ok=0 ;; esac');
  l.push(`[ -e ${GALERA_DRAIN_FLAG} ] && ok=0 state="$state drain=1"`);
  l.push('if [ "$ok" = 1 ]; then status="200 OK"; else status="503 Service Unavailable"; fi');
  l.push('body="$state"');
  l.push('printf \'HTTP/1.1 %s\\r\\nContent-Type: text/plain\\r\\nConnection: close\\r\\nContent-Length: %d\\r\\n\\r\\n%s\' "$status" "$((${#body} + 1))" "$body"');
  l.push("printf '\\n'");
  return l.join('\n') + '\n';
}

/** The socket on the node's address (the load balancers reach it there). */
export function renderGaleraCheckSocket(address: string, port: number): string {
  assertIp('address', address);
  assertPort('port', port);
  return renderUnit({
    comment: ['Galera health check for the load balancer: HTTP 200 when this node takes writes.', 'Managed by k8s-ha: local edits are overwritten on the next apply.'],
    Unit: [['Description', 'k8s-ha Galera health check socket']],
    Socket: [
      ['ListenStream', hostPort(address, port)],
      ['Accept', 'yes'],
      // At boot the socket may come up before the address is configured
      // (measured on the lab: "Cannot assign requested address", the unit
      // failed and the load balancers saw every node down).
      ['FreeBind', 'yes'],
      // Checks come every interval from each load balancer; a burst must not stop the socket.
      ['MaxConnections', '64'],
      ['TriggerLimitIntervalSec', '0'],
    ],
    Install: [['WantedBy', 'sockets.target']],
  });
}

export function renderGaleraCheckService(): string {
  return renderUnit({
    comment: ['One health check answer per connection (see k8s-ha-galera-check.socket).', 'Managed by k8s-ha: local edits are overwritten on the next apply.'],
    Unit: [['Description', 'k8s-ha Galera health check']],
    Service: [
      ['ExecStart', GALERA_CHECK_SCRIPT_PATH],
      ['StandardInput', 'socket'],
      ['StandardOutput', 'socket'],
      ['StandardError', 'journal'],
      // Bounded: a hung server must not leave checks behind.
      ['RuntimeMaxSec', '5'],
    ],
  });
}

export interface GarbInput {
  clusterName: string;
  /** Every data node's address. */
  nodes: string[];
  suspectTimeoutMs: number;
  /** Replication over TLS with these files, as the data nodes. Default: plain TCP. */
  tls?: GaleraTlsFiles;
}

/** /etc/default/garb for Debian's garb.service (garb-systemd). */
export function renderGarbDefaults(input: GarbInput): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(input.clusterName)) throw new RenderInputError('clusterName', `must be 1-64 letters, digits, '_' or '-', got ${JSON.stringify(input.clusterName)}`);
  if (!Array.isArray(input.nodes) || input.nodes.length === 0) throw new RenderInputError('nodes', 'at least one data node is needed');
  input.nodes.forEach((a, i) => assertIp(`nodes[${i}]`, a));
  assertInt('suspectTimeoutMs', input.suspectTimeoutMs, 500, 60_000);
  const l: string[] = [];
  l.push(managedHeader('#', 'garbd: the Galera arbitrator (a vote without data).'));
  l.push('# Read by garb-systemd (garb.service).');
  l.push(`GALERA_NODES="${sortedUnique(input.nodes).map((a) => hostPort(a, GALERA_PORT)).join(',')}"`);
  l.push(`GALERA_GROUP="${input.clusterName}"`);
  l.push('# The same failure detection as the data nodes, or the arbitrator would keep');
  l.push('# a frozen node in the primary component longer than they do.');
  l.push(`GALERA_OPTIONS="${galeraProviderOptions(input.suspectTimeoutMs, input.tls)}"`);
  return l.join('\n') + '\n';
}
