import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { remoteCommand, sudoHint, SUDO_PROMPT } from '../../src/transport/remote-command.js';
import { parseStat } from '../../src/transport/remote-files.js';
import { sh } from '../../src/transport/quote.js';

const cmd = sh`echo ${"it's $HOME"} | tr a-z A-Z`;

test('a command runs in sh -c under a host-side timeout a little longer than the caller waits', () => {
  const text = remoteCommand(cmd, 'none', 1500);
  assert.match(text, /^timeout -k 5 4 sh -c '/);
  assert.equal(execFileSync('sh', ['-c', text], { encoding: 'utf8' }), "IT'S $HOME\n");
});

test('sudo without a password uses -n, so a host that wants one fails at once instead of waiting', () => {
  assert.match(remoteCommand(cmd, 'sudo', 120_000), /^sudo -n -- timeout -k 5 122 sh -c /);
});

test('sudo with a password reads it from stdin after our own prompt; the text holds no password', () => {
  const text = remoteCommand(cmd, 'sudo-password', 120_000);
  assert.ok(text.startsWith(`sudo -S -p '${SUDO_PROMPT}' -- timeout`), text);
  assert.ok(!SUDO_PROMPT.includes('%'), 'sudo would expand % escapes in the prompt');
});

test("sudo's usual refusals come with how to fix them", () => {
  assert.match(sudoHint('sudo: a password is required\n', 'ops') ?? '', /sudo asks user "ops" for a password/);
  assert.match(sudoHint('ops is not in the sudoers file.  This incident will be reported.\n', 'ops') ?? '', /may not use sudo/);
  assert.match(sudoHint('sh: 1: sudo: not found\n', 'ops') ?? '', /sudo is not installed/);
  assert.equal(sudoHint('cat: /x: No such file or directory', 'ops'), undefined);
});

test('stat output is read as octal mode, owner, group, size and content hash', () => {
  assert.deepEqual(parseStat('640 root k3s 12\nabc123  -\n', '/etc/x'), { mode: 0o640, owner: 'root', group: 'k3s', size: 12, sha256: 'abc123' });
  assert.deepEqual(parseStat('4755 root root 4096\n', '/d'), { mode: 0o4755, owner: 'root', group: 'root', size: 4096, sha256: '' });
  assert.throws(() => parseStat('garbage', '/x'), /stat \/x: unexpected output/);
});
