import { randomBytes } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { dirname } from 'node:path';
import { sh } from '../transport/quote.js';
import type { Host } from '../transport/host.js';
import { createExclusive, fileAge, touchFile } from '../transport/os.js';
import type { EventSink } from './events.js';

/**
 * The cluster lock: two applies (or an apply and a restore) must never
 * change one cluster at once — they would interleave restarts and undo each
 * other's files. The lock is a file on one host of the cluster (so it holds
 * across the machines k8s-ha runs from), made with an exclusive create, and
 * kept fresh by a heartbeat while the run lasts. A lock whose heartbeat
 * stopped (the run was killed, its machine lost the network) is stale: it is
 * explained, never broken silently; `--break-lock` breaks it deliberately.
 */
export const LOCK_PATH = '/var/lib/k8s-ha/lock';
/** How often a holder touches the lock. */
export const HEARTBEAT_MS = 30_000;
/** No heartbeat for this long: the holder is gone (four heartbeats missed). */
export const STALE_AFTER_S = 120;

export interface LockInfo {
  /** `user@machine` that holds it. */
  holder: string;
  pid: number;
  /** The command that took it (`apply`, `restore`, `node remove`). */
  command: string;
  /** ISO time it was taken. */
  since: string;
  /** Random: tells this run's lock from another's on release. */
  id: string;
}

export class LockedError extends Error {
  constructor(
    readonly host: string,
    readonly info: LockInfo | null,
    readonly ageS: number | null,
  ) {
    const who = info ? `${info.holder} (pid ${info.pid}, \`k8s-ha ${info.command}\` since ${info.since})` : 'an unreadable lock';
    const stale = ageS !== null && ageS > STALE_AFTER_S;
    const beat = ageS === null ? '' : `; its last heartbeat was ${ageS} s ago`;
    super(
      stale
        ? `the cluster is locked by ${who}${beat}, so that run looks gone (killed, or its machine lost the network); the lock is ${LOCK_PATH} on ${host}\n  fix: if no other k8s-ha runs on this cluster, break the lock deliberately with --break-lock and run again (the cluster converges from wherever that run stopped)`
        : `the cluster is locked by ${who}${beat}: another run is changing it now (lock ${LOCK_PATH} on ${host})\n  fix: wait for it to finish and run again; only if you are sure it is gone, use --break-lock`,
    );
    this.name = 'LockedError';
  }

  get stale(): boolean {
    return this.ageS !== null && this.ageS > STALE_AFTER_S;
  }
}

function parseInfo(buf: Buffer | null): LockInfo | null {
  if (!buf) return null;
  try {
    const v = JSON.parse(buf.toString('utf8')) as Partial<LockInfo>;
    return typeof v.holder === 'string' && typeof v.id === 'string' ? (v as LockInfo) : null;
  } catch {
    return null;
  }
}

export interface AcquireOptions {
  command: string;
  /** Remove a lock someone else holds (after saying whose it was). Default false. */
  breakLock?: boolean;
  events?: EventSink;
  /** Default HEARTBEAT_MS. */
  heartbeatMs?: number;
}

/**
 * The ids of the locks this process holds now. A lock found with this
 * process's holder and pid but not listed was left by an earlier run in this
 * process that could not release it (its connection dropped): that run is
 * over for certain. Process-wide on purpose: it describes the process.
 */
const heldHere = new Set<string>();

/** Whether the holder is certainly gone: this machine and user, and its process ended (or it is an ended run of this one). */
function holderGone(held: LockInfo, me: LockInfo): boolean {
  if (held.holder !== me.holder) return false;
  if (held.pid === process.pid) return !heldHere.has(held.id);
  try {
    process.kill(held.pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export class ClusterLock {
  private timer: NodeJS.Timeout | null = null;

  private constructor(
    readonly host: Host,
    readonly info: LockInfo,
  ) {}

  /** Take the lock on `host`, or throw LockedError naming its holder and the way out. */
  static async acquire(host: Host, opts: AcquireOptions): Promise<ClusterLock> {
    const info: LockInfo = {
      holder: `${safeUser()}@${hostname()}`,
      pid: process.pid,
      command: opts.command,
      since: new Date().toISOString(),
      id: randomBytes(8).toString('hex'),
    };
    for (let attempt = 0; ; attempt++) {
      const r = await host.exec(createExclusive(LOCK_PATH), { stdin: JSON.stringify(info) + '\n', allowFailure: true });
      if (r.code === 0) break;
      const held = parseInfo(await host.readFile(LOCK_PATH));
      const age = await host.exec(fileAge(LOCK_PATH), { allowFailure: true });
      if (age.code !== 0 && attempt === 0) continue; // released between the two calls
      const ageS = age.code === 0 ? Number(age.stdout.trim()) : null;
      const gone = held !== null && holderGone(held, info);
      if ((!opts.breakLock && !gone) || attempt > 0) throw new LockedError(host.name, held, Number.isFinite(ageS) ? ageS : null);
      const whose = held ? `${held.holder} (pid ${held.pid}, \`k8s-ha ${held.command}\` since ${held.since})` : 'an unreadable lock';
      opts.events?.({
        type: 'warning',
        host: host.name,
        message: gone
          ? `taking over the cluster lock left by ${whose}: that run ended without releasing it (its process is gone)`
          : `breaking the cluster lock held by ${whose}${ageS !== null ? `, last heartbeat ${ageS} s ago` : ''}, as --break-lock asks`,
      });
      await host.removeFile(LOCK_PATH);
    }
    const lock = new ClusterLock(host, info);
    heldHere.add(info.id);
    lock.timer = setInterval(() => void host.exec(touchFile(LOCK_PATH), { allowFailure: true }).catch(() => undefined), opts.heartbeatMs ?? HEARTBEAT_MS);
    lock.timer.unref();
    return lock;
  }

  /** Remove the lock if it is still this run's (a broken and re-taken lock is left to its new holder). */
  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    heldHere.delete(this.info.id);
    const held = parseInfo(await this.host.readFile(LOCK_PATH));
    if (held?.id === this.info.id) {
      await this.host.removeFile(LOCK_PATH);
      // Its folder too when nothing else is in it (after a reset: the host as it was before k8s-ha).
      await this.host.exec(sh`rmdir ${dirname(LOCK_PATH)}`, { allowFailure: true, sudo: true }).catch(() => undefined);
    }
  }
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? 'unknown');
  }
}
