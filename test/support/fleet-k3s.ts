import { parse } from 'yaml';
import type { ExecResult } from '../../src/transport/host.js';
import { ok } from '../../src/transport/memory.js';
import { sha256, type Machine } from './fleet-debian.js';
import { kineTable, loginProblem, type FakeMariadb } from './fleet-mariadb.js';
import { insertRow } from './fleet-kine.js';
import { nodePasswordKey } from '../../src/backup/sql.js';
import { FakeLeases, leaseProbeAnswer, type LeaseOptions } from './fleet-leases.js';

/**
 * k3s where k8s-ha looks: the binary's hash record, a server that reads its
 * config.yaml at start, logs in to the datastore named there, finds or makes
 * the bootstrap data with its token (FACTS: a different token is fatal),
 * writes its token file and signals READY=1; `/ping`, `/readyz`, the
 * journal; agents that join through the load balancer with the token and
 * become Ready nodes; TCP probes from agents to servers.
 */

export const TOKEN_FILE = '/var/lib/rancher/k3s/server/token';
const CONFIG = '/etc/rancher/k3s/config.yaml';
const DIFFERENT_TOKEN = 'bootstrap data already found and encrypted with different token';
const LB_UNITS = ['nginx', 'haproxy', 'k8s-ha-lb'];
const NODE_PASSWORD = '/etc/rancher/node/password';
const PASSWORD_REJECTED = "Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not match server node-passwd entry, try enabling a unique node name with the --with-node-id flag";
/** Node passwords made so far in this process: a machine of a new fleet never gets an old machine's password. */
let passwordsMade = 0;

export interface RestartRecord {
  host: string;
  kind: 'start' | 'restart';
  /** The fleet's step counter when the restart was queued, and when the server became ready (Infinity: not yet). */
  at: number;
  readyAt: number;
}

interface ServerRun {
  state: 'starting' | 'ready' | 'bad-token';
  /** Readiness probes still to answer "not ready" (K3sModelOptions.startupPolls). */
  pollsLeft: number;
  token: string;
  record: RestartRecord;
  lastError: string;
}

export interface K3sModelOptions {
  /** Readiness probes that see a (re)started server not ready yet. Default 0. */
  startupPolls?: number;
  /** The controller manager's and scheduler's leader election (fleet-leases.ts). */
  leases?: LeaseOptions;
}

/** The world the k3s model needs from the fleet. */
export interface K3sWorldView {
  machines(): Iterable<Machine>;
  byAddress(address: string): Machine | undefined;
  mariadb(m: Machine): FakeMariadb;
  /** The machine holding `address` as a virtual IP, if any. */
  vipHolder(address: string): Machine | undefined;
}

/** The secret part of a token: `K10<hash>::<user>:<secret>` -> `<secret>`. */
const passphrase = (t: string): string => /^K10[0-9a-f]*::[^:]+:(.+)$/s.exec(t.trim())?.[1] ?? t.trim();
const caHash = (db: string): string => sha256(`simulated cluster CA of ${db}`);

export class K3sModel {
  readonly restarts: RestartRecord[] = [];
  /** agent name -> server address -> how its 6443 fails from there. */
  readonly blocked = new Map<string, Map<string, 'timeout' | 'refused'>>();
  /** Servers that never become ready. */
  readonly stuck = new Set<string>();
  readonly runs = new Map<string, ServerRun>();
  /** systemd's ActiveEnterTimestampMonotonic per host (µs). */
  readonly entered = new Map<string, number>();
  step = 0;
  readonly leases: FakeLeases;

  constructor(
    private readonly world: K3sWorldView,
    private readonly opts: K3sModelOptions = {},
  ) {
    this.leases = new FakeLeases(opts.leases);
  }

  /** k3s-leaders.ts's leaseProbe on a ready server: its clock and kube-system's Leases. */
  leaseRead(m: Machine): ExecResult {
    const servers = [...this.world.machines()].filter((x) => this.runs.has(x.host.name)).map((x) => x.host.name).sort();
    const runOf = (name: string) => {
      const x = [...this.world.machines()].find((y) => y.host.name === name);
      const run = this.runs.get(name);
      return x && run && this.ready(x) ? this.restarts.indexOf(run.record) : null;
    };
    return ok(leaseProbeAnswer(this.leases.read(m.host.name, servers, runOf)));
  }

  config(m: Machine): Record<string, unknown> {
    try {
      const v: unknown = parse(m.text(CONFIG) ?? '{}');
      return v && typeof v === 'object' ? (v as Record<string, unknown>) : {};
    } catch {
      return {};
    }
  }

  /** Called by systemd (Machine.hooks) when a unit starts, restarts or stops. */
  onUnit = (m: Machine, unit: string, how: 'start' | 'restart' | 'stop' | 'reload'): void => {
    if (unit !== 'k3s' || how === 'reload') return;
    if (how === 'stop') {
      this.runs.delete(m.host.name);
      return;
    }
    const record: RestartRecord = { host: m.host.name, kind: how, at: ++this.step, readyAt: Infinity };
    this.restarts.push(record);
    this.runs.set(m.host.name, { state: 'starting', pollsLeft: this.opts.startupPolls ?? 0, token: passphrase(String(this.config(m).token ?? '')), record, lastError: '' });
    m.log('k3s', 'level=info msg="Starting k3s v1.31.4+k3s1"');
    this.advance(m);
  };

  /**
   * The node-password check (k3s#802): the node's /etc/rancher/node/password
   * (made when absent, as k3s does), its hash kept in the kine table as the
   * node's Secret, made the first time the name is seen; another password
   * is refused and the node logs k3s's words and keeps retrying.
   */
  passwordAccepted(m: Machine, node: string, server: Machine, unit: string): boolean {
    const t = this.#kine(server);
    if (!t) return false;
    let pw = m.text(NODE_PASSWORD)?.trim();
    if (!pw) {
      pw = `node password ${++passwordsMade} of ${m.host.name}`;
      m.host.setFile(NODE_PASSWORD, `${pw}\n`, { mode: 0o600 });
    }
    const key = nodePasswordKey(node);
    const hash = sha256(`scrypt ${pw}`);
    const row = [...t.rows].reverse().find((r) => r.name === key);
    if (!row || row.deleted) {
      insertRow(t, key, hash);
      return true;
    }
    if (row.value.toString('utf8') === hash) return true;
    m.log(unit, `level=info msg="Waiting to retrieve agent configuration; server is not ready: ${PASSWORD_REJECTED}"`);
    return false;
  }

  /** `kubectl delete node`: k3s deletes the node's password Secret with it. */
  nodeDeleted = (node: string): void => {
    const server = [...this.world.machines()].find((x) => this.ready(x));
    const t = server && this.#kine(server);
    const key = nodePasswordKey(node);
    const row = t && [...t.rows].reverse().find((r) => r.name === key);
    if (t && row && !row.deleted) insertRow(t, key, '', 1);
  };

  /** The node's password Secret exists (its kine row, not deleted), as a running server's API would say. */
  hasNodePassword = (node: string): boolean => {
    const server = [...this.world.machines()].find((x) => this.ready(x));
    const t = server && this.#kine(server);
    const row = t && [...t.rows].reverse().find((r) => r.name === nodePasswordKey(node));
    return !!row && !row.deleted;
  };

  #kine(server: Machine) {
    const cfg = this.config(server);
    const dsn = /^mysql:\/\/[^@]*@tcp\(([^:)]+):\d+\)\/(.+)$/.exec(String(cfg['datastore-endpoint'] ?? ''));
    const dm = dsn && this.world.byAddress(dsn[1]!);
    return dm ? kineTable(dm, this.world.mariadb(dm), dsn[2]!) : undefined;
  }

  /** The datastore the config names and whether this server can use it. */
  #datastore(m: Machine): { db?: FakeMariadb; database: string; problem: string | null } {
    const cfg = this.config(m);
    const dsn = /^mysql:\/\/([^:]+):([^@]*)@tcp\(([^:)]+):(\d+)\)\/(.+)$/.exec(String(cfg['datastore-endpoint'] ?? ''));
    if (!dsn) return { database: '', problem: 'no datastore-endpoint: this simulation runs servers on an external datastore only' };
    const [, user = '', password = '', address = '', , database = ''] = dsn;
    const dm = this.world.byAddress(address);
    if (!dm) return { database, problem: `dial tcp ${address}:3306: i/o timeout` };
    const db = this.world.mariadb(dm);
    const caFile = typeof cfg['datastore-cafile'] === 'string' ? cfg['datastore-cafile'] : null;
    return { db, database: `${address}/${database}`, problem: loginProblem(dm, db, { user, password, database }, m.host.address, caFile, caFile ? m.text(caFile) : null) };
  }

  /** What a starting server does on its own: log in, bootstrap or join, become ready. */
  advance(m: Machine): void {
    const run = this.runs.get(m.host.name);
    if (!run || run.state !== 'starting' || this.stuck.has(m.host.name)) return;
    const ds = this.#datastore(m);
    if (ds.problem || !ds.db) {
      const msg = `level=error msg="failed to connect to the datastore: ${ds.problem}"`;
      if (run.lastError !== msg) m.log('k3s', msg);
      run.lastError = msg;
      return;
    }
    const have = ds.db.bootstrap.get(ds.database);
    if (have !== undefined && have !== run.token) {
      run.state = 'bad-token';
      m.log('k3s', `level=fatal msg="starting kubernetes: preparing server: ${DIFFERENT_TOKEN}"`);
      return;
    }
    ds.db.bootstrap.set(ds.database, run.token);
    if (run.pollsLeft > 0) return;
    run.state = 'ready';
    run.record.readyAt = ++this.step;
    this.leases.serverUp(m.host.name, this.restarts.indexOf(run.record));
    this.entered.set(m.host.name, this.step * 1000);
    if (!m.has(TOKEN_FILE)) m.host.setFile(TOKEN_FILE, `K10${caHash(ds.database)}::server:${run.token}\n`, { mode: 0o600 });
    if (!m.has('/etc/rancher/k3s/k3s.yaml')) m.host.setFile('/etc/rancher/k3s/k3s.yaml', 'apiVersion: v1\nkind: Config\n# simulated admin kubeconfig\n', { mode: 0o600 });
    m.log('k3s', 'level=info msg="k3s is up and running"');
    // its own node asks for its kubelet certificate with its node password
    this.passwordAccepted(m, String(this.config(m)['node-name'] ?? m.host.name), m, 'k3s');
  }

  ready(m: Machine): boolean {
    this.advance(m);
    return this.runs.get(m.host.name)?.state === 'ready' && !!m.host.services.get('k3s')?.active;
  }

  /** A Node's Ready condition; undefined when it never registered. */
  nodeReady = (name: string): boolean | undefined => {
    const m = [...this.world.machines()].find((x) => x.host.name === name || this.config(x)['node-name'] === name);
    if (!m) return undefined;
    // A server's own node: its API is up, its node parts wait for the password check.
    if (this.ready(m)) return this.passwordAccepted(m, name, m, 'k3s');
    if (!m.host.services.get('k3s-agent')?.active) return undefined;
    const server = [...this.world.machines()].find((x) => this.ready(x));
    return this.#agentJoins(m) && server && this.passwordAccepted(m, name, server, 'k3s-agent') ? true : undefined;
  };

  /** An agent registers through the address in its config with a token of the running cluster. */
  #agentJoins(m: Machine): boolean {
    const cfg = this.config(m);
    const url = /^https:\/\/([^:/]+):(\d+)/.exec(String(cfg.server ?? ''));
    if (!url) return false;
    const front = this.world.byAddress(url[1]!) ?? this.world.vipHolder(url[1]!);
    const servers = [...this.world.machines()].filter((x) => this.ready(x));
    if (!front || !servers.length) return false;
    // Through a load balancer: it must run and forward to a ready server; or straight to a server.
    const viaLb = LB_UNITS.some((u) => front.host.services.get(u)?.active && servers.some((s) => [...(front.running.get(u)?.values() ?? [])].some((c) => c?.includes(`${s.host.address}:6443`))));
    if (!viaLb && !servers.includes(front)) return false;
    const token = String(cfg.token ?? '');
    const run = this.runs.get(servers[0]!.host.name)!;
    // With `agent-token` set on the servers, agents may join with it as well as with the server token.
    const agentToken = this.config(servers[0]!)['agent-token'];
    if (passphrase(token) !== run.token && (agentToken === undefined || token !== String(agentToken))) return false;
    const pinned = /^K10([0-9a-f]+)::/.exec(token)?.[1];
    return !pinned || servers[0]!.text(TOKEN_FILE)?.includes(pinned) === true;
  }

  /** `systemctl show ...; journalctl ... --show-cursor ...; systemctl --no-block restart k3s` */
  queuedRestart(m: Machine): ExecResult {
    const before = this.entered.get(m.host.name) ?? 0;
    const cursor = m.journal.get('k3s')?.length ? `s=${m.journal.get('k3s')!.length}` : '';
    m.systemctl('restart', 'k3s'); // --no-block: a failing start does not fail the command
    return ok(`${before}\n${cursor}\n`);
  }

  /** The readiness probe of k3s-health.ts. */
  probe(m: Machine, text: string): ExecResult {
    const run = this.runs.get(m.host.name);
    if (run?.state === 'starting' && run.pollsLeft > 0 && !this.stuck.has(m.host.name)) run.pollsLeft--;
    const ready = this.ready(m);
    const s = m.host.services.get('k3s');
    const active = !s?.active ? (s ? 'failed' : 'inactive') : ready ? 'active' : 'activating';
    const after = Number(/--after-cursor=s=(\d+)/.exec(text)?.[1] ?? 0);
    const tokenlog = (m.journal.get('k3s') ?? []).slice(after).some((l) => l.includes(DIFFERENT_TOKEN));
    const ping = ready ? 'pong' : 'curl: (7) Failed to connect to 127.0.0.1 port 6443 after 0 ms: Couldn\'t connect to server';
    const readyz = ready ? 'ok' : 'The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?';
    return ok(`ping=${ping}\nreadyz=${readyz}\nactive=${active}\nentered=${this.entered.get(m.host.name) ?? 0}\n${tokenlog ? 'tokenlog=yes\n' : ''}`);
  }

  /** An agent's TCP connect to each server's 6443. */
  reach(m: Machine, text: string): ExecResult {
    const addrs = /for a in (.*?); do/.exec(text)?.[1]?.split(' ') ?? [];
    const blocked = this.blocked.get(m.host.name);
    return ok(
      addrs
        .map((a) => {
          const target = this.world.byAddress(a);
          const how = blocked?.get(a) ?? (!target ? 'timeout' : target.host.services.get('k3s')?.active ? null : 'refused');
          if (how === 'timeout') return `${a}\t124\t\n`;
          if (how === 'refused') return `${a}\t1\tbash: connect: Connection refused bash: line 1: /dev/tcp/${a}/6443: Connection refused\n`;
          return `${a}\t0\t\n`;
        })
        .join(''),
    );
  }
}

/** The file identity k3s-install.ts records with a hash: size, ctime, inode (a rewrite changes the last two). */
function identity(m: Machine, path: string): string {
  const f = m.host.files.get(path);
  if (!f) return '';
  const generation = m.host.writes.filter((p) => p === path).length + 1;
  return `${f.content.length} ${1_700_000_000 + generation} ${4000 + generation}`;
}

/** The k3s commands, on one machine. */
export function attachK3s(m: Machine, k3s: K3sModel, kubectl: (text: string, stdin: string) => ExecResult): void {
  const h = m.host;
  m.hooks.push(k3s.onUnit);
  h.handle(/^set -- .*sha256sum/, (cmd) => {
    const pairs = /^set -- (.*?); while/.exec(cmd.text)![1]!.split(' ');
    let out = '';
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const [file, rec] = [pairs[i]!, pairs[i + 1]!];
      if (!m.has(file)) continue;
      const recorded = m.text(rec)?.trim().split(' ');
      const hash = recorded && recorded.slice(0, 3).join(' ') === identity(m, file) ? recorded[3] : sha256(h.files.get(file)!.content);
      out += `${file}\t${hash}\n`;
    }
    return ok(out);
  });
  h.handle(/^mkdir -p \/var\/lib\/k8s-ha\/sha256 && printf/, (cmd) => {
    const r = /stat -c '%s %Z %i' (\S+)\)" (\S+) > (\S+)$/.exec(cmd.text);
    if (!r) return { code: 2, stdout: '', stderr: 'simulated shell: unexpected hash record command' };
    h.setFile(r[3]!, `${identity(m, r[1]!)} ${r[2]}\n`);
    return ok();
  });
  h.handle((t) => t.includes('systemctl --no-block restart k3s'), () => k3s.queuedRestart(m));
  // k3s-uninstall.sh / k3s-agent-uninstall.sh (render/k3s-scripts.ts) as they act on the host; the lab runs the real ones.
  h.handle(/^\/usr\/local\/bin\/k3s(-agent)?-uninstall\.sh$/, (cmd) => {
    if (!m.has(cmd.text)) return { code: 127, stdout: '', stderr: `sh: 1: ${cmd.text}: not found` };
    for (const unit of ['k3s', 'k3s-agent']) {
      if (h.services.get(unit)?.active) m.systemctl('stop', unit);
      h.services.delete(unit);
    }
    for (const p of [...h.files.keys()]) {
      if (/^\/(etc\/rancher\/k3s|var\/lib\/rancher\/k3s|var\/lib\/kubelet|run\/k3s)(\/|$)/.test(p)) h.files.delete(p);
      if (/^\/etc\/systemd\/system\/k3s(-agent)?\.service(\.env)?$/.test(p)) h.files.delete(p);
      if (/^\/usr\/local\/bin\/(k3s|k3s-killall\.sh|k3s-uninstall\.sh|k3s-agent-uninstall\.sh)$/.test(p)) h.files.delete(p);
      if (/^\/var\/lib\/k8s-ha\/(sha256\/usr_local_bin_k3s|pending\/k3s(-agent)?)$/.test(p)) h.files.delete(p);
    }
    return ok();
  });
  h.handle(/^if command -v curl/, (cmd) => k3s.probe(m, cmd.text));
  // k3s-versions.ts's versionProbe: the installed binary's `--version` (the tests' stand-in scripts echo it).
  h.handle(/^if \[ -x \/usr\/local\/bin\/k3s \]; then \/usr\/local\/bin\/k3s --version/, () => {
    const v = /echo "(k3s version [^"]+)"/.exec(m.text('/usr/local/bin/k3s') ?? '')?.[1];
    return ok(v ? `${v}\n` : '');
  });
  h.handle(/\/dev\/tcp\//, (cmd) => k3s.reach(m, cmd.text));
  h.handle(/^out=\$\(\/usr\/local\/bin\/k3s kubectl .* get leases -n kube-system /, () => {
    if (!m.has('/usr/local/bin/k3s')) return ok('rc=127\nnow=0\nbash: line 1: /usr/local/bin/k3s: No such file or directory\n');
    if (!k3s.ready(m)) return ok('rc=1\nnow=0\nThe connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?\n');
    return k3s.leaseRead(m);
  });
  h.handle(/^\/usr\/local\/bin\/k3s kubectl /, (cmd, stdin) => {
    if (!m.has('/usr/local/bin/k3s')) return { code: 127, stdout: '', stderr: 'bash: line 1: /usr/local/bin/k3s: No such file or directory' };
    if (!k3s.ready(m)) return { code: 1, stdout: '', stderr: 'The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?' };
    return kubectl(cmd.text, stdin);
  });
}
