import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { MetallbInput, RenderInputError, metallbObjects, renderMetallbObjects } from '../../src/render/index.js';
import { assertGolden } from '../fixtures/render/helpers.js';

const input: MetallbInput = {
  pools: [
    { name: 'reserved', addresses: ['10.0.0.250-10.0.0.254'], autoAssign: false },
    { name: 'default', addresses: ['10.0.0.224/28', '10.0.0.200-10.0.0.210', 'fd00:0:0:1::/120'], autoAssign: true },
  ],
  l2Advertisement: true,
};

test('MetalLB objects match the expected multi-document YAML', () => {
  assertGolden('metallb.yaml', renderMetallbObjects(input));
});

test('MetalLB YAML parses to the same objects a kube client would apply', () => {
  const docs = parseAllDocuments(renderMetallbObjects(input)).map((d) => d.toJS() as unknown);
  assert.deepEqual(docs, metallbObjects(input));
  const [pool0, pool1, l2] = metallbObjects(input);
  assert.equal(pool0!.kind, 'IPAddressPool');
  assert.equal(pool0!.metadata.name, 'default');
  assert.equal(pool0!.metadata.namespace, 'metallb-system');
  assert.equal(pool0!.apiVersion, 'metallb.io/v1beta1');
  // Numeric order, not string order: .200 before .224, IPv4 before IPv6.
  assert.deepEqual(pool0!.spec['addresses'], ['10.0.0.200-10.0.0.210', '10.0.0.224/28', 'fd00:0:0:1::/120']);
  assert.equal(pool1!.spec['autoAssign'], false);
  assert.equal(l2!.kind, 'L2Advertisement');
  assert.deepEqual(l2!.spec['ipAddressPools'], ['default', 'reserved']);
  assert.equal(l2!.metadata.labels['app.kubernetes.io/managed-by'], 'k8s-ha');
});

test('MetalLB objects are the same whatever the order of pools and addresses', () => {
  const shuffledInput: MetallbInput = {
    ...input,
    pools: [...input.pools].reverse().map((p) => ({ ...p, addresses: [...p.addresses].reverse() })),
  };
  assert.equal(renderMetallbObjects(shuffledInput), renderMetallbObjects(input));
});

test('MetalLB without L2 advertisement renders pools only, in another namespace if asked', () => {
  const objs = metallbObjects({ ...input, l2Advertisement: false, namespace: 'lb' });
  assert.deepEqual(
    objs.map((o) => [o.kind, o.metadata.namespace]),
    [
      ['IPAddressPool', 'lb'],
      ['IPAddressPool', 'lb'],
    ],
  );
  assert.equal(renderMetallbObjects({ pools: [], l2Advertisement: true }), '');
});

test('MetalLB pools refuse overlaps, host bits, reversed ranges and bad names', () => {
  const bad: [string, MetallbInput][] = [
    ['pools[1].addresses[0]', { ...input, pools: [input.pools[0]!, { name: 'x', addresses: ['10.0.0.252/30'], autoAssign: true }] }],
    ['pools[0].addresses[1]', { ...input, pools: [{ name: 'x', addresses: ['10.0.0.1-10.0.0.9', '10.0.0.0/29'], autoAssign: true }] }],
    ['pools[0].addresses[0]', { ...input, pools: [{ name: 'x', addresses: ['10.0.0.1/28'], autoAssign: true }] }],
    ['pools[0].addresses[0]', { ...input, pools: [{ name: 'x', addresses: ['10.0.0.9-10.0.0.1'], autoAssign: true }] }],
    ['pools[0].addresses[0]', { ...input, pools: [{ name: 'x', addresses: ['10.0.0.1-fd00::1'], autoAssign: true }] }],
    ['pools[0].addresses[0]', { ...input, pools: [{ name: 'x', addresses: ['10.0.0.0/33'], autoAssign: true }] }],
    ['pools[0].addresses[0]', { ...input, pools: [{ name: 'x', addresses: ['10.0.0.1\n- 0.0.0.0/0'], autoAssign: true }] }],
    ['pools[0].addresses', { ...input, pools: [{ name: 'x', addresses: [], autoAssign: true }] }],
    ['pools[0].name', { ...input, pools: [{ name: 'Default', addresses: ['10.0.0.1-10.0.0.2'], autoAssign: true }] }],
    ['pools[1].name', { ...input, pools: [input.pools[0]!, { ...input.pools[0]!, addresses: ['10.1.0.0/24'] }] }],
    ['namespace', { ...input, namespace: 'metallb system' }],
  ];
  for (const [field, value] of bad) {
    assert.throws(() => metallbObjects(value), (e: unknown) => e instanceof RenderInputError && e.field === field, field);
  }
});
