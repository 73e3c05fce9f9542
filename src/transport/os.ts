import { dirname } from 'node:path';
import { Command, quote } from './quote.js';

/**
 * The Debian/Ubuntu commands phases use to read and change packages and
 * services, and the parsers of their output. The in-memory host answers the
 * same commands (it reads `OsCommand.op`), so engine tests and real hosts go
 * through one set of command texts.
 */

export type SystemctlAction =
  | 'start'
  | 'stop'
  | 'restart'
  | 'reload'
  | 'enable'
  | 'disable'
  | 'is-active'
  | 'is-enabled'
  | 'daemon-reload';

/** What an OS command does, for hosts that model it instead of running it. */
export type OsOp =
  | { kind: 'pkgQuery'; names: readonly string[] }
  | { kind: 'aptInstall'; names: readonly string[] }
  | { kind: 'aptPurge'; names: readonly string[] }
  | { kind: 'systemctl'; action: SystemctlAction; unit?: string }
  | { kind: 'serviceState'; units: readonly string[] }
  | { kind: 'gatherFacts' }
  | { kind: 'createExclusive'; path: string }
  | { kind: 'fileAge'; path: string }
  | { kind: 'touch'; path: string };

/** A command built here: its text for real hosts, its meaning for the in-memory host. */
/**
 * An OS command of any copy of k8s-ha loaded in the process (the in-memory
 * host answers by `op`, also when the package under test built the command).
 */
export function isOsCommand(cmd: Command): cmd is OsCommand {
  const op = (cmd as { op?: unknown }).op;
  return typeof op === 'object' && op !== null && typeof (op as { kind?: unknown }).kind === 'string';
}

export class OsCommand extends Command {
  constructor(
    text: string,
    readonly op: OsOp,
  ) {
    super(text);
  }
}

/** What k8s-ha learns about a host before any phase runs. */
export interface HostFacts {
  /** /etc/os-release ID, e.g. `debian`, `ubuntu`. */
  os: string;
  /** /etc/os-release VERSION_ID, e.g. `12`, `24.04`. */
  osVersion: string;
  /** Debian's name for the architecture: `amd64`, `arm64`, `armhf`, or `uname -m` as is. */
  arch: string;
  /** `systemd` when /run/systemd/system exists (systemd's own test), else `other`. */
  init: string;
  hostname: string;
}

// ---- packages ---------------------------------------------------------------

// dpkg-query expands \t and \n itself; the quotes keep `$` from the shell.
const PKG_FORMAT = '${Package}\\t${db:Status-Abbrev}\\t${Version}\\n';

/**
 * Installed versions of `names`. dpkg-query exits 1 when some name is
 * unknown, which is an answer ("not installed"), not a failure; 2 is a failure.
 */
export function pkgQuery(names: readonly string[]): OsCommand {
  // With no names dpkg-query would list every package.
  if (!names.length) throw new Error('pkgQuery needs at least one package name');
  const text = `dpkg-query -W -f=${quote(PKG_FORMAT)} ${names.map((n) => quote(n)).join(' ')}; [ $? -le 1 ]`;
  return new OsCommand(text, { kind: 'pkgQuery', names: [...names] });
}

/** name -> version, for installed packages only (a removed package may still be listed, as `rc`). */
export function parsePkgQuery(stdout: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const [name, status = '', version = ''] = line.split('\t');
    // Status-Abbrev: desired, status, error flag; status `i` means installed.
    if (name && status[1] === 'i' && version) out.set(name, version);
  }
  return out;
}

const APT_OPTS =
  '-y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold';

/**
 * Install packages (`name` or `name=version`) without questions. The index is
 * refreshed when it is over a day old, and once more when the install fails
 * (a stale index names files the mirror no longer has). Waits for a dpkg
 * lock held by unattended-upgrades instead of failing. Existing config files
 * are kept (confold): k8s-ha writes its own.
 */
/**
 * The packages k8s-ha installed on a host, one name per line: every package
 * an install of k8s-ha's added (with its dependencies), i.e. absent before.
 * On the host itself, written with the install, so it survives a lost or
 * copied state file; `reset` removes exactly these (and no package that was
 * there before k8s-ha).
 */
export const INSTALLED_PACKAGES_PATH = '/var/lib/k8s-ha/installed-packages';

export function aptInstall(names: readonly string[]): OsCommand {
  if (!names.length) throw new Error('aptInstall needs at least one package name');
  const pkgs = names.map((n) => quote(n)).join(' ');
  const r = INSTALLED_PACKAGES_PATH;
  const text = [
    'export DEBIAN_FRONTEND=noninteractive',
    // What is installed before, to record what this install adds (dependencies included).
    `installed() { dpkg-query -W -f='\${db:Status-Abbrev} \${Package}\n' | awk '$1 == "ii" { print $2 }' | LC_ALL=C sort -u; }`,
    `mkdir -p ${dirname(r)}`,
    `installed > ${r}.before`,
    `if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n 1)" ]; then apt-get update -q -o DPkg::Lock::Timeout=300; fi`,
    `apt-get install ${APT_OPTS} ${pkgs} || { apt-get update -q -o DPkg::Lock::Timeout=300 && apt-get install ${APT_OPTS} ${pkgs}; }`,
    'rc=$?',
    `{ installed | LC_ALL=C comm -13 ${r}.before -; cat ${r} 2>/dev/null; } | LC_ALL=C sort -u > ${r}.new`,
    `mv ${r}.new ${r}`,
    `rm -f ${r}.before`,
    'exit $rc',
  ].join('; ');
  return new OsCommand(text, { kind: 'aptInstall', names: [...names] });
}

/** Purge packages (they and their config files go), without questions; the record of installed packages loses them. */
export function aptPurge(names: readonly string[]): OsCommand {
  if (!names.length) throw new Error('aptPurge needs at least one package name');
  const r = INSTALLED_PACKAGES_PATH;
  const text = [
    'export DEBIAN_FRONTEND=noninteractive',
    `apt-get purge -y -q -o DPkg::Lock::Timeout=300 ${names.map((n) => quote(n)).join(' ')}`,
    `if [ -f ${r} ]; then grep -vxF ${names.map((n) => `-e ${quote(n)}`).join(' ')} ${r} > ${r}.new; mv ${r}.new ${r}; [ -s ${r} ] || rm -f ${r}; fi`,
  ].join(' && ');
  return new OsCommand(text, { kind: 'aptPurge', names: [...names] });
}

// ---- services ---------------------------------------------------------------

/** `systemctl ACTION UNIT`; `daemon-reload` takes no unit. */
export function systemctl(action: SystemctlAction, unit?: string): OsCommand {
  if (action !== 'daemon-reload' && !unit) throw new Error(`systemctl ${action} needs a unit`);
  const text = action === 'daemon-reload' ? 'systemctl daemon-reload' : `systemctl ${action} ${quote(unit ?? '')}`;
  return new OsCommand(text, { kind: 'systemctl', action, ...(unit && action !== 'daemon-reload' ? { unit } : {}) });
}

export interface ServiceState {
  active: boolean;
  enabled: boolean;
  /** False when systemd knows no such unit (its package is not installed yet). */
  exists: boolean;
}

/**
 * One line per unit: `unit<TAB>is-active<TAB>is-enabled<TAB>LoadState`. One
 * round trip for all units; always exits 0 (an inactive unit is an answer).
 */
export function serviceState(units: readonly string[]): OsCommand {
  const text =
    `for u in ${units.map((u) => quote(u)).join(' ')}; do ` +
    `printf '%s\\t%s\\t%s\\t%s\\n' "$u" "$(systemctl is-active "$u" 2>/dev/null)" ` +
    `"$(systemctl is-enabled "$u" 2>/dev/null)" "$(systemctl show -p LoadState --value "$u" 2>/dev/null)"; done`;
  return new OsCommand(text, { kind: 'serviceState', units: [...units] });
}

// `static`, `indirect` and the like cannot be enabled; counting them as enabled
// keeps a plan from proposing `systemctl enable` on every run.
const ENABLED = new Set(['enabled', 'enabled-runtime', 'static', 'indirect', 'alias', 'generated']);

export function parseServiceState(stdout: string, units: readonly string[]): Map<string, ServiceState> {
  const out = new Map<string, ServiceState>();
  for (const u of units) out.set(u, { active: false, enabled: false, exists: false });
  for (const line of stdout.split('\n')) {
    const [unit, active = '', enabled = '', load = ''] = line.split('\t');
    if (!unit) continue;
    out.set(unit, {
      active: active === 'active' || active === 'reloading',
      enabled: ENABLED.has(enabled),
      exists: load === 'loaded',
    });
  }
  return out;
}

// ---- facts ------------------------------------------------------------------

/** One round trip: `key=value` lines. Needs no root. */
export function gatherFacts(): OsCommand {
  const text = [
    'if [ -r /etc/os-release ]; then . /etc/os-release; fi',
    `printf 'os=%s\\nosVersion=%s\\n' "\${ID:-}" "\${VERSION_ID:-}"`,
    `printf 'arch=%s\\n' "$(uname -m)"`,
    'if [ -d /run/systemd/system ]; then echo init=systemd; else echo init=other; fi',
    `printf 'hostname=%s\\n' "$(uname -n)"`,
  ].join('; ');
  return new OsCommand(text, { kind: 'gatherFacts' });
}

const DEBIAN_ARCH: Record<string, string> = { x86_64: 'amd64', aarch64: 'arm64', arm64: 'arm64', armv7l: 'armhf' };

export function parseFacts(stdout: string): HostFacts {
  const kv = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  const machine = kv.get('arch') ?? '';
  return {
    os: kv.get('os') ?? '',
    osVersion: kv.get('osVersion') ?? '',
    arch: DEBIAN_ARCH[machine] ?? machine,
    init: kv.get('init') ?? '',
    hostname: kv.get('hostname') ?? '',
  };
}

/** Renders facts the way `gatherFacts()` prints them (for hosts that model it). */
export function formatFacts(f: HostFacts): string {
  const machine = Object.entries(DEBIAN_ARCH).find(([, deb]) => deb === f.arch)?.[0] ?? f.arch;
  return `os=${f.os}\nosVersion=${f.osVersion}\narch=${machine}\ninit=${f.init}\nhostname=${f.hostname}\n`;
}

// ---- files that must be made atomically (the cluster lock) ----------------

/**
 * Create `path` (mode 0600) from stdin, failing (exit 1, "exists") when it
 * is already there: the shell's noclobber makes the open O_EXCL, so of two
 * runs at once exactly one gets it.
 */
export function createExclusive(path: string): OsCommand {
  const dir = path.replace(/\/[^/]*$/, '') || '/';
  const text = `mkdir -p ${quote(dir)} && (umask 077; set -C; cat > ${quote(path)}) 2>/dev/null || { echo exists >&2; exit 1; }`;
  return new OsCommand(text, { kind: 'createExclusive', path });
}

/** Seconds since `path` was last modified, by the host's own clock; exit 1 when absent. */
export function fileAge(path: string): OsCommand {
  const text = `t=$(stat -c %Y ${quote(path)} 2>/dev/null) || exit 1; echo $(( $(date +%s) - t ))`;
  return new OsCommand(text, { kind: 'fileAge', path });
}

/** Set `path`'s modification time to now (a heartbeat); exit 1 when absent. */
export function touchFile(path: string): OsCommand {
  const text = `[ -e ${quote(path)} ] && touch -c ${quote(path)}`;
  return new OsCommand(text, { kind: 'touch', path });
}
