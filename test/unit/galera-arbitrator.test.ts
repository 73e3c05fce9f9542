// garbd is started under the data nodes' restart lock and the lock is held
// until it is a member, so no data node starts (and takes a full copy) while
// the arbitrator joins: arbitratorJoined is that test, from every node's view.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { arbitratorJoined } from '../../src/phases/galera.js';
import type { GaleraNodeView } from '../../src/phases/galera-state.js';

const view = (name: string, state: string, size: number): GaleraNodeView => ({
  name,
  reachable: true,
  running: true,
  status: new Map([['wsrep_cluster_status', 'Primary'], ['wsrep_local_state_comment', state], ['wsrep_ready', 'ON'], ['wsrep_cluster_size', String(size)]]),
  grastate: null,
  recovered: null,
});
const stopped = (name: string): GaleraNodeView => ({ name, reachable: true, running: false, status: null, grastate: null, recovered: null });

test('the arbitrator counts as joined once a Synced node sees one member more than the Synced data nodes', () => {
  // Right after the bootstrap: infra1 alone, garbd not yet in.
  assert.equal(arbitratorJoined([view('infra1', 'Synced', 1), stopped('infra2')]), false);
  assert.equal(arbitratorJoined([view('infra1', 'Synced', 2), stopped('infra2')]), true);
  // Both data nodes Synced: garbd makes three.
  assert.equal(arbitratorJoined([view('infra1', 'Synced', 2), view('infra2', 'Synced', 2)]), false);
  assert.equal(arbitratorJoined([view('infra1', 'Synced', 3), view('infra2', 'Synced', 3)]), true);
  // A joiner is a member but not Synced: the count is not garbd's.
  assert.equal(arbitratorJoined([view('infra1', 'Donor/Desynced', 2), view('infra2', 'Joiner', 2)]), false);
  assert.equal(arbitratorJoined([]), false);
});
