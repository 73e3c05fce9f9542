import { InterruptedError } from '../engine/errors.js';
import { K3S_BINARY_PATH } from '../render/k3s.js';
import type { Host } from '../transport/host.js';
import { sh } from '../transport/quote.js';
import { DIFFERENT_TOKEN_LOG } from './k3s-token.js';

/**
 * Waiting for k3s to be healthy, bounded, with the reason when it is not.
 * FACTS: the apiserver runs with anonymous auth off, so `/readyz` needs
 * credentials; `/ping` answers `pong` unauthenticated but proves only that
 * the process listens. A server is ready when both answer.
 */

export const ADMIN_KUBECONFIG = '/etc/rancher/k3s/k3s.yaml';

/** `k3s kubectl` with the admin kubeconfig, as root on a server. */
export function kubectlArgs(...args: string[]): string[] {
  return [K3S_BINARY_PATH, 'kubectl', '--kubeconfig', ADMIN_KUBECONFIG, '--request-timeout=5s', ...args];
}

/**
 * One probe round trip: `ping=`, `readyz=`, `active=`, `entered=`,
 * `tokenlog=` lines. The token message counts only when logged after
 * `cursor` (the journal's position when the restart was queued): a crash
 * loop before the restart may have logged it with the old token.
 */
export function serverProbe(cursor: string | null): ReturnType<typeof sh> {
  const journal = cursor ? sh`journalctl -u k3s ${`--after-cursor=${cursor}`} --no-pager -o cat` : sh`journalctl -u k3s --no-pager -o cat`;
  // curl when present (it reaches /ping without credentials, as the LB's
  // checks do); otherwise kubectl's client, which the binary always has.
  return sh`if command -v curl >/dev/null 2>&1; then p=$(curl -ksS --max-time 5 https://127.0.0.1:6443/ping 2>&1); else p=$(${kubectlArgs('get', '--raw', '/ping')} 2>&1); fi; printf 'ping=%s\n' "$(printf %s "$p" | tr '\n' ' ')"; r=$(${kubectlArgs('get', '--raw', '/readyz')} 2>&1); printf 'readyz=%s\n' "$(printf %s "$r" | tail -n 3 | tr '\n' ' ')"; printf 'active=%s\n' "$(systemctl is-active k3s 2>/dev/null)"; printf 'entered=%s\n' "$(systemctl show -p ActiveEnterTimestampMonotonic --value k3s 2>/dev/null)"; if ${journal} 2>/dev/null | grep -q -F ${DIFFERENT_TOKEN_LOG}; then echo tokenlog=yes; fi`;
}

export interface ServerProbe {
  ping: string;
  readyz: string;
  active: string;
  /** systemd's ActiveEnterTimestampMonotonic (µs): when the unit last signalled READY=1. */
  entered: number;
  differentToken: boolean;
}

export function parseServerProbe(stdout: string): ServerProbe {
  const kv = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return { ping: kv.get('ping') ?? '', readyz: kv.get('readyz') ?? '', active: kv.get('active') ?? '', entered: Number(kv.get('entered')) || 0, differentToken: kv.get('tokenlog') === 'yes' };
}

/** Why a probe is not ready yet, in words; null when ready. */
export function serverNotReady(p: ServerProbe): string | null {
  if (p.ping !== 'pong') return `/ping on 127.0.0.1:6443 answered ${p.ping ? JSON.stringify(p.ping) : 'nothing'} (k3s ${p.active || 'state unknown'})`;
  if (p.readyz !== 'ok') return `/readyz answered ${p.readyz ? JSON.stringify(p.readyz) : 'nothing'}`;
  return null;
}

/** The last lines k3s logged, for an error message; empty when the journal cannot be read. */
export async function journalTail(host: Host, unit: string, lines = 15): Promise<string> {
  const r = await host.exec(sh`journalctl -u ${unit} -n ${lines} --no-pager -o short-iso`, { allowFailure: true, timeoutMs: 15_000 }).catch(() => null);
  return r && r.code === 0 ? r.stdout.trimEnd() : '';
}

export interface WaitOptions {
  timeoutMs: number;
  intervalMs: number;
  signal?: AbortSignal;
}

/**
 * Calls `probe` until it returns null (ready) or the time is up; returns the
 * last reason when it gave up. A probe that throws counts as not ready (its
 * message is the reason); `fatal` ends the wait at once.
 */
export async function waitUntil(opts: WaitOptions, probe: () => Promise<string | null>, fatal?: () => string | null): Promise<string | null> {
  const deadline = Date.now() + opts.timeoutMs;
  let last = 'not checked yet';
  for (;;) {
    if (opts.signal?.aborted) throw new InterruptedError();
    try {
      const why = await probe();
      if (why === null) return null;
      last = why;
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    const f = fatal?.();
    if (f) return f;
    if (Date.now() + opts.intervalMs > deadline) return last;
    await new Promise((r) => setTimeout(r, opts.intervalMs));
  }
}

export function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

/** A bounded wait that ran out, naming the host, the last thing seen and the log. */
export class NotReadyError extends Error {
  constructor(
    readonly host: string,
    what: string,
    readonly lastError: string,
    readonly journal: string,
    hint: string,
  ) {
    super(`${host}: ${what}; last seen: ${lastError}${journal ? `\n  last lines of the journal:\n    ${journal.split('\n').join('\n    ')}` : ''}\n  hint: ${hint}`);
    this.name = 'NotReadyError';
  }
}
