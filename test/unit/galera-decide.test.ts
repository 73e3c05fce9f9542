import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideGalera, parseGrastate, parseNodeRead, parseRecovered, position, type GaleraNodeView } from '../../src/phases/galera-state.js';

const UUID = '6f2c1a3e-1d6b-11ef-8a40-2b7d9c0e4f11';
const OTHER = '0a0b0c0d-1d6b-11ef-8a40-2b7d9c0e4f11';
const ORDER = ['db1', 'db2', 'db3'];

function stopped(name: string, seqno: number | null, uuid = UUID, recovered?: number): GaleraNodeView {
  return {
    name,
    reachable: true,
    running: false,
    status: null,
    grastate: seqno === null ? null : { uuid, seqno, safeToBootstrap: false },
    recovered: recovered === undefined ? null : { uuid, seqno: recovered },
  };
}

function running(name: string, clusterStatus: string, state = 'Synced', last = 100): GaleraNodeView {
  return {
    name,
    reachable: true,
    running: true,
    status: new Map([
      ['wsrep_cluster_status', clusterStatus],
      ['wsrep_local_state_comment', state],
      ['wsrep_ready', clusterStatus === 'Primary' ? 'ON' : 'OFF'],
      ['wsrep_cluster_state_uuid', UUID],
      ['wsrep_last_committed', String(last)],
    ]),
    grastate: { uuid: UUID, seqno: -1, safeToBootstrap: false },
    recovered: null,
  };
}

test('no node holds data and none runs: a new cluster is bootstrapped from the first node in preference order only', () => {
  const d = decideGalera([stopped('db2', null), stopped('db1', null), stopped('db3', null)], ORDER);
  assert.deepEqual(d, { kind: 'new', bootstrap: 'db1' });
});

test('a standalone MariaDB started by the package (wsrep Disconnected) does not count as holding data', () => {
  const standalone = { ...running('db1', 'Disconnected'), grastate: null };
  assert.deepEqual(decideGalera([standalone, stopped('db2', null)], ORDER), { kind: 'new', bootstrap: 'db1' });
});

test('a running primary component is joined, never bootstrapped beside', () => {
  const d = decideGalera([running('db1', 'Primary'), stopped('db2', 80)], ORDER);
  assert.deepEqual(d, { kind: 'running', primary: ['db1'] });
});

test('after a full outage the most advanced node is bootstrapped, even when it is not the preferred writer', () => {
  const d = decideGalera([stopped('db1', 120), stopped('db2', 125), stopped('db3', 90)], ORDER);
  assert.equal(d.kind, 'recover');
  assert.equal(d.kind === 'recover' && d.bootstrap, 'db2');
  assert.equal(d.kind === 'recover' && d.seqno, 125);
});

test('a crashed node (seqno -1) counts with the position --wsrep-recover found', () => {
  const d = decideGalera([stopped('db1', 120), stopped('db2', -1, UUID, 130)], ORDER);
  assert.equal(d.kind === 'recover' && d.bootstrap, 'db2');
});

test('equal positions: the preferred writer is bootstrapped', () => {
  const d = decideGalera([stopped('db2', 50), stopped('db1', 50)], ORDER);
  assert.equal(d.kind === 'recover' && d.bootstrap, 'db1');
});

test('a node that cannot be read blocks the bootstrap: its data may be the newest', () => {
  const d = decideGalera([stopped('db1', 50), { ...stopped('db2', null), reachable: false, error: 'no route to host' }], ORDER);
  assert.equal(d.kind, 'blocked');
  assert.match(d.kind === 'blocked' ? d.reason : '', /db2 cannot be read/);
});

test('a crashed node whose position cannot be recovered blocks the bootstrap', () => {
  const d = decideGalera([stopped('db1', 50), stopped('db2', -1)], ORDER);
  assert.equal(d.kind, 'blocked');
  assert.match(d.kind === 'blocked' ? d.reason : '', /last position of db2 is unknown/);
});

test('nodes running without a primary component (quorum lost) block the bootstrap and say to stop them first', () => {
  const d = decideGalera([running('db1', 'non-Primary', 'Initialized'), stopped('db2', 40)], ORDER);
  assert.equal(d.kind, 'blocked');
  assert.match(d.kind === 'blocked' ? d.hint : '', /stop mariadb on db1/);
});

test('two cluster histories block the bootstrap', () => {
  const d = decideGalera([stopped('db1', 50), stopped('db2', 60, OTHER)], ORDER);
  assert.equal(d.kind, 'blocked');
  assert.match(d.kind === 'blocked' ? d.reason : '', /different cluster histories/);
});

test('grastate.dat, galera_recovery output and the node read are parsed', () => {
  const g = parseGrastate(`# GALERA saved state\nversion: 2.1\nuuid:    ${UUID}\nseqno:   -1\nsafe_to_bootstrap: 1\n`);
  assert.deepEqual(g, { uuid: UUID, seqno: -1, safeToBootstrap: true });
  assert.deepEqual(parseRecovered(`WSREP: Recovered position ...\n--wsrep_start_position=${UUID}:4711\n`), { uuid: UUID, seqno: 4711 });
  const v = parseNodeRead('db1', `active\tactive\ngrastate\tuuid:    ${UUID}\ngrastate\tseqno:   -1\nstatus\twsrep_cluster_status\tPrimary\nstatus\twsrep_cluster_state_uuid\t${UUID}\nstatus\twsrep_last_committed\t812\n`);
  assert.equal(v.running, true);
  assert.deepEqual(position(v), { uuid: UUID, seqno: 812 });
});

test('a node whose unit is still starting is not stopped: no galera_recovery runs beside its server, and no bootstrap is decided from it', async () => {
  const { MemoryHost } = await import('../../src/transport/memory.js');
  const { readGaleraNode, isStopped } = await import('../../src/phases/galera-state.js');
  const ran: string[] = [];
  const host = (unit: string) =>
    new MemoryHost({ name: 'db1' }).handle(
      () => true,
      (cmd) => {
        ran.push(cmd.text);
        return { code: 0, stdout: cmd.text.includes('galera_recovery') ? `--wsrep_start_position=${UUID}:7\n` : `active\t${unit}\ngrastate\tuuid:    ${UUID}\ngrastate\tseqno:   -1\n`, stderr: '' };
      },
    );
  const starting = await readGaleraNode('db1', async () => host('activating'));
  assert.equal(starting.unit, 'activating');
  assert.equal(isStopped(starting), false);
  assert.equal(starting.recovered, null);
  assert.ok(!ran.some((c) => c.includes('galera_recovery')), 'no recovery beside a starting server');
  const d = decideGalera([starting, { ...starting, name: 'db2', unit: 'inactive', grastate: { uuid: UUID, seqno: 5, safeToBootstrap: false } }], ['db1', 'db2']);
  assert.equal(d.kind, 'blocked');
  assert.match(d.kind === 'blocked' ? d.reason : '', /db1 \(mariadb activating\) is starting or stopping/);
  const stopped = await readGaleraNode('db1', async () => host('failed'));
  assert.deepEqual(stopped.recovered, { uuid: UUID, seqno: 7 }, 'a failed unit has no server: recovery runs');
});
