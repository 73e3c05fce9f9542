import type { Host } from '../transport/host.js';
import type { Command } from '../transport/quote.js';
import { unifiedDiff } from '../util/diff.js';
import { maskSecrets, type Secret } from '../util/secret.js';
import { aptInstall, parsePkgQuery, pkgQuery, parseServiceState, serviceState, systemctl } from '../transport/os.js';
import type { Change } from './phase.js';

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
  packages: Map<string, string | null>;
  files: Map<string, ObservedFile>;
  services: Map<string, { active: boolean; enabled: boolean; exists: boolean }>;
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
  return { packages, files, services };
}

const octal = (m: number) => '0' + (m & 0o7777).toString(8);

/** The changes that take `observed` to `desired`, in the order they must run. */
export function diffDesired(d: Desired, o: ObservedState, secrets: Secret[] = []): Change[] {
  const changes: Change[] = [];
  const missing = (d.packages ?? []).filter((p) => !o.packages.get(p));
  if (missing.length) {
    changes.push({
      kind: 'package',
      summary: `install ${missing.join(' ')}`,
      apply: async (h) => void (await h.exec(aptInstall(missing), { timeoutMs: 900_000 })),
    });
  }
  const changedFiles = new Set<string>();
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
    changes.push({
      kind: 'file',
      summary: `${what} ${f.path}${metaNote}`,
      detail: contentDiffers
        ? unifiedDiff(f.path, before === null ? null : maskSecrets(before, secrets), maskSecrets(f.content, secrets))
        : undefined,
      apply: async (h) => h.writeFile(f.path, f.content, { mode, owner, group, check: f.check }),
    });
  }
  for (const path of d.absent ?? []) {
    if (o.files.get(path)?.content == null) continue;
    changedFiles.add(path);
    changes.push({ kind: 'remove', summary: `remove ${path}`, apply: (h) => h.removeFile(path) });
  }
  const unitFileChanged = [...changedFiles].some((p) => p.startsWith('/etc/systemd/') || p.startsWith('/lib/systemd/'));
  if (unitFileChanged) {
    changes.push({ kind: 'service', summary: 'systemctl daemon-reload', apply: async (h) => void (await h.exec(systemctl('daemon-reload'))) });
  }
  for (const s of d.services ?? []) {
    const cur = o.services.get(s.unit) ?? { active: false, enabled: false, exists: false };
    const wantEnabled = s.enabled ?? true;
    const wantRunning = s.running ?? true;
    if (wantEnabled !== cur.enabled) {
      const act = wantEnabled ? 'enable' : 'disable';
      changes.push({ kind: 'service', summary: `${act} ${s.unit}`, apply: async (h) => void (await h.exec(systemctl(act, s.unit))) });
    }
    if (!wantRunning) {
      if (cur.active) changes.push({ kind: 'service', summary: `stop ${s.unit}`, apply: async (h) => void (await h.exec(systemctl('stop', s.unit))) });
      continue;
    }
    const restartFor = (s.restartOn ?? []).filter((p) => changedFiles.has(p));
    const reloadFor = (s.reloadOn ?? []).filter((p) => changedFiles.has(p));
    // A package install may start a daemon with its default config, so a
    // service inactive now may be active when this runs: restart covers both.
    if (!cur.active || restartFor.length) {
      const summary = cur.active ? `restart ${s.unit} (${restartFor.join(', ')} changed)` : `start ${s.unit}`;
      changes.push({ kind: 'service', summary, apply: async (h) => void (await h.exec(systemctl('restart', s.unit))) });
    } else if (reloadFor.length) {
      changes.push({ kind: 'service', summary: `reload ${s.unit} (${reloadFor.join(', ')} changed)`, apply: async (h) => void (await h.exec(systemctl('reload', s.unit))) });
    }
  }
  return changes;
}

/** A one-off command as a change (SQL, a kubectl apply): shown in the plan by its summary. */
export function commandChange(kind: Change['kind'], summary: string, cmd: Command, stdin?: string | Secret): Change {
  return { kind, summary, apply: async (h) => void (await h.exec(cmd, stdin === undefined ? {} : { stdin })) };
}

