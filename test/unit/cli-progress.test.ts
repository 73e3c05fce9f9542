import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EngineEvent } from '../../src/engine/events.js';
import { jsonEvents, plainEvents, terminalEvents } from '../../src/cli/output/progress.js';

/** A tiny terminal: applies "move up N lines + clear to end" and plain text. */
function screen(): { write: (s: string) => void; lines: () => string[] } {
  let lines: string[] = [''];
  return {
    write: (s) => {
      for (const part of s.split(/(\x1b\[\d+F\x1b\[0J)/)) {
        const m = /^\x1b\[(\d+)F\x1b\[0J$/.exec(part);
        if (m) {
          lines = lines.slice(0, Math.max(0, lines.length - 1 - Number(m[1]))).concat(['']);
          continue;
        }
        const chunks = part.split('\n');
        lines[lines.length - 1] += chunks[0];
        for (const c of chunks.slice(1)) lines.push(c);
      }
    },
    lines: () => lines.map((l) => l.replace(/\x1b\[[0-9;]*m/g, '')).filter((l, i, a) => i < a.length - 1 || l !== ''),
  };
}

const run: EngineEvent[] = [
  { type: 'phase-start', phase: 'lb', title: 'Load balancer', hosts: ['infra', 'lb2'] },
  { type: 'host-start', phase: 'lb', host: 'infra', changes: 2 },
  { type: 'change-start', phase: 'lb', host: 'infra', summary: 'install nginx-light' },
  { type: 'change-done', phase: 'lb', host: 'infra', summary: 'install nginx-light', ms: 5 },
  { type: 'host-start', phase: 'lb', host: 'lb2', changes: 1 },
  { type: 'change-start', phase: 'lb', host: 'lb2', summary: 'update /etc/nginx/nginx.conf' },
  { type: 'host-failed', phase: 'lb', host: 'lb2', error: 'lb2: nginx -t failed\nmore detail' },
  { type: 'change-start', phase: 'lb', host: 'infra', summary: 'create /etc/nginx/nginx.conf' },
  { type: 'change-done', phase: 'lb', host: 'infra', summary: 'create /etc/nginx/nginx.conf', ms: 5 },
  { type: 'host-done', phase: 'lb', host: 'infra', ms: 10 },
  { type: 'phase-done', phase: 'lb', changed: 1, ms: 20 },
  { type: 'phase-start', phase: 'ds', title: 'Datastore', hosts: ['infra'] },
  { type: 'host-start', phase: 'ds', host: 'infra', changes: 1 },
  { type: 'wait', phase: 'ds', host: 'infra', message: 'waiting for MariaDB' },
];

test('on a terminal, each phase is a tree redrawn in place: one line per host with its progress', () => {
  const s = screen();
  const sink = terminalEvents(s.write, () => 0);
  for (const e of run) sink(e);
  assert.deepEqual(s.lines(), [
    '== Load balancer',
    '  ✓ infra    [2/2] 2 changes 0.0 s',
    '  ✗ lb2      [0/1] lb2: nginx -t failed 0.0 s',
    '== Datastore',
    '  › infra    [0/1] waiting for MariaDB 0.0 s',
  ]);
});

test('off a terminal, progress is plain host-prefixed lines without escape codes', () => {
  let out = '';
  const sink = plainEvents((t) => void (out += t));
  for (const e of run) sink(e);
  assert.ok(!out.includes('\x1b['));
  assert.match(out, /^== Load balancer \(infra, lb2\)$/m);
  assert.match(out, /^infra: install nginx-light \(5 ms\)$/m);
  assert.match(out, /^lb2: FAILED: lb2: nginx -t failed/m);
});

test('--json progress is one JSON object per line with a time', () => {
  let out = '';
  const sink = jsonEvents((t) => void (out += t));
  for (const e of run) sink(e);
  const lines = out.trim().split('\n').map((l) => JSON.parse(l) as { type: string; time: string });
  assert.equal(lines.length, run.length);
  assert.equal(lines[0]!.type, 'phase-start');
  assert.match(lines[0]!.time, /^\d{4}-\d\d-\d\dT/);
});
