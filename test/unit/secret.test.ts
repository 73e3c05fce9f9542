import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect, format } from 'node:util';
import { isSecret, MASK, maskSecrets, Secret } from '../../src/util/secret.js';

const value = 'hunter2-database-password';

test('a secret prints itself masked through String, templates, JSON and inspect', () => {
  const s = new Secret(value);
  assert.equal(String(s), MASK);
  assert.equal(`${s}`, MASK);
  assert.equal(JSON.stringify({ password: s }), `{"password":"${MASK}"}`);
  assert.equal(inspect(s), `Secret(${MASK})`);
  assert.ok(!inspect({ nested: { s } }).includes(value));
  assert.ok(!format('%s %o %j', s, s, { s }).includes(value));
});

test('an Error that mentions a secret does not reveal it', () => {
  const s = new Secret(value);
  const err = new Error(`cannot log in with ${s}`);
  assert.ok(!err.message.includes(value));
  assert.ok(!inspect(err).includes(value));
});

test('the value is reached only through reveal, and two secrets compare by value', () => {
  const s = new Secret(value);
  assert.equal(s.reveal(), value);
  assert.ok(s.equals(new Secret(value)));
  assert.ok(!s.equals(new Secret('other')));
  assert.ok(isSecret(s));
  assert.ok(!isSecret(value));
});

test('maskSecrets replaces every occurrence of every secret in a text', () => {
  const a = new Secret('tok-123456');
  const b = new Secret('pw-abcdef');
  const text = `token=tok-123456\nK3S_TOKEN=tok-123456 password pw-abcdef`;
  assert.equal(maskSecrets(text, [a, b]), `token=${MASK}\nK3S_TOKEN=${MASK} password ${MASK}`);
});

test('maskSecrets leaves values shorter than four characters alone, so it does not mask every "a" in a text', () => {
  assert.equal(maskSecrets('a cat sat', [new Secret('a')]), 'a cat sat');
});
