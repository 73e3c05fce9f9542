import type { EngineEvent, EventSink } from '../../engine/events.js';
import { colors } from './plan.js';

/**
 * Three ways to show the same events (STYLE.md 9): JSON lines for machines,
 * host-prefixed lines for logs and CI, and a compact live view on a terminal.
 */
export function jsonEvents(write: (s: string) => void): EventSink {
  return (e) => write(JSON.stringify({ time: new Date().toISOString(), ...e }) + '\n');
}

export function plainEvents(write: (s: string) => void, verbose = false): EventSink {
  return (e) => {
    const line = describe(e, verbose);
    if (line) write(line + '\n');
  };
}

/**
 * For commands that show no progress (plan, verify, status, kubeconfig):
 * only the warnings, which must never be lost in plain output (the token
 * adopted from a server, a literal secret in the cluster file).
 */
export function warningEvents(write: (s: string) => void): EventSink {
  return (e) => {
    if (e.type === 'warning') write(describe(e, false) + '\n');
  };
}

/**
 * On a terminal: a live tree. The running phase is redrawn in place, one line
 * per host with what it is doing now (or its last change, its failure, or
 * done); when the phase ends its final lines stay in the scrollback and the
 * next phase starts below. Warnings print above the tree.
 */
export function terminalEvents(write: (s: string) => void, now: () => number = Date.now): EventSink {
  const c = colors(true);
  type Row = { host: string; state: 'waiting' | 'working' | 'done' | 'failed'; text: string; changes: number; done: number; t0: number };
  let title = '';
  let rows: Row[] = [];
  let drawn = 0;
  const row = (host: string): Row => {
    let r = rows.find((x) => x.host === host);
    if (!r) rows.push((r = { host, state: 'waiting', text: 'waiting', changes: 0, done: 0, t0: now() }));
    return r;
  };
  const render = (): string => {
    const width = Math.max(8, ...rows.map((r) => r.host.length));
    const lines = [c.bold(`== ${title}`)];
    for (const r of rows) {
      const mark = r.state === 'done' ? c.green('✓') : r.state === 'failed' ? c.red('✗') : r.state === 'working' ? c.yellow('›') : c.dim('·');
      const count = r.changes ? c.dim(` [${r.done}/${r.changes}]`) : '';
      const secs = r.state === 'waiting' ? '' : c.dim(` ${((now() - r.t0) / 1000).toFixed(1)} s`);
      lines.push(`  ${mark} ${c.cyan(r.host.padEnd(width))}${count} ${r.text}${secs}`);
    }
    return lines.join('\n') + '\n';
  };
  const redraw = (): void => {
    // Move up over the lines drawn last time and clear to the end of screen.
    write((drawn ? `\x1b[${drawn}F\x1b[0J` : '') + render());
    drawn = rows.length + 1;
  };
  return (e) => {
    switch (e.type) {
      case 'phase-start':
        drawn = 0;
        title = e.title;
        rows = [];
        for (const h of e.hosts) row(h);
        if (e.hosts.length) redraw();
        return;
      case 'host-start': {
        const r = row(e.host);
        Object.assign(r, { state: 'working', text: 'starting', changes: e.changes, done: 0, t0: now() });
        break;
      }
      case 'change-start':
        row(e.host).text = e.summary;
        break;
      case 'change-done':
        row(e.host).done += 1;
        break;
      case 'wait':
        row(e.host).text = e.message;
        break;
      case 'host-done': {
        const r = row(e.host);
        Object.assign(r, { state: 'done', text: `${r.done} change${r.done === 1 ? '' : 's'}` });
        break;
      }
      case 'host-failed':
        Object.assign(row(e.host), { state: 'failed', text: c.red(e.error.split('\n')[0] ?? '') });
        break;
      case 'warning':
        // Above the tree: clear it, print, draw it again.
        write((drawn ? `\x1b[${drawn}F\x1b[0J` : '') + `${c.yellow('warning')} ${e.host ? `${e.host}: ` : ''}${e.message}\n`);
        drawn = 0;
        if (rows.length) break;
        return;
      case 'phase-done':
        if (rows.length) redraw();
        drawn = 0;
        rows = [];
        return;
      default:
        return;
    }
    if (rows.length) redraw();
  };
}

function describe(e: EngineEvent, verbose: boolean): string | null {
  switch (e.type) {
    case 'phase-start':
      return e.hosts.length ? `== ${e.title} (${e.hosts.join(', ')})` : null;
    case 'change-start':
      return verbose ? `${e.host}: ${e.summary} ...` : null;
    case 'change-done':
      return `${e.host}: ${e.summary} (${e.ms} ms)`;
    case 'host-failed':
      return `${e.host}: FAILED: ${e.error}`;
    case 'wait':
      return `${e.host}: ${e.message}`;
    case 'warning':
      return `warning: ${e.host ? `${e.host}: ` : ''}${e.message}`;
    case 'info':
      return `${e.host ? `${e.host}: ` : ''}${e.message}`;
    case 'connect':
    case 'facts':
      return verbose ? `${e.host}: ${e.type === 'facts' ? `${e.os} ${e.arch}` : `connecting to ${e.address}`}` : null;
    default:
      return null;
  }
}
