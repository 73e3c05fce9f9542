import type { Host } from '../transport/host.js';
import type { Command } from '../transport/quote.js';
import { unifiedDiff } from '../util/diff.js';
import { SecretSet, type Secret } from '../util/secret.js';
import { aptInstall, parsePkgQuery, pkgQuery, parseServiceState, serviceState, systemctl } from '../transport/os.js';
import type { Change } from './change.js';

/**
 * Most of a phase is "these packages, these files, these services": this
 * module turns such a declaration into observations and changes, so phases
 * stay declarative and every one of them restarts only what changed.
 */
export interface DesiredFile {
  path: string;
  /** The real content (may hold secrets). */
  content: string;
  /** Default 0o644. Files holding secrets must be 0o600 or 0o640. */
  mode?: number;
  owner?: string;
  group?: string;
  /** The daemon's own checker, run on the temp file before it goes live. */
  check?: (tmpPath: string) => Command;
  /**
   * The secret values in a text of this file's format (the renderer's own
   * reader). Applied to the content found on the host too, so the secret it
   * runs with now is masked in the plan's diff although this run never had it.
   */
  secretsIn?: (content: string) => string[];
}

export interface DesiredService {
  unit: string;
  /** Default true. */
  enabled?: boolean;
  /** Default true. */
  running?: boolean;
  /** Restart when one of these files changes. */
  restartOn?: string[];
  /** Reload (not restart) when one of these files changes. */
  reloadOn?: string[];
  /**
   * Other reasons the unit must restart, known to the phase (a new binary,
   * a new CA file): one restart covers them and the changed files.
   */
  restartFor?: string[];
  /**
   * How the restart (or start) is done. Default: `systemctl restart`, then
   * the owed-restart marker cleared. k3s servers queue it instead and wait
   * in settle.
   */
  restart?: (h: Host) => Promise<void>;
}

export interface Desired {
  packages?: string[];
  files?: DesiredFile[];
  /** Files that must not exist. */
  absent?: string[];
  services?: DesiredService[];
}

export interface ObservedFile {
  content: string | null;
  mode: number | null;
  owner: string | null;
  group: string | null;
}

export interface ObservedState {
  /** The host observed: every change diffDesired makes targets it. */
  host: string;
  packages: Map<string, string | null>;
  files: Map<string, ObservedFile>;
  services: Map<string, { active: boolean; enabled: boolean; exists: boolean }>;
  /** Restarts or reloads an earlier, interrupted apply left owed (pending markers). */
  pending: Map<string, PendingAction>;
}

/**
 * An apply can be cut off after it wrote a daemon's config but before the
 * daemon took it up. The re-run then finds the file in place and would
 * change nothing, leaving the daemon on its old config. So before a watched
 * file (or a binary) is replaced, a marker `PENDING_DIR/<unit>` names the
 * restart or reload owed, and it is removed once that ran; a marker found by
 * observe plans the restart again.
 */
export type PendingAction = 'restart' | 'reload';
export const PENDING_DIR = '/var/lib/k8s-ha/pending';
const pendingPath = (unit: string): string => `${PENDING_DIR}/${unit}`;

/** Record that `unit` owes a restart (which covers a reload) or a reload. */
export async function markPending(h: Host, unit: string, action: PendingAction): Promise<void> {
  const cur = (await h.readFile(pendingPath(unit)))?.toString('utf8').trim();
  if (cur === 'restart' || cur === action) return;
  await h.writeFile(pendingPath(unit), `${action}\n`, { mode: 0o600 });
}

/** The owed restart or reload of `unit` has been done (or queued to systemd). */
export async function clearPending(h: Host, unit: string): Promise<void> {
  await h.removeFile(pendingPath(unit));
}

export async function observeDesired(host: Host, d: Desired): Promise<ObservedState> {
  const packages = new Map<string, string | null>();
  const pk = d.packages ?? [];
  if (pk.length) {
    const r = await host.exec(pkgQuery(pk), { allowFailure: true });
    const got = parsePkgQuery(r.stdout);
    for (const p of pk) packages.set(p, got.get(p) ?? null);
  }
  const files = new Map<string, ObservedFile>();
  await Promise.all(
    [...(d.files ?? []).map((f) => f.path), ...(d.absent ?? [])].map(async (path) => {
      const meta = await host.stat(path);
      const buf = meta ? await host.readFile(path) : null;
      files.set(path, {
        content: buf ? buf.toString('utf8') : null,
        mode: meta?.mode ?? null,
        owner: meta?.owner ?? null,
        group: meta?.group ?? null,
      });
    }),
  );
  const services = new Map<string, { active: boolean; enabled: boolean; exists: boolean }>();
  const units = (d.services ?? []).map((s) => s.unit);
  if (units.length) {
    const r = await host.exec(serviceState(units), { allowFailure: true });
    const st = parseServiceState(r.stdout, units);
    for (const u of units) services.set(u, st.get(u) ?? { active: false, enabled: false, exists: false });
  }
  const pending = new Map<string, PendingAction>();
  await Promise.all(
    units.map(async (u) => {
      const m = (await host.readFile(pendingPath(u)))?.toString('utf8').trim();
      if (m === 'restart' || m === 'reload') pending.set(u, m);
    }),
  );
  return { host: host.name, packages, files, services, pending };
}

const octal = (m: number) => '0' + (m & 0o7777).toString(8);

/**
 * The changes that take `observed` to `desired`, in the order they must run.
 * Secrets found in the hosts' files are added to `secrets` (when it is the
 * run's SecretSet), so every later output of the run masks them too.
 */
export function diffDesired(d: Desired, o: ObservedState, secrets: Iterable<Secret> = []): Change[] {
  const host = o.host;
  const changes: Change[] = [];
  const missing = (d.packages ?? []).filter((p) => !o.packages.get(p));
  if (missing.length) {
    changes.push({
      action: 'create',
      target: { host, packages: missing },
      summary: `install ${missing.join(' ')}`,
      before: null,
      after: 'installed',
      apply: async (h) => void (await h.exec(aptInstall(missing), { timeoutMs: 900_000 })),
    });
  }
  const changedFiles = new Set<string>();
  // Which services a file's change obliges to restart or reload.
  const watchers = (path: string): { unit: string; action: PendingAction }[] =>
    (d.services ?? []).flatMap((sv): { unit: string; action: PendingAction }[] => {
      if (sv.running === false) return [];
      if (sv.restartOn?.includes(path)) return [{ unit: sv.unit, action: 'restart' }];
      return sv.reloadOn?.includes(path) ? [{ unit: sv.unit, action: 'reload' }] : [];
    });
  const owe = async (h: Host, path: string): Promise<void> => {
    for (const w of watchers(path)) await markPending(h, w.unit, w.action);
  };
  // A file missing now but owned by a package being installed may appear with
  // the package's default content; it is rewritten anyway, so count it changed.
  for (const f of d.files ?? []) {
    const cur = o.files.get(f.path);
    const mode = f.mode ?? 0o644;
    const owner = f.owner ?? 'root';
    const group = f.group ?? 'root';
    const contentDiffers = cur?.content !== f.content;
    const metaDiffers = !contentDiffers && cur !== undefined && (cur.mode !== mode || cur.owner !== owner || cur.group !== group);
    if (!contentDiffers && !metaDiffers) continue;
    changedFiles.add(f.path);
    const before = cur?.content ?? null;
    const what = before === null ? 'create' : contentDiffers ? 'update' : 'fix mode/owner of';
    const metaNote = metaDiffers ? ` (${cur?.mode != null ? octal(cur.mode) : '?'} ${cur?.owner}:${cur?.group} -> ${octal(mode)} ${owner}:${group})` : '';
    const mask = maskerFor(f, before, secrets);
    const shownBefore = before === null ? null : mask.mask(before);
    const shownAfter = mask.mask(f.content);
    changes.push({
      action: before === null ? 'create' : 'update',
      target: { host, file: f.path },
      summary: `${what} ${f.path}${metaNote}`,
      before: metaDiffers ? `${cur?.mode != null ? octal(cur.mode) : '?'} ${cur?.owner}:${cur?.group}` : shownBefore,
      after: metaDiffers ? `${octal(mode)} ${owner}:${group}` : shownAfter,
      detail: contentDiffers ? mask.mask(unifiedDiff(f.path, before, f.content)) : undefined,
      apply: async (h) => {
        await owe(h, f.path);
        await h.writeFile(f.path, f.content, { mode, owner, group, check: f.check });
      },
    });
  }
  for (const path of d.absent ?? []) {
    const cur = o.files.get(path)?.content;
    if (cur == null) continue;
    changedFiles.add(path);
    changes.push({
      action: 'delete',
      target: { host, file: path },
      summary: `remove ${path}`,
      before: (secrets instanceof SecretSet ? secrets : new SecretSet(secrets)).mask(cur),
      after: null,
      apply: async (h) => {
        await owe(h, path);
        await h.removeFile(path);
      },
    });
  }
  const unitFileChanged = [...changedFiles].some((p) => p.startsWith('/etc/systemd/') || p.startsWith('/lib/systemd/'));
  if (unitFileChanged) {
    changes.push({
      action: 'reload',
      target: { host, unit: 'systemd' },
      summary: 'systemctl daemon-reload',
      apply: async (h) => void (await h.exec(systemctl('daemon-reload'))),
    });
  }
  for (const s of d.services ?? []) {
    const cur = o.services.get(s.unit) ?? { active: false, enabled: false, exists: false };
    const wantEnabled = s.enabled ?? true;
    const wantRunning = s.running ?? true;
    const unit = { host, unit: s.unit };
    if (wantEnabled !== cur.enabled) {
      const act = wantEnabled ? 'enable' : 'disable';
      changes.push({
        action: 'update',
        target: unit,
        summary: `${act} ${s.unit}`,
        before: cur.enabled ? 'enabled' : 'disabled',
        after: wantEnabled ? 'enabled' : 'disabled',
        apply: async (h) => void (await h.exec(systemctl(act, s.unit))),
      });
    }
    if (!wantRunning) {
      if (cur.active) {
        changes.push({ action: 'update', target: unit, summary: `stop ${s.unit}`, before: 'active', after: 'inactive', apply: async (h) => void (await h.exec(systemctl('stop', s.unit))) });
      }
      continue;
    }
    const restartFor = [...(s.restartOn ?? []).filter((p) => changedFiles.has(p)), ...(s.restartFor ?? [])];
    const reloadFor = (s.reloadOn ?? []).filter((p) => changedFiles.has(p));
    const owed = o.pending?.get(s.unit);
    const restart = s.restart ?? (async (h: Host) => (await h.exec(systemctl('restart', s.unit)), await clearPending(h, s.unit)));
    // A package install may start a daemon with its default config, so a
    // service inactive now may be active when this runs: restart covers both.
    if (!cur.active || restartFor.length || owed === 'restart') {
      const summary = !cur.active ? `start ${s.unit}` : restartFor.length ? `restart ${s.unit} (${restartFor.join(', ')} changed)` : `restart ${s.unit} (owed since an interrupted apply)`;
      changes.push({ action: 'restart', target: unit, summary, before: cur.active ? 'active' : 'inactive', after: 'active', apply: restart });
    } else if (reloadFor.length || owed === 'reload') {
      const summary = reloadFor.length ? `reload ${s.unit} (${reloadFor.join(', ')} changed)` : `reload ${s.unit} (owed since an interrupted apply)`;
      changes.push({ action: 'reload', target: unit, summary, apply: async (h) => (await h.exec(systemctl('reload', s.unit)), await clearPending(h, s.unit)) });
    }
  }
  return changes;
}

/**
 * The masker for one file's diff: every secret known, plus those the file
 * holds on the host and in its new content. A line whose secret changed
 * still shows as changed (`-token: ********` / `+token: ********`), and
 * neither side shows a value — in the diff, nor in `before`/`after`.
 */
function maskerFor(f: DesiredFile, before: string | null, secrets: Iterable<Secret>): SecretSet {
  const found = [...(before !== null && f.secretsIn ? f.secretsIn(before) : []), ...(f.secretsIn ? f.secretsIn(f.content) : [])];
  if (secrets instanceof SecretSet) {
    secrets.add(...found);
    return secrets;
  }
  return new SecretSet([...secrets, ...found]);
}

/** A one-off command on `host` as a change (SQL, a kubectl apply), shown in the plan by its summary. */
export function commandChange(target: Change['target'], summary: string, cmd: Command, stdin?: string | Secret): Change {
  return { action: 'run', target, summary, apply: async (h) => void (await h.exec(cmd, stdin === undefined ? {} : { stdin })) };
}
