import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, parseDuration } from '../../src/spec/duration.js';
import { cidrHasHostBits, intToIpv4, ipv4ToInt, isIpv4, parseCidr, parsePoolEntry, rangesOverlap } from '../../src/spec/net.js';

test('durations parse to milliseconds in Go\'s notation', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('3s'), 3000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('1m30s'), 90_000);
  assert.equal(parseDuration('1.5s'), 1500);
  for (const bad of ['3', 's', '1 h', '-1s', '1d', '']) assert.equal(parseDuration(bad), undefined, bad);
  assert.equal(formatDuration(90_000), '90s');
  assert.equal(formatDuration(3_600_000), '1h');
  assert.equal(formatDuration(500), '500ms');
});

test('IPv4 addresses are strict dotted quads', () => {
  assert.ok(isIpv4('192.168.0.1'));
  for (const bad of ['192.168.0.256', '192.168.0', '192.168.0.1x', '01.2.3.4', '1.2.3.4.5']) assert.ok(!isIpv4(bad), bad);
  assert.equal(intToIpv4(ipv4ToInt('10.43.0.10')!), '10.43.0.10');
});

test('CIDRs and ranges become inclusive intervals', () => {
  assert.deepEqual(parseCidr('10.42.0.0/16'), { first: ipv4ToInt('10.42.0.0'), last: ipv4ToInt('10.42.255.255') });
  assert.deepEqual(parsePoolEntry('192.168.0.170-192.168.0.175'), { first: ipv4ToInt('192.168.0.170'), last: ipv4ToInt('192.168.0.175') });
  assert.equal(parsePoolEntry('192.168.0.170-'), undefined);
  assert.ok(cidrHasHostBits('10.42.1.0/16'));
  assert.ok(!cidrHasHostBits('10.42.0.0/16'));
  assert.ok(rangesOverlap(parseCidr('10.0.0.0/8')!, parseCidr('10.43.0.0/16')!));
  assert.ok(!rangesOverlap(parseCidr('10.42.0.0/16')!, parseCidr('10.43.0.0/16')!));
  assert.deepEqual(parseCidr('0.0.0.0/0'), { first: 0, last: 2 ** 32 - 1 });
});
