import { randomBytes } from 'node:crypto';
import { chmod, readFile, stat } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { parseDocument, stringify } from 'yaml';
import { UserError } from '../engine/errors.js';
import { writePrivateFile } from '../util/private-file.js';
import { Secret } from '../util/secret.js';

/**
 * The state file beside the cluster file (`seed.yaml` -> `seed.state.yaml`,
 * mode 0600): the secrets k8s-ha generated and the pinned SSH host keys.
 * Generated secrets are reused on every later run, because a changed k3s
 * token breaks a cluster (FACTS.md: bootstrap data is encrypted with it).
 */
export interface StateData {
  version: 1;
  cluster: string;
  secrets: Record<string, string>;
  hostKeys: Record<string, string>;
  /**
   * Every host an apply worked on: name -> "roles address". A host that
   * vanishes from the cluster file is then refused, never silently forgotten
   * (its k3s may still run, its account and upstream still exist).
   */
  hosts?: Record<string, string>;
  /**
   * Certificates k8s-ha issued (public; their keys are under `secrets`):
   * the Galera replication CA and each member's (cluster/galera-tls.ts).
   */
  certificates?: Record<string, string>;
}

export type SecretKind = 'token' | 'password';

export class StateFile {
  private dirty = false;
  // Hosts pin their keys concurrently; their saves must not interleave.
  private saving: Promise<void> = Promise.resolve();
  private constructor(
    readonly path: string,
    private data: StateData,
    /** True when the file existed when loaded. */
    readonly existed: boolean,
    /** `status`, `verify`: never written (save() does nothing). */
    readonly readOnly = false,
  ) {
    this.savedOnce = existed;
  }

  private savedOnce: boolean;

  static pathFor(clusterFile: string): string {
    const ext = extname(clusterFile);
    return join(dirname(clusterFile), `${basename(clusterFile, ext)}.state.yaml`);
  }

  static async load(path: string, cluster: string, opts: { readOnly?: boolean } = {}): Promise<StateFile> {
    const readOnly = opts.readOnly ?? false;
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        return new StateFile(path, { version: 1, cluster, secrets: {}, hostKeys: {} }, false, readOnly);
      }
      throw e;
    }
    // A state file others can read leaks every secret: tighten it at once.
    const st = await stat(path);
    if ((st.mode & 0o077) !== 0) await chmod(path, 0o600);
    const raw = parseState(text, path);
    if (raw.cluster && raw.cluster !== cluster) {
      throw new UserError(`${path} belongs to cluster "${raw.cluster}", not "${cluster}": point k8s-ha at the right cluster file, or move the state file away`);
    }
    return new StateFile(path, { version: 1, cluster, secrets: { ...(raw.secrets ?? {}) }, hostKeys: { ...(raw.hostKeys ?? {}) }, hosts: { ...(raw.hosts ?? {}) }, certificates: { ...(raw.certificates ?? {}) } }, true, readOnly);
  }

  /**
   * Generated this run but not kept yet: a plan that fails (a server
   * unreachable) must not leave a token behind that the next run would take
   * for the cluster's own (then refusing the servers' real one).
   */
  private readonly generated: Record<string, string> = {};

  /**
   * The stored secret; when absent, one generated for this run, which is
   * written to the file only after `keepGenerated()` (an apply about to use it).
   */
  secret(name: string, kind: SecretKind = 'token'): Secret {
    const v = this.data.secrets[name] ?? (this.generated[name] ??= generateSecret(kind));
    return new Secret(v);
  }

  /** Keep the secrets generated this run: called right before an apply puts them on hosts. */
  keepGenerated(): void {
    for (const [name, v] of Object.entries(this.generated)) {
      if (this.data.secrets[name] === undefined) {
        this.data.secrets[name] = v;
        this.dirty = true;
      }
      delete this.generated[name];
    }
    for (const [name, v] of Object.entries(this.issued.secrets)) {
      if (this.data.secrets[name] !== v) ((this.data.secrets[name] = v), (this.dirty = true));
    }
    for (const [name, v] of Object.entries(this.issued.certificates)) {
      const certs = (this.data.certificates ??= {});
      if (certs[name] !== v) ((certs[name] = v), (this.dirty = true));
    }
    this.issued = { secrets: {}, certificates: {} };
  }

  /**
   * Made this run to add or replace a stored value (a certificate and its
   * key, issued or renewed): seen by `stored()` at once, written to the file
   * only by `keepGenerated()`, as generated secrets are.
   */
  private issued: { secrets: Record<string, string>; certificates: Record<string, string> } = { secrets: {}, certificates: {} };

  issue(kind: 'secrets' | 'certificates', name: string, value: string): void {
    this.issued[kind][name] = value;
  }

  /** The value this run issued, else the stored one. */
  stored(kind: 'secrets' | 'certificates', name: string): string | undefined {
    return this.issued[kind][name] ?? (kind === 'secrets' ? this.data.secrets[name] : this.data.certificates?.[name]);
  }

  has(name: string): boolean {
    return name in this.data.secrets;
  }

  /** Records a secret found elsewhere (e.g. a token read back from a server). */
  setSecret(name: string, value: Secret): void {
    if (this.data.secrets[name] !== value.reveal()) {
      this.data.secrets[name] = value.reveal();
      this.dirty = true;
    }
  }

  /** Every secret held, also those the cluster file no longer uses (for masking output). */
  allSecrets(): Secret[] {
    return [...Object.values(this.data.secrets), ...Object.values(this.generated), ...Object.values(this.issued.secrets)].map((v) => new Secret(v));
  }

  /** Every stored secret, revealed: only for a backup's encrypted secrets part. */
  exportSecrets(): Record<string, string> {
    return { ...this.data.secrets };
  }

  /** Remember the hosts an apply is about to work on (added or updated, never dropped here). */
  recordHosts(hosts: readonly { name: string; roles: readonly string[]; address: string }[]): void {
    const h = (this.data.hosts ??= {});
    for (const x of hosts) {
      const v = `${x.roles.join(',')} ${x.address}`;
      if (h[x.name] !== v) {
        h[x.name] = v;
        this.dirty = true;
      }
    }
  }

  /** True when an apply recorded `name`, or when this state file records no hosts at all (written before it did). */
  mayHaveApplied(name: string): boolean {
    return this.data.hosts === undefined || Object.keys(this.data.hosts).length === 0 || name in this.data.hosts;
  }

  /**
   * A removed host, forgotten: its record and its pinned host key (a new
   * machine under that address is then pinned afresh on first contact).
   */
  forgetHost(name: string, hostKeyId?: string): void {
    if (this.data.hosts && name in this.data.hosts) {
      delete this.data.hosts[name];
      this.dirty = true;
    }
    if (hostKeyId && hostKeyId in this.data.hostKeys) {
      delete this.data.hostKeys[hostKeyId];
      this.dirty = true;
    }
  }

  /** The hosts applies worked on: name -> roles and address. */
  appliedHosts(): { name: string; roles: string[]; address: string }[] {
    return Object.entries(this.data.hosts ?? {}).map(([name, v]) => {
      const [roles = '', address = ''] = v.split(' ');
      return { name, roles: roles.split(',').filter(Boolean), address };
    });
  }

  hostKey(id: string): string | undefined {
    return this.data.hostKeys[id];
  }

  setHostKey(id: string, key: string): void {
    if (this.data.hostKeys[id] !== key) {
      this.data.hostKeys[id] = key;
      this.dirty = true;
    }
  }

  get needsSave(): boolean {
    return this.dirty;
  }

  /** Written to a temp file with mode 0600, then renamed: never half a file, never readable by others. */
  save(): Promise<void> {
    if (this.readOnly) return Promise.resolve();
    const next = this.saving.then(() => this.saveNow());
    this.saving = next.catch(() => undefined);
    return next;
  }

  private async saveNow(): Promise<void> {
    if (!this.dirty && this.savedOnce) return;

    const sorted: StateData = {
      version: 1,
      cluster: this.data.cluster,
      secrets: Object.fromEntries(Object.entries(this.data.secrets).sort()),
      hostKeys: Object.fromEntries(Object.entries(this.data.hostKeys).sort()),
      ...(Object.keys(this.data.hosts ?? {}).length ? { hosts: Object.fromEntries(Object.entries(this.data.hosts!).sort()) } : {}),
      ...(Object.keys(this.data.certificates ?? {}).length ? { certificates: Object.fromEntries(Object.entries(this.data.certificates!).sort()) } : {}),
    };
    const header = '# k8s-ha state: generated secrets and pinned SSH host keys. Keep it private (mode 0600)\n# and back it up with the datastore: the k3s token cannot be recovered from the database.\n';
    await writePrivateFile(this.path, header + stringify(sorted));
    this.dirty = false;
    this.savedOnce = true;
  }
}

const STATE_FIX = 'restore it from your backup; if it is lost, move it away: the next run takes the token from a running server, and generates what it cannot find';

/** The state file's text, checked: a damaged file is a user error naming the file and what is wrong in it (exit 2), never a crash. */
function parseState(text: string, path: string): Partial<StateData> {
  const bad = (what: string): UserError => new UserError(`${path}: ${what}; ${STATE_FIX}`);
  if (text.length > 1024 * 1024) throw bad(`${text.length} bytes, far more than a state file holds`);
  let doc: unknown;
  try {
    const d = parseDocument(text, { prettyErrors: false });
    if (d.errors.length) throw new Error(d.errors[0]!.message.split('\n')[0]);
    doc = d.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw bad(`not YAML (${(e as Error).message})`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw bad('not a mapping of version, cluster, secrets and hostKeys');
  const raw = doc as Record<string, unknown>;
  if (raw.version !== undefined && raw.version !== 1) throw bad(`version ${JSON.stringify(raw.version)} is not one this k8s-ha reads (1)`);
  if (raw.cluster !== undefined && typeof raw.cluster !== 'string') throw bad('cluster is not a name');
  for (const key of ['secrets', 'hostKeys', 'hosts', 'certificates'] as const) {
    const m = raw[key];
    if (m === undefined || m === null) continue;
    if (typeof m !== 'object' || Array.isArray(m)) throw bad(`${key} is not a mapping of names to values`);
    for (const [k, v] of Object.entries(m)) if (typeof v !== 'string' || v === '') throw bad(`${key}.${k} is not a non-empty string`);
  }
  return raw as Partial<StateData>;
}

/** Letters and digits only: safe in a DSN, a YAML file and a shell heredoc alike. */
export function generateSecret(kind: SecretKind): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const len = kind === 'token' ? 48 : 32;
  const bytes = randomBytes(len * 2);
  let out = '';
  for (const b of bytes) {
    if (b < 248) out += alphabet[b % 62]; // 248 = 4*62: no modulo bias
    if (out.length === len) break;
  }
  return out;
}
