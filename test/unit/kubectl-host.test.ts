import assert from 'node:assert/strict';
import { test } from 'node:test';
import { apiUnavailable } from '../../src/kube/kubectl-host.js';

const r = (stderr: string, code = 1) => ({ code, stdout: '', stderr });

test('an API that does not answer, or answers without its datastore, is "not up yet"; an object error is not', () => {
  for (const down of [
    'The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?',
    'Unable to connect to the server: dial tcp 127.0.0.1:6443: i/o timeout',
    // Seen while a Galera cluster was being recovered after a full outage (kine's driver error).
    'Error from server: rpc error: code = Unknown desc = invalid connection',
    'Error from server: Error 1047 (08S01): WSREP has not yet prepared node for application use',
    'Error from server (Timeout): Timeout: request did not complete within requested timeout - context deadline exceeded',
  ]) assert.equal(apiUnavailable(r(down)), true, down);
  assert.equal(apiUnavailable(r('', 127)), true, 'k3s not installed');
  for (const real of ['Error from server (NotFound): deployments.apps "controller" not found', 'error: the server doesn\'t have a resource type "ipaddresspools"', 'Error from server (Forbidden): configmaps is forbidden']) assert.equal(apiUnavailable(r(real)), false, real);
});
