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
 * On a terminal: phase headers, then one line per change as it completes,
 * with the host in colour and the elapsed time. (A redrawn tree is not worth
 * its complexity for a handful of hosts; this stays readable in scrollback.)
 */
export function terminalEvents(write: (s: string) => void): EventSink {
  const c = colors(true);
  return (e) => {
    switch (e.type) {
      case 'phase-start':
        if (e.hosts.length) write(c.bold(`== ${e.title}`) + c.dim(` (${e.hosts.join(', ')})`) + '\n');
        return;
      case 'change-done':
        write(`  ${c.cyan(e.host.padEnd(12))} ${c.green('✓')} ${e.summary} ${c.dim(`${e.ms} ms`)}\n`);
        return;
      case 'host-failed':
        write(`  ${c.cyan(e.host.padEnd(12))} ${c.red('✗')} ${e.error}\n`);
        return;
      case 'wait':
        write(`  ${c.cyan(e.host.padEnd(12))} … ${e.message}\n`);
        return;
      case 'warning':
        write(`  ${c.yellow('warning')} ${e.host ? `${e.host}: ` : ''}${e.message}\n`);
        return;
      default:
        return;
    }
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
