import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { and, Command, quote, sh } from '../../src/transport/quote.js';
import { Secret } from '../../src/util/secret.js';

/** What a real POSIX shell makes of a command: its words, one per line. */
function words(cmd: Command): string[] {
  const out = execFileSync('sh', ['-c', `for w in ${cmd.text}; do printf '%s\\n--\\n' "$w"; done`], { encoding: 'utf8' });
  return out.split('\n--\n').slice(0, -1);
}

test('plain words are left unquoted so logs stay readable', () => {
  assert.equal(sh`systemctl restart ${'nginx.service'}`.text, 'systemctl restart nginx.service');
  assert.equal(quote('/etc/rancher/k3s/config.yaml'), '/etc/rancher/k3s/config.yaml');
  assert.equal(quote(6443), '6443');
});

test('a value with spaces, quotes, $, backticks and newlines reaches the shell as one word, unchanged', () => {
  const nasty = [`it's "here"`, 'a b  c', '$HOME `id` $(id)', 'line1\nline2', ';rm -rf /;', '', '*', '-n', '\\'];
  for (const v of nasty) {
    assert.deepEqual(words(sh`${v}`), [v], `value ${JSON.stringify(v)}`);
  }
});

test('an array becomes several words, each quoted on its own', () => {
  const list = ['a b', "c'd", 'e'];
  const cmd = sh`${list}`;
  assert.equal(cmd.text, `'a b' 'c'\\''d' e`);
  assert.deepEqual(words(cmd), list);
});

test('a nested command is inserted as built, not quoted again', () => {
  const inner = sh`cat ${'/tmp/a b'}`;
  assert.equal(sh`${inner} | wc -l`.text, `cat '/tmp/a b' | wc -l`);
  assert.equal(and(sh`true`, sh`echo ${'x y'}`).text, `true && echo 'x y'`);
});

test('a secret interpolated into a command is refused, so it never shows in ps', () => {
  const token = new Secret('K10-very-secret-token');
  assert.throws(
    () => sh`k3s server --token ${token as unknown as string}`,
    /a secret may not be put on a command line; pass it as stdin or file content/,
  );
});
