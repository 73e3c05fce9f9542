import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { posix } from 'node:path';
import {
  CommandError,
  ConnectionError,
  FileCheckError,
  type ExecOptions,
  type ExecResult,
  type FileMeta,
  type Host,
  type WriteOptions,
} from './host.js';
import { INSTALLED_PACKAGES_PATH, formatFacts, isOsCommand, type HostFacts, type OsOp, type SystemctlAction } from './os.js';
import type { Command } from './quote.js';
import { isSecret, maskSecrets, type Secret } from '../util/secret.js';

export interface MemoryFile {
  content: Buffer;
  mode: number;
  owner: string;
  group: string;
  /** When it was last written or touched (Date.now()). */
  mtimeMs?: number;
}

export interface MemoryService {
  active: boolean;
  enabled: boolean;
  restarts: number;
  reloads: number;
  starts: number;
  stops: number;
}

/** What installing a package does on the host, beyond being installed. */
export interface MemoryPackage {
  /** Default: `1.0-memory`. */
  version?: string;
  /** Units the package brings, started and enabled on install (as Debian does). */
  services?: string[];
  /** Files the package ships (path -> content), written on install. */
  files?: Record<string, string>;
}

export type CommandMatcher = RegExp | ((text: string) => boolean);
export type CommandHandler = (cmd: Command, stdin: string) => ExecResult | Promise<ExecResult>;

export interface MemoryHostOptions {
  name: string;
  /** Default: 10.0.0.1. */
  address?: string;
  /** Default: Debian 12, amd64, systemd, hostname = name. */
  facts?: Partial<HostFacts>;
  /** Installed packages: name -> version. */
  packages?: Record<string, string>;
  /** Known units; fields default to inactive, disabled, counters 0. */
  services?: Record<string, Partial<MemoryService>>;
  /** Files: path -> content, mode 0644 root:root. */
  files?: Record<string, string>;
  /** What `apt-get install` of a name does; a name not listed installs as version 1.0-memory. */
  catalog?: Record<string, MemoryPackage>;
}

export const ok = (stdout = ''): ExecResult => ({ code: 0, stdout, stderr: '' });

/**
 * A host in memory, for engine tests: files, packages and services are plain
 * maps to set up and assert on; `exec` answers the commands of os.ts from
 * them, and any other command from handlers the test registers. Unlike a real
 * connection it stays usable after close(), so one host can serve several runs.
 */
export class MemoryHost implements Host {
  readonly name: string;
  readonly address: string;
  facts: HostFacts;
  readonly files = new Map<string, MemoryFile>();
  readonly packages = new Map<string, string>();
  readonly services = new Map<string, MemoryService>();
  readonly catalog = new Map<string, MemoryPackage>();
  /** Every command run, in order (its text). */
  readonly log: string[] = [];
  /** Every path written or removed, in order. */
  readonly writes: string[] = [];
  daemonReloads = 0;
  closes = 0;
  readonly #handlers: { match: CommandMatcher; handle: CommandHandler }[] = [];
  readonly #failures: { match: CommandMatcher; result: ExecResult }[] = [];
  #callsLeft = Infinity;
  #connected = true;

  constructor(opts: MemoryHostOptions) {
    this.name = opts.name;
    this.address = opts.address ?? '10.0.0.1';
    this.facts = { os: 'debian', osVersion: '12', arch: 'amd64', init: 'systemd', hostname: opts.name, ...opts.facts };
    for (const [k, v] of Object.entries(opts.packages ?? {})) this.packages.set(k, v);
    for (const [k, v] of Object.entries(opts.services ?? {})) this.services.set(k, newService(v));
    for (const [k, v] of Object.entries(opts.files ?? {})) this.setFile(k, v);
    for (const [k, v] of Object.entries(opts.catalog ?? {})) this.catalog.set(k, v);
  }

  /** Put a file in place (test setup; not logged as a write). */
  setFile(path: string, content: string | Buffer, meta: Partial<Omit<MemoryFile, 'content'>> = {}): void {
    this.files.set(path, { content: Buffer.from(content), mode: 0o644, owner: 'root', group: 'root', mtimeMs: Date.now(), ...meta });
  }

  /** The file's content as text, or undefined. */
  text(path: string): string | undefined {
    return this.files.get(path)?.content.toString('utf8');
  }

  /** Answer commands that match; later handlers win over earlier ones and over the built-in models. */
  handle(match: CommandMatcher, handler: CommandHandler): this {
    this.#handlers.unshift({ match, handle: handler });
    return this;
  }

  /** The next command that matches returns `result` instead of running (once). */
  failNext(match: CommandMatcher, result: Partial<ExecResult> = {}): this {
    this.#failures.push({ match, result: { code: 1, stdout: '', stderr: 'injected failure', ...result } });
    return this;
  }

  /** The next `n` calls succeed; every later call throws a ConnectionError until reconnect(). */
  disconnectAfter(n: number): this {
    this.#callsLeft = n;
    return this;
  }

  reconnect(): void {
    this.#connected = true;
    this.#callsLeft = Infinity;
  }

  get connected(): boolean {
    return this.#connected;
  }

  async exec(cmd: Command, opts: ExecOptions = {}): Promise<ExecResult> {
    this.#call(cmd.text);
    this.log.push(cmd.text);
    const stdin = opts.stdin === undefined ? '' : isSecret(opts.stdin) ? opts.stdin.reveal() : opts.stdin instanceof Readable ? await readAll(opts.stdin) : opts.stdin.toString();
    let r = await this.#dispatch(cmd, stdin);
    if (opts.stdout && r.code === 0) {
      // Streamed output: handed to the sink, not returned (as over SSH).
      const sink = opts.stdout;
      await new Promise<void>((resolve, reject) => sink.write(r.stdout, (e) => (e ? reject(e) : resolve())));
      r = { ...r, stdout: '' };
    }
    if (r.code !== 0 && !opts.allowFailure) {
      const secrets: Secret[] = [...(opts.secrets ?? []), ...(isSecret(opts.stdin) ? [opts.stdin] : [])];
      throw new CommandError(this.name, cmd.text, r.code, maskSecrets(r.stderr, secrets), maskSecrets(r.stdout, secrets));
    }
    return r;
  }

  async readFile(path: string): Promise<Buffer | null> {
    this.#call(`read ${path}`);
    const f = this.files.get(path);
    return f ? Buffer.from(f.content) : null;
  }

  async stat(path: string): Promise<FileMeta | null> {
    this.#call(`stat ${path}`);
    const f = this.files.get(path);
    if (!f) return null;
    return {
      mode: f.mode,
      owner: f.owner,
      group: f.group,
      size: f.content.length,
      sha256: createHash('sha256').update(f.content).digest('hex'),
    };
  }

  async writeFile(path: string, content: string | Buffer, opts: WriteOptions = {}): Promise<void> {
    this.#call(`write ${path}`);
    if (!path.startsWith('/')) throw new Error(`a host path must be absolute, got ${JSON.stringify(path)}`);
    const tmp = posix.join(posix.dirname(path), `.${posix.basename(path)}.k8s-ha-memory`);
    this.setFile(tmp, content, { mode: opts.mode ?? 0o644, owner: opts.owner ?? 'root', group: opts.group ?? 'root' });
    if (opts.check) {
      const check = opts.check(tmp);
      const r = await this.exec(check, { allowFailure: true });
      if (r.code !== 0) {
        this.files.delete(tmp);
        const secrets = opts.secrets ?? [];
        const output = [r.stdout, r.stderr].filter((s) => s.trim()).join('\n');
        throw new FileCheckError(this.name, path, maskSecrets(check.text, secrets), r.code, maskSecrets(output, secrets));
      }
    }
    const staged = this.files.get(tmp);
    this.files.delete(tmp);
    if (staged) this.files.set(path, staged);
    this.writes.push(path);
  }

  async removeFile(path: string): Promise<void> {
    this.#call(`remove ${path}`);
    if (this.files.delete(path)) this.writes.push(path);
  }

  async close(): Promise<void> {
    this.closes++;
  }

  #call(what: string): void {
    if (this.#connected && this.#callsLeft <= 0) this.#connected = false;
    if (!this.#connected) {
      throw new ConnectionError(this.name, `${this.address}:22`, `running \`${what}\``, 'the connection was lost (simulated)',
        'call reconnect() on the memory host');
    }
    this.#callsLeft--;
  }

  async #dispatch(cmd: Command, stdin: string): Promise<ExecResult> {
    const matches = (m: CommandMatcher): boolean => (m instanceof RegExp ? m.test(cmd.text) : m(cmd.text));
    const fail = this.#failures.findIndex((f) => matches(f.match));
    if (fail >= 0) return this.#failures.splice(fail, 1)[0]!.result;
    const handler = this.#handlers.find((h) => matches(h.match));
    if (handler) return handler.handle(cmd, stdin);
    if (isOsCommand(cmd)) return this.#os(cmd.op, stdin);
    return {
      code: 127,
      stdout: '',
      stderr: `memory host ${this.name}: nothing answers this command; register a handler with host.handle(/pattern/, ...)`,
    };
  }

  #os(op: OsOp, stdin: string): ExecResult {
    switch (op.kind) {
      case 'createExclusive':
        if (this.files.has(op.path)) return { code: 1, stdout: '', stderr: 'exists\n' };
        this.setFile(op.path, stdin, { mode: 0o600 });
        this.writes.push(op.path);
        return ok();
      case 'fileAge': {
        const f = this.files.get(op.path);
        return f ? ok(`${Math.floor((Date.now() - (f.mtimeMs ?? Date.now())) / 1000)}\n`) : { code: 1, stdout: '', stderr: '' };
      }
      case 'touch': {
        const f = this.files.get(op.path);
        if (!f) return { code: 1, stdout: '', stderr: '' };
        f.mtimeMs = Date.now();
        return ok();
      }
      case 'gatherFacts':
        return ok(formatFacts(this.facts));
      case 'pkgQuery':
        return ok(
          op.names
            .filter((n) => this.packages.has(n))
            .map((n) => `${n}\tii \t${this.packages.get(n)}\n`)
            .join(''),
        );
      case 'aptInstall': {
        const added = op.names.map((spec) => spec.split('=')[0]!).filter((n) => !this.packages.has(n));
        for (const spec of op.names) this.#install(spec);
        recordPackages(this, added, []);
        return ok();
      }
      case 'aptPurge':
        for (const n of op.names) this.packages.delete(n);
        recordPackages(this, [], op.names);
        return ok();
      case 'serviceState':
        return ok(
          op.units
            .map((u) => {
              const s = this.#service(u);
              return `${u}\t${s?.active ? 'active' : 'inactive'}\t${s ? (s.enabled ? 'enabled' : 'disabled') : ''}\t${s ? 'loaded' : 'not-found'}\n`;
            })
            .join(''),
        );
      case 'systemctl':
        return this.#systemctl(op.action, op.unit);
    }
  }

  #install(spec: string): void {
    const [name = spec, pinned] = spec.split('=');
    const pkg = this.catalog.get(name) ?? {};
    this.packages.set(name, pinned ?? pkg.version ?? '1.0-memory');
    for (const [path, content] of Object.entries(pkg.files ?? {})) {
      if (!this.files.has(path)) this.setFile(path, content);
    }
    for (const unit of pkg.services ?? []) {
      if (!this.#service(unit)) this.services.set(unit, newService({ active: true, enabled: true, starts: 1 }));
    }
  }

  #service(unit: string): MemoryService | undefined {
    return this.services.get(unit) ?? this.services.get(unit.replace(/\.service$/, '')) ?? this.services.get(`${unit}.service`);
  }

  #systemctl(action: SystemctlAction, unit = ''): ExecResult {
    if (action === 'daemon-reload') {
      this.daemonReloads++;
      return ok();
    }
    const s = this.#service(unit);
    if (action === 'is-active') return s?.active ? ok('active\n') : { code: 3, stdout: 'inactive\n', stderr: '' };
    if (action === 'is-enabled') {
      if (!s) return { code: 1, stdout: '', stderr: `Failed to get unit file state for ${unit}.service: No such file or directory` };
      return s.enabled ? ok('enabled\n') : { code: 1, stdout: 'disabled\n', stderr: '' };
    }
    if (!s) return { code: 5, stdout: '', stderr: `Failed to ${action} ${unit}.service: Unit ${unit}.service not found.` };
    switch (action) {
      case 'start':
        if (!s.active) s.starts++;
        s.active = true;
        break;
      case 'stop':
        if (s.active) s.stops++;
        s.active = false;
        break;
      case 'restart':
        s.restarts++;
        s.active = true;
        break;
      case 'reload':
        if (!s.active) return { code: 1, stdout: '', stderr: `${unit}.service is not active, cannot reload.` };
        s.reloads++;
        break;
      case 'enable':
        s.enabled = true;
        break;
      case 'disable':
        s.enabled = false;
        break;
    }
    return ok();
  }
}

function newService(s: Partial<MemoryService>): MemoryService {
  return { active: false, enabled: false, restarts: 0, reloads: 0, starts: 0, stops: 0, ...s };
}

async function readAll(src: Readable): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of src) parts.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
  return Buffer.concat(parts).toString('utf8');
}

/** INSTALLED_PACKAGES_PATH as the real aptInstall / aptPurge keep it: sorted names, gone when empty. */
export function recordPackages(h: { files: Map<string, unknown>; text(path: string): string | undefined; setFile(path: string, content: string): void }, added: readonly string[], removed: readonly string[]): void {
  const have = new Set((h.text(INSTALLED_PACKAGES_PATH) ?? '').split('\n').filter(Boolean));
  for (const n of added) have.add(n);
  for (const n of removed) have.delete(n);
  if (have.size) h.setFile(INSTALLED_PACKAGES_PATH, [...have].sort().map((n) => `${n}\n`).join(''));
  else h.files.delete(INSTALLED_PACKAGES_PATH);
}
