import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { parse, stringify } from 'yaml';
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
  ) {
    this.savedOnce = existed;
  }

  private savedOnce: boolean;

  static pathFor(clusterFile: string): string {
    const ext = extname(clusterFile);
    return join(dirname(clusterFile), `${basename(clusterFile, ext)}.state.yaml`);
  }

  static async load(path: string, cluster: string): Promise<StateFile> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        return new StateFile(path, { version: 1, cluster, secrets: {}, hostKeys: {} }, false);
      }
      throw e;
    }
    // A state file others can read leaks every secret: tighten it at once.
    const st = await stat(path);
    if ((st.mode & 0o077) !== 0) await chmod(path, 0o600);
    const raw = (parse(text) ?? {}) as Partial<StateData>;
    if (raw.cluster && raw.cluster !== cluster) {
      throw new Error(`${path} belongs to cluster "${raw.cluster}", not "${cluster}": point k8s-ha at the right cluster file, or move the state file away`);
    }
    return new StateFile(path, { version: 1, cluster, secrets: { ...(raw.secrets ?? {}) }, hostKeys: { ...(raw.hostKeys ?? {}) } }, true);
  }

  /** The stored secret; generated (and kept, once saved) when absent. */
  secret(name: string, kind: SecretKind = 'token'): Secret {
    let v = this.data.secrets[name];
    if (v === undefined) {
      v = generateSecret(kind);
      this.data.secrets[name] = v;
      this.dirty = true;
    }
    return new Secret(v);
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
    return Object.values(this.data.secrets).map((v) => new Secret(v));
  }

  /** Every stored secret, revealed: only for a backup's encrypted secrets part. */
  exportSecrets(): Record<string, string> {
    return { ...this.data.secrets };
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
    const next = this.saving.then(() => this.saveNow());
    this.saving = next.catch(() => undefined);
    return next;
  }

  private async saveNow(): Promise<void> {
    if (!this.dirty && this.savedOnce) return;
    await mkdir(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.tmp-${process.pid}`;
    const sorted: StateData = {
      version: 1,
      cluster: this.data.cluster,
      secrets: Object.fromEntries(Object.entries(this.data.secrets).sort()),
      hostKeys: Object.fromEntries(Object.entries(this.data.hostKeys).sort()),
    };
    const header = '# k8s-ha state: generated secrets and pinned SSH host keys. Keep it private (mode 0600)\n# and back it up with the datastore: the k3s token cannot be recovered from the database.\n';
    await writeFile(tmp, header + stringify(sorted), { mode: 0o600 });
    await rename(tmp, this.path);
    this.dirty = false;
    this.savedOnce = true;
  }
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
