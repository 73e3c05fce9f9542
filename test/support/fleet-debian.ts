import { createHash } from 'node:crypto';
import type { ExecResult } from '../../src/transport/host.js';
import { MemoryHost, ok, recordPackages, type MemoryHostOptions } from '../../src/transport/memory.js';
import { isOsCommand } from '../../src/transport/os.js';
import type { Command } from '../../src/transport/quote.js';

/**
 * The Debian 12 (bookworm) part of a simulated machine: what `apt-get
 * install` brings (files, units, whether the unit starts), systemd's units
 * with the configuration each daemon actually runs with, the daemons' own
 * config checkers, and `ip addr`. Independent of k8s-ha's renderers: the
 * checkers look at what a real daemon would reject, not at what k8s-ha means.
 */

export const sha256 = (b: string | Buffer): string => createHash('sha256').update(b).digest('hex');

export interface DebianPackage {
  version: string;
  /** Files the package ships (path -> content). Conffiles already present are kept (confold). */
  files?: Record<string, string>;
  /** Units the package brings; `start: false` when Debian's unit does not start on install. */
  units?: { name: string; start: boolean }[];
}

const NGINX_DEFAULT_CONF = `user www-data;
worker_processes auto;
pid /run/nginx.pid;
include /etc/nginx/modules-enabled/*.conf;

events {
\tworker_connections 768;
}

http {
\tinclude /etc/nginx/mime.types;
\tinclude /etc/nginx/conf.d/*.conf;
\tinclude /etc/nginx/sites-enabled/*;
}
`;

/** What bookworm's packages bring, as far as k8s-ha's phases can see it. */
export const BOOKWORM: Readonly<Record<string, DebianPackage>> = {
  'nginx-light': {
    version: '1.22.1-9+deb12u2',
    files: { '/usr/sbin/nginx': 'ELF nginx\n', '/etc/nginx/nginx.conf': NGINX_DEFAULT_CONF, '/etc/nginx/mime.types': 'types {\n    text/html html;\n}\n', '/etc/nginx/sites-enabled/default': 'server { listen 80 default_server; }\n' },
    units: [{ name: 'nginx', start: true }],
  },
  // FACTS: without this module nginx rejects `stream {}`.
  'libnginx-mod-stream': {
    version: '1.22.1-9+deb12u2',
    files: { '/usr/lib/nginx/modules/ngx_stream_module.so': 'ELF module\n', '/etc/nginx/modules-enabled/50-mod-stream.conf': 'load_module modules/ngx_stream_module.so;\n' },
  },
  haproxy: {
    version: '2.6.12-1+deb12u2',
    files: { '/usr/sbin/haproxy': 'ELF haproxy\n', '/etc/haproxy/haproxy.cfg': 'global\n\tlog /dev/log local0\n\tchroot /var/lib/haproxy\n\tuser haproxy\n\tgroup haproxy\n\tdaemon\n' },
    units: [{ name: 'haproxy', start: true }],
  },
  // Debian's unit has ConditionFileNotEmpty=/etc/keepalived/keepalived.conf:
  // enabled on install, but not started until a config exists.
  keepalived: { version: '1:2.2.7-1+b2', files: { '/usr/sbin/keepalived': 'ELF keepalived\n' }, units: [{ name: 'keepalived', start: false }] },
  procps: { version: '2:4.0.2-3', files: { '/usr/bin/pgrep': 'ELF pgrep\n' } },
  openssl: { version: '3.0.17-1~deb12u2', files: { '/usr/bin/openssl': 'ELF openssl\n' } },
  'mariadb-server': {
    version: '1:10.11.14-0+deb12u2',
    files: {
      '/usr/sbin/mariadbd': 'ELF mariadbd\n',
      '/usr/bin/mariadb': 'ELF mariadb\n',
      '/etc/mysql/my.cnf': '[client-server]\n!includedir /etc/mysql/conf.d/\n!includedir /etc/mysql/mariadb.conf.d/\n',
      '/etc/mysql/mariadb.conf.d/50-server.cnf': '[mysqld]\nuser = mysql\nbind-address = 127.0.0.1\n',
    },
    units: [{ name: 'mariadb', start: true }],
  },
  'docker.io': { version: '20.10.24+dfsg1-1+deb12u1', files: { '/usr/bin/docker': 'ELF docker\n' }, units: [{ name: 'docker', start: true }] },
  curl: { version: '7.88.1-10+deb12u14', files: { '/usr/bin/curl': 'ELF curl\n' } },
  age: { version: '1.1.1-1+b3', files: { '/usr/bin/age': 'ELF age\n', '/usr/bin/age-keygen': 'ELF age-keygen\n' } },
  socat: { version: '1.7.4.4-2', files: { '/usr/bin/socat': 'ELF socat\n' } },
};

/** The files a daemon reads at start (and at reload, when it reloads). */
export interface UnitModel {
  configs: string[];
  reloadable?: boolean;
  /** The executable; a start without it fails as systemd's 203/EXEC does. */
  exec?: string;
}

export const UNITS: Readonly<Record<string, UnitModel>> = {
  // With k8s-ha-lbcheck, nginx.conf takes its server lines from an included file.
  nginx: { configs: ['/etc/nginx/nginx.conf', '/etc/nginx/k8s-ha-upstream.conf'], reloadable: true, exec: '/usr/sbin/nginx' },
  'k8s-ha-lbcheck': { configs: ['/usr/local/sbin/k8s-ha-lbcheck', '/etc/systemd/system/k8s-ha-lbcheck.service'], exec: '/usr/local/sbin/k8s-ha-lbcheck' },
  haproxy: { configs: ['/etc/haproxy/haproxy.cfg'], reloadable: true, exec: '/usr/sbin/haproxy' },
  keepalived: { configs: ['/etc/keepalived/keepalived.conf'], reloadable: true, exec: '/usr/sbin/keepalived' },
  mariadb: { configs: ['/etc/mysql/mariadb.conf.d/50-server.cnf', '/etc/mysql/mariadb.conf.d/60-k8s-ha.cnf'], exec: '/usr/sbin/mariadbd' },
  k3s: { configs: ['/etc/rancher/k3s/config.yaml', '/etc/systemd/system/k3s.service', '/etc/systemd/system/k3s.service.env', '/usr/local/bin/k3s', '/etc/rancher/k3s/datastore-ca.pem'], exec: '/usr/local/bin/k3s' },
  'k3s-agent': { configs: ['/etc/rancher/k3s/config.yaml', '/etc/systemd/system/k3s-agent.service', '/etc/systemd/system/k3s-agent.service.env', '/usr/local/bin/k3s'], exec: '/usr/local/bin/k3s' },
  'k8s-ha-lb': { configs: ['/etc/k8s-ha/lb/nginx.conf', '/etc/systemd/system/k8s-ha-lb.service'], reloadable: true, exec: '/usr/bin/docker' },
};

/** What a unit does beyond systemd's bookkeeping when it (re)starts or stops (k3s registers here). */
export type UnitHook = (m: Machine, unit: string, how: 'start' | 'restart' | 'stop' | 'reload') => ExecResult | void;

const notFound = (what: string): ExecResult => ({ code: 127, stdout: '', stderr: `bash: line 1: ${what}: command not found` });
const words = (text: string): string[] => text.split(/\s+/).map((w) => w.replace(/^'(.*)'$/, '$1'));

/**
 * One simulated machine: a MemoryHost (the maps tests assert on) plus what a
 * real machine keeps to itself, chiefly the configuration each running
 * daemon started with, so `stale()` can tell a file changed on disk from a
 * daemon that runs it.
 */
export class Machine {
  /** unit -> path -> content the daemon read at its last (re)start or reload. */
  readonly running = new Map<string, Map<string, string | null>>();
  /** unit -> journal lines, oldest first. */
  readonly journal = new Map<string, string[]>();
  readonly hooks: UnitHook[] = [];

  constructor(
    readonly host: MemoryHost,
    /** The interface carrying the host's address (`ip addr`). */
    readonly iface: string,
    readonly prefixLength: number,
  ) {}

  text(path: string): string | null {
    return this.host.text(path) ?? null;
  }

  has(path: string): boolean {
    return this.host.files.has(path);
  }

  log(unit: string, line: string): void {
    let j = this.journal.get(unit);
    if (!j) this.journal.set(unit, (j = []));
    j.push(line);
  }

  /** Files a running daemon reads that changed on disk since it read them: `unit: path`. */
  stale(): string[] {
    const out: string[] = [];
    for (const [unit, files] of this.running) {
      if (!this.host.services.get(unit)?.active) continue;
      for (const [path, content] of files) if (this.text(path) !== content) out.push(`${unit}: ${path}`);
    }
    return out;
  }

  #snapshot(unit: string): void {
    const paths = UNITS[unit]?.configs ?? [];
    this.running.set(unit, new Map(paths.map((p) => [p, this.text(p)])));
  }

  /** systemd knows a unit a package brought, or one whose unit file is on disk. */
  #unit(name: string) {
    const u = name.replace(/\.service$/, '');
    // A timer (or socket, path) unit keeps its suffix; a service is named without it.
    const file = /\.(timer|socket|path)$/.test(u) ? u : `${u}.service`;
    let s = this.host.services.get(u);
    if (!s && (this.has(`/etc/systemd/system/${file}`) || this.has(`/lib/systemd/system/${file}`))) {
      s = { active: false, enabled: false, restarts: 0, reloads: 0, starts: 0, stops: 0 };
      this.host.services.set(u, s);
    }
    return { u, s };
  }

  /** `systemctl ACTION UNIT` as systemd does it, counting what the MemoryHost counts. */
  systemctl(action: string, name: string): ExecResult {
    if (action === 'daemon-reload') {
      this.host.daemonReloads++;
      return ok();
    }
    const { u, s } = this.#unit(name);
    if (!s) return { code: 5, stdout: '', stderr: `Failed to ${action} ${u}.service: Unit ${u}.service not found.` };
    const model = UNITS[u];
    switch (action) {
      case 'enable':
        s.enabled = true;
        return ok();
      case 'disable':
        s.enabled = false;
        return ok();
      case 'stop':
        if (s.active) s.stops++;
        s.active = false;
        this.#hook(u, 'stop');
        return ok();
      case 'reload':
        if (!s.active) return { code: 1, stdout: '', stderr: `${u}.service is not active, cannot reload.` };
        if (!model?.reloadable) return { code: 1, stdout: '', stderr: `Failed to reload ${u}.service: Job type reload is not applicable for unit ${u}.service.` };
        s.reloads++;
        this.#snapshot(u);
        this.#hook(u, 'reload');
        return ok();
      case 'start':
      case 'restart': {
        if (action === 'start' && s.active) return ok();
        if (model?.exec && !this.has(model.exec)) {
          s.active = false;
          this.log(u, `${u}.service: Failed to locate executable ${model.exec}: No such file or directory`);
          return { code: 1, stdout: '', stderr: `Job for ${u}.service failed because of unavailable resources or another system error.\nSee "systemctl status ${u}.service" and "journalctl -xeu ${u}.service" for details.` };
        }
        if (s.active) s.restarts++;
        else s.starts++;
        const how = s.active ? 'restart' : 'start';
        s.active = true;
        this.#snapshot(u);
        this.log(u, `Started ${u}.service.`);
        return this.#hook(u, how) ?? ok();
      }
      default:
        return { code: 1, stdout: '', stderr: `simulated systemctl: ${action} is not modelled` };
    }
  }

  #hook(unit: string, how: 'start' | 'restart' | 'stop' | 'reload'): ExecResult | void {
    let out: ExecResult | void = undefined;
    for (const h of this.hooks) out = h(this, unit, how) ?? out;
    return out;
  }

  /** `apt-get install NAMES`: all or nothing, as apt is; an unknown name fails the whole install. */
  aptInstall(names: readonly string[], catalog: Readonly<Record<string, DebianPackage>>): ExecResult {
    const unknown = names.map((n) => n.split('=')[0]!).filter((n) => !catalog[n]);
    if (unknown.length) return { code: 100, stdout: '', stderr: unknown.map((n) => `E: Unable to locate package ${n}`).join('\n') };
    recordPackages(this.host, names.map((n) => n.split('=')[0]!).filter((n) => !this.host.packages.has(n)), []);
    for (const spec of names) {
      const [name = spec, pinned] = spec.split('=');
      const pkg = catalog[name]!;
      this.host.packages.set(name, pinned ?? pkg.version);
      for (const [path, content] of Object.entries(pkg.files ?? {})) if (!this.has(path)) this.host.setFile(path, content);
      for (const unit of pkg.units ?? []) {
        if (this.host.services.has(unit.name)) continue;
        this.host.services.set(unit.name, { active: false, enabled: true, restarts: 0, reloads: 0, starts: 0, stops: 0 });
        if (unit.start) this.systemctl('start', unit.name);
      }
    }
    return ok(`Setting up ${names.join(', ')} ...\n`);
  }

  /** `apt-get purge NAMES`: the packages, their files (config files too) and units go. */
  aptPurge(names: readonly string[], catalog: Readonly<Record<string, DebianPackage>>): ExecResult {
    for (const name of names) {
      if (!this.host.packages.delete(name)) continue;
      for (const path of Object.keys(catalog[name]?.files ?? {})) this.host.files.delete(path);
      for (const unit of catalog[name]?.units ?? []) {
        if (this.host.services.get(unit.name)?.active) this.systemctl('stop', unit.name);
        this.host.services.delete(unit.name);
      }
    }
    recordPackages(this.host, [], names);
    return ok(`Purging configuration files for ${names.join(', ')} ...\n`);
  }

  /** The daemons' own checkers, given the temp file; each needs its package installed. */
  checker(cmd: Command): ExecResult | null {
    const t = cmd.text;
    const w = words(t);
    if (t.startsWith('nginx -q -t -c ')) {
      if (!this.has('/usr/sbin/nginx')) return notFound('nginx');
      const conf = this.text(w[4]!) ?? '';
      const streamLoaded = conf.includes('include /etc/nginx/modules-enabled/*.conf;') && this.has('/etc/nginx/modules-enabled/50-mod-stream.conf');
      const line = conf.split('\n').findIndex((l) => /^\s*stream\s*\{/.test(l));
      if (line >= 0 && !streamLoaded) return { code: 1, stdout: '', stderr: `nginx: [emerg] unknown directive "stream" in ${w[4]}:${line + 1}` };
      // An include of one file (no wildcard) must exist; a wildcard may match nothing.
      for (const inc of conf.matchAll(/^\s*include\s+([^*;\s]+);/gm)) {
        if (inc[1]!.startsWith('/') && !this.has(inc[1]!)) return { code: 1, stdout: '', stderr: `nginx: [emerg] open() "${inc[1]}" failed (2: No such file or directory) in ${w[4]}` };
      }
      if (!conf.trim()) return { code: 1, stdout: '', stderr: `nginx: [emerg] no "events" section in configuration` };
      return ok();
    }
    if (t.startsWith('haproxy -c -f ')) return this.has('/usr/sbin/haproxy') ? ok('Configuration file is valid\n') : notFound('haproxy');
    if (t.startsWith('keepalived --config-test ')) return this.has('/usr/sbin/keepalived') ? ok() : notFound('keepalived');
    if (t.startsWith('mariadbd --defaults-file=')) {
      if (!this.has('/usr/sbin/mariadbd')) return notFound('mariadbd');
      const cnf = this.text(t.slice('mariadbd --defaults-file='.length).split(' ')[0]!) ?? '';
      const version = this.host.packages.get('mariadb-server') ?? '';
      if (/innodb_snapshot_isolation/.test(cnf) && !knowsSnapshotIsolation(version)) {
        return { code: 7, stdout: '', stderr: `[ERROR] mariadbd: unknown variable 'innodb_snapshot_isolation=OFF'` };
      }
      return ok();
    }
    if (t.startsWith('docker run --rm --network none ')) return this.has('/usr/bin/docker') ? ok() : notFound('docker');
    return null;
  }

  /** `ip -o -4 addr show dev IF`: the host's address on its one interface. */
  ipAddr(iface: string, extra: string[] = []): ExecResult {
    if (iface !== this.iface) return { code: 1, stdout: '', stderr: `Device "${iface}" does not exist.` };
    const lines = [this.host.address, ...extra].map((a, i) => `2: ${iface}    inet ${a}/${i === 0 ? this.prefixLength : 32} scope global ${i ? 'secondary ' : ''}${iface}\\       valid_lft forever preferred_lft forever`);
    return ok(lines.join('\n') + '\n');
  }
}

/** innodb_snapshot_isolation exists from 10.6.18, 10.11.8, 11.4.2, and in every 11.5+ (MariaDB's release notes). */
function knowsSnapshotIsolation(pkgVersion: string): boolean {
  const m = /^(?:\d+:)?(\d+)\.(\d+)\.(\d+)/.exec(pkgVersion);
  if (!m) return false;
  const [maj, min, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (maj > 11 || (maj === 11 && min >= 5)) return true;
  const first: Record<string, number> = { '10.6': 18, '10.11': 8, '11.4': 2 };
  return patch >= (first[`${maj}.${min}`] ?? Infinity);
}

/** Wire the Debian part into a host's command handlers. */
export function debianMachine(opts: MemoryHostOptions, iface: string, prefixLength: number, catalog: Readonly<Record<string, DebianPackage>>): Machine {
  const host = new MemoryHost(opts);
  const m = new Machine(host, iface, prefixLength);
  // `rm -rf PATH` (reset's removals): the path and everything under it.
  host.handle(/^rm -rf '?\/[^' ]+'?$/, (cmd) => {
    const path = cmd.text.slice('rm -rf '.length).replace(/^'|'$/g, '');
    for (const p of [...host.files.keys()]) if (p === path || p.startsWith(`${path}/`)) host.files.delete(p);
    return ok();
  });
  host.handle((t) => t.includes('apt-get purge'), (cmd) => (isOsCommand(cmd) && cmd.op.kind === 'aptPurge' ? m.aptPurge(cmd.op.names, catalog) : { code: 100, stdout: '', stderr: 'E: simulated apt: unexpected command' }));
  host.handle((t) => t.includes('apt-get install'), (cmd) => (isOsCommand(cmd) && cmd.op.kind === 'aptInstall' ? m.aptInstall(cmd.op.names, catalog) : { code: 100, stdout: '', stderr: 'E: simulated apt: unexpected command' }));
  host.handle(/^systemctl (start|stop|restart|reload|enable|disable|daemon-reload)\b/, (cmd) => {
    const [, action = '', unit = ''] = words(cmd.text);
    return m.systemctl(action, unit);
  });
  host.handle(/^systemctl disable --now \S+$/, (cmd) => {
    const unit = words(cmd.text)[3]!;
    const r = m.systemctl('disable', unit);
    return r.code === 0 ? m.systemctl('stop', unit) : r;
  });
  host.handle(/^(nginx -q -t -c |haproxy -c -f |keepalived --config-test |mariadbd --defaults-file=|docker run --rm --network none )/, (cmd) => m.checker(cmd)!);
  host.handle(/^command -v docker$/, () => (m.has('/usr/bin/docker') ? ok('/usr/bin/docker\n') : { code: 1, stdout: '', stderr: '' }));
  host.handle(/^apt-cache policy /, (cmd) => {
    const name = words(cmd.text)[2]!;
    const pkg = catalog[name];
    if (!pkg) return ok('');
    return ok(`${name}:\n  Installed: ${host.packages.get(name) ?? '(none)'}\n  Candidate: ${pkg.version}\n`);
  });
  // The agents' settle: the unit's last line and the journal's cursor.
  host.handle(/^journalctl -u \S+ -n 1 --show-cursor -q -o cat$/, (cmd) => {
    const lines = m.journal.get(words(cmd.text)[2]!) ?? [];
    return ok(lines.length ? `${lines[lines.length - 1]}\n-- cursor: s=${lines.length}\n` : '');
  });
  host.handle(/^journalctl -u \S+ -n \d+ --no-pager/, (cmd) => {
    const w = words(cmd.text);
    const lines = (m.journal.get(w[2]!) ?? []).slice(-Number(w[4]));
    return ok(lines.map((l, i) => `2025-01-01T00:00:${String(i).padStart(2, '0')}+00:00 ${host.name} ${w[2]}[1234]: ${l}\n`).join(''));
  });
  return m;
}
