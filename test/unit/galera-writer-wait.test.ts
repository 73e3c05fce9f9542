// The first writer after a bare apply: apply waits until every HAProxy load
// balancer would send the first connection to the preferred writer (or has
// chosen a writer already). The answers below are HAProxy 2.6's, as read on
// the lab (`show table k3s_datastore_writer; show servers state k3s_datastore`).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serversUp, writerReadiness } from '../../src/phases/galera-writer-wait.js';

const HEADER = '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port';
const row = (id: number, name: string, op: number) => `7 k3s_datastore ${id} ${name} 10.213.0.1${id - 1} ${op} 0 1 1 76 15 0 3 7 0 0 1 - 3307 - 0 9200 - - 9200`;
const answer = (table: string, infra1: number, infra2: number) => `# table: k3s_datastore_writer, type: integer, size:1, used:${table ? 1 : 0}\n${table}\n\n${HEADER}\n${row(1, 'infra1', infra1)}\n${row(2, 'infra2', infra2)}\n`;

test('serversUp lists the servers HAProxy runs (operational state 2)', () => {
  assert.deepEqual(serversUp(answer('', 2, 2)), ['infra1', 'infra2']);
  assert.deepEqual(serversUp(answer('', 0, 2)), ['infra2']);
  assert.deepEqual(serversUp('no such backend\n'), []);
});

test('no writer chosen yet: ready only once the preferred node is up; a writer already chosen is ready whichever it is', () => {
  assert.deepEqual(writerReadiness('infra1', answer('', 0, 2), 'infra1'), { ready: false, waiting: 'infra1 has infra1 down (up: infra2)' });
  assert.deepEqual(writerReadiness('infra1', answer('', 2, 2), 'infra1'), { ready: true, why: 'infra1 has infra1 up' });
  assert.deepEqual(writerReadiness('infra2', answer('0x7fe9f4049f38: key=1 use=21 exp=0 gpt0=2', 0, 2), 'infra1'), { ready: true, why: 'infra2 already writes to infra2' });
});
