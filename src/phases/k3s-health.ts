import { InterruptedError } from '../engine/errors.js';
import { CommandTimeoutError, ConnectionError } from '../transport/host.js';
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
 * `cursor=`, `tokenlog=` and `failing=` lines. k3s's journal after `cursor`
 * (its position when the restart was queued) is read once, for both of its
 * lines: the token message counts only when logged after it (a crash loop
 * before the restart may have logged it with the old token), and `failing=`
 * takes the [-] checks of the last "Waiting for kube-apiserver" line.
 */
export function serverProbe(cursor: string | null): ReturnType<typeof sh> {
  const journal = cursor ? sh`journalctl -u k3s ${`--after-cursor=${cursor}`} --no-pager -o cat` : sh`journalctl -u k3s --no-pager -o cat`;
  // curl when present (it reaches /ping without credentials, as the LB's
  // checks do); otherwise kubectl's client, which the binary always has.
  return sh`if command -v curl >/dev/null 2>&1; then p=$(curl -ksS --max-time 5 https://127.0.0.1:6443/ping 2>&1); else p=$(${kubectlArgs('get', '--raw', '/ping')} 2>&1); fi; printf 'ping=%s\n' "$(printf %s "$p" | tr '\n' ' ')"; r=$(${kubectlArgs('get', '--raw', '/readyz')} 2>&1); printf 'readyz=%s\n' "$(printf %s "$r" | tail -n 3 | tr '\n' ' ')"; printf 'active=%s\n' "$(systemctl is-active k3s 2>/dev/null)"; printf 'entered=%s\n' "$(systemctl show -p ActiveEnterTimestampMonotonic --value k3s 2>/dev/null)"; printf 'cursor=%s\n' "$(journalctl -u k3s -n 1 --show-cursor -q -o cat 2>/dev/null | sed -n 's/^-- cursor: //p')"; m=$(${journal} 2>/dev/null | grep -F -e ${DIFFERENT_TOKEN_LOG} -e ${K3S_WAITING_APISERVER_LOG}); if printf '%s\n' "$m" | grep -q -F ${DIFFERENT_TOKEN_LOG}; then echo tokenlog=yes; fi; printf 'failing=%s\n' "$(printf '%s\n' "$m" | grep -F ${K3S_WAITING_APISERVER_LOG} | tail -n 1 | grep -o '\\[-\\][A-Za-z0-9/_.-]*' | sed 's/^\\[-\\]//' | tr '\n' ' ')"`;
}

/** What k3s logs every 15 s while its API server's /readyz fails, with each check as [+] or [-]. */
export const K3S_WAITING_APISERVER_LOG = 'Waiting for kube-apiserver to be ready';

/**
 * A readiness check that, once failed, never passes without a restart of
 * the API server: autoregister-completion waits until every built-in
 * APIService is in the API server's cache. kube-aggregator's autoregister
 * controller creates each one once and records it done when the create
 * succeeds (autoregister_controller.go, checkAPIService); kine v0.17
 * reports a create whose INSERT failed as done when its read-back finds no
 * row (README "Galera datastore"), so a datastore connection cut while k3s
 * starts (seen in the lab on a Galera bare apply) leaves one APIService
 * never written and the check failed for good. A restart creates them again.
 */
export const NEVER_RECOVERING_CHECKS: readonly string[] = ['autoregister-completion'];

export interface ServerProbe {
  /** The checks the last "Waiting for kube-apiserver" line since the cursor says fail (no poststarthook/ prefix for this one). */
  failing: string[];
  ping: string;
  readyz: string;
  active: string;
  /** systemd's ActiveEnterTimestampMonotonic (µs): when the unit last signalled READY=1. */
  entered: number;
  differentToken: boolean;
  /** The journal's last cursor: it moves while k3s logs, i.e. while it works. */
  cursor: string;
}

export function parseServerProbe(stdout: string): ServerProbe {
  const kv = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return { failing: (kv.get('failing') ?? '').split(/\s+/).filter(Boolean), ping: kv.get('ping') ?? '', readyz: kv.get('readyz') ?? '', active: kv.get('active') ?? '', entered: Number(kv.get('entered')) || 0, differentToken: kv.get('tokenlog') === 'yes', cursor: kv.get('cursor') ?? '' };
}

/**
 * The check that holds the API server back for good (NEVER_RECOVERING_CHECKS),
 * when it is the only failing one and the server answers /ping; else null.
 */
export function stuckBootCheck(p: ServerProbe): string | null {
  if (p.ping !== 'pong' || p.failing.length === 0) return null;
  const stuck = p.failing.map((c) => c.replace(/^poststarthook\//, ''));
  return stuck.every((c) => NEVER_RECOVERING_CHECKS.includes(c)) ? stuck.join(', ') : null;
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
  /**
   * Give up early once what the probe watches has not changed for this long
   * (a frozen host, a hung daemon), long before `timeoutMs`. Default: no such bound.
   */
  noProgressMs?: number;
}

/**
 * What one probe saw: ready (null), or why not. `progress` is what changes
 * while the host is working on it (the unit's state, the journal's cursor);
 * without it, the reason itself.
 */
export type ProbeResult = string | null | { why: string; progress: string };

/** Why a wait ended without success: the last thing seen, and whether it stopped because nothing changed. */
export interface WaitFailure {
  last: string;
  /** The last answer the host gave, when the last try got none (it froze, or the connection dropped). */
  lastAnswer?: string;
  /** Set when nothing changed for noProgressMs: how long it had been the same. */
  stalledMs?: number;
}

/**
 * Calls `probe` until it returns null (ready), the time is up, or nothing it
 * sees changes for `noProgressMs`; returns null when ready, else the last
 * reason. A probe that throws counts as not ready (its message is the reason
 * and the progress); `fatal` ends the wait at once.
 */
export async function waitUntil(opts: WaitOptions, probe: () => Promise<ProbeResult>, fatal?: () => string | null): Promise<WaitFailure | null> {
  const start = Date.now();
  const deadline = start + opts.timeoutMs;
  let last = 'not checked yet';
  let lastAnswer: string | undefined;
  let answered = false;
  let progress: string | undefined;
  let changedAt = start;
  for (;;) {
    if (opts.signal?.aborted) throw new InterruptedError();
    let seen: string;
    try {
      const r = await probe();
      if (r === null) return null;
      last = typeof r === 'string' ? r : r.why;
      seen = typeof r === 'string' ? r : r.progress;
      lastAnswer = last;
      answered = true;
    } catch (e) {
      last = noAnswerText(e);
      seen = last;
      answered = false;
    }
    const now = Date.now();
    if (seen !== progress) {
      progress = seen;
      changedAt = now;
    }
    const f = fatal?.();
    if (f) return { last: f };
    const before = !answered && lastAnswer !== undefined ? { lastAnswer } : {};
    if (opts.noProgressMs !== undefined && now - changedAt >= opts.noProgressMs) return { last, stalledMs: now - changedAt, ...before };
    if (now + opts.intervalMs > deadline) return { last, ...before };
    await new Promise((r) => setTimeout(r, opts.intervalMs));
  }
}

export function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

/** A probe that got no answer, in a few words (not the whole probe command). */
function noAnswerText(e: unknown): string {
  if (e instanceof ConnectionError) return `no answer from ${e.host}: ${e.reason}`;
  if (e instanceof CommandTimeoutError) return `no answer from ${e.host} within ${seconds(e.timeoutMs)}`;
  return e instanceof Error ? e.message.split('\n')[0]! : String(e);
}

/** "X; the last answer before that: Y", for an error message. */
export function lastSeenText(f: WaitFailure): string {
  return f.lastAnswer !== undefined && f.lastAnswer !== f.last ? `${f.last}; the last answer before that: ${f.lastAnswer}` : f.last;
}

/** What a server probe's progress is: everything it read (the answers, the unit's state, the journal's cursor). */
export function serverProgress(p: ServerProbe): string {
  return JSON.stringify([p.ping, p.readyz, p.active, p.entered, p.cursor]);
}

/** How a failed wait reads in an error: "not ready within 5 m" or "made no progress for 45 s". */
export function waitFailureText(what: string, f: WaitFailure, timeoutMs: number): string {
  return f.stalledMs !== undefined ? `${what}: no progress for ${seconds(f.stalledMs)} (waits.noProgress), well before the ${seconds(timeoutMs)} bound` : `${what} within ${seconds(timeoutMs)}`;
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
