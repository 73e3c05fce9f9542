import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { LbContainerInput, RenderInputError, renderLbComposeFile, renderLbDockerUnit, renderUnit } from '../../src/render/index.js';
import { assertFieldErrors, assertGolden, run, which, withTempFile } from '../fixtures/render/helpers.js';
import { skipOrFail } from '../../lab/testing.js';

// Exercised by rendering only: there is no Docker engine on this machine.
const input: LbContainerInput = { image: 'nginx:1.26', confPath: '/etc/k8s-ha/lb/nginx.conf' };

test('the LB compose file matches the expected file and mounts the config read-only on the host network', () => {
  const text = renderLbComposeFile(input);
  assertGolden('lb-compose.yaml', text);
  const doc = parse(text) as { services: Record<string, Record<string, unknown>> };
  const svc = doc.services['k3s-api-lb']!;
  assert.equal(svc['network_mode'], 'host');
  assert.equal(svc['restart'], 'always');
  assert.equal(svc['image'], 'nginx:1.26');
  assert.deepEqual(svc['volumes'], ['/etc/k8s-ha/lb/nginx.conf:/etc/nginx/nginx.conf:ro']);
  assert.match(renderLbComposeFile({ confPath: '/etc/k8s-ha/lb/nginx.conf' }), /image: nginx:stable/);
});

test('the LB container unit matches the expected file', () => {
  const unit = renderLbDockerUnit(input);
  assertGolden('k8s-ha-lb.service', unit);
  assert.match(unit, /^ExecStart=\/usr\/bin\/docker run --rm --name k8s-ha-lb --network host -v \/etc\/k8s-ha\/lb\/nginx.conf:\/etc\/nginx\/nginx.conf:ro nginx:1.26$/m);
});

test('the LB container files refuse image names and paths that would break the command line', () => {
  const bad: [string, Partial<LbContainerInput>][] = [
    ['image', { image: 'nginx:stable; rm -rf /' }],
    ['image', { image: 'nginx stable' }],
    ['image', { image: 'NGINX' }],
    ['confPath', { confPath: 'nginx.conf' }],
    ['confPath', { confPath: '/etc/nginx %n.conf' }],
    ['containerName', { containerName: '-x' }],
  ];
  assertFieldErrors(renderLbDockerUnit, input, bad);
  assertFieldErrors(renderLbComposeFile, input, bad);
  assert.doesNotThrow(() => renderLbDockerUnit({ ...input, image: `registry.example:5000/lib/nginx@sha256:${'a'.repeat(64)}` }));
});

test('systemd-analyze verify finds nothing wrong in the LB container unit', (t) => {
  const sa = which('systemd-analyze');
  if (sa === undefined) return t.skip(skipOrFail('systemd-analyze not installed') || undefined);
  withTempFile('k8s-ha-lb.service', renderLbDockerUnit({ ...input, dockerPath: '/bin/true' }), (path, dir) => {
    // No Docker here: a stub docker.service in the unit path satisfies Requires=.
    writeFileSync(join(dir, 'docker.service'), '[Unit]\nDescription=stub\n\n[Service]\nExecStart=/bin/true\n');
    const r = run(sa, ['verify', path], undefined, { SYSTEMD_UNIT_PATH: `${dir}:` });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', r.stderr);
  });
});

test('the unit renderer keeps entry order and refuses keys and values that would break the file', () => {
  const text = renderUnit({ Unit: [['Description', 'x']], Service: [['ExecStartPre', 'b'], ['ExecStartPre', 'a']] });
  assert.equal(text, '[Unit]\nDescription=x\n\n[Service]\nExecStartPre=b\nExecStartPre=a\n');
  assert.throws(() => renderUnit({ Unit: [['Description', 'x\nExecStart=/bin/evil']] }), RenderInputError);
  assert.throws(() => renderUnit({ Unit: [['Bad Key', 'x']] }), RenderInputError);
});
