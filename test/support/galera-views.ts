// Galera nodes as the Galera phases observe them (GaleraNodeView), for the
// tests that feed those phases observations (test/engine/phases-galera,
// test/unit/galera-tls), all of one cluster (one state UUID).
import type { GaleraNodeView } from '../../src/phases/galera-state.js';

const UUID = '6f2c1a3e-1d6b-11ef-8a40-2b7d9c0e4f11';

/** A running node, Synced in the primary component, ready, last commit 90. */
export const synced = (name: string): GaleraNodeView => ({
  name,
  reachable: true,
  running: true,
  status: new Map([['wsrep_cluster_status', 'Primary'], ['wsrep_local_state_comment', 'Synced'], ['wsrep_ready', 'ON'], ['wsrep_cluster_state_uuid', UUID], ['wsrep_last_committed', '90']]),
  grastate: { uuid: UUID, seqno: -1, safeToBootstrap: false },
  recovered: null,
});

/** A reachable node whose mariadb is stopped: grastate.dat with `seqno`, or none (null, the default). */
export const stopped = (name: string, seqno: number | null = null): GaleraNodeView => ({ name, reachable: true, running: false, status: null, grastate: seqno === null ? null : { uuid: UUID, seqno, safeToBootstrap: false }, recovered: null });
