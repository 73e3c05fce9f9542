import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile, chmod } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Where pinned host keys live. `id` is `[address]:port`; `key` is
 * `<type> <base64>`, as in an OpenSSH known_hosts line.
 */
export interface HostKeyStore {
  lookup(id: string): Promise<string | undefined>;
  /** Pin `key` for `id`, replacing any key pinned before. */
  record(id: string, key: string): Promise<void>;
  /** Where the keys are kept, for messages ("remove the line ... from FILE"). */
  readonly location?: string;
}

/** The id a host's key is pinned under: `[address]:port`, valid known_hosts syntax. */
export function hostKeyId(address: string, port: number): string {
  return `[${address}]:${port}`;
}

/** `SHA256:<base64>` as `ssh-keygen -l` and OpenSSH's warnings print it. */
export function fingerprint(key: string): string {
  const b64 = key.trim().split(/\s+/)[1] ?? '';
  return `SHA256:${createHash('sha256').update(Buffer.from(b64, 'base64')).digest('base64').replace(/=+$/, '')}`;
}

/** The `<type> <base64>` form of a raw SSH public key blob (as ssh2 hands it over). */
export function keyFromBlob(blob: Buffer): string {
  // The blob starts with its own type as an SSH string: uint32 length, bytes.
  const len = blob.length >= 4 ? blob.readUInt32BE(0) : 0;
  const type = blob.subarray(4, 4 + len).toString('latin1');
  return `${type} ${blob.toString('base64')}`;
}

/** Keeps keys for one run only: for tests and library callers with their own storage. */
export class MemoryHostKeyStore implements HostKeyStore {
  readonly keys = new Map<string, string>();
  async lookup(id: string): Promise<string | undefined> {
    return this.keys.get(id);
  }
  async record(id: string, key: string): Promise<void> {
    this.keys.set(id, key);
  }
}

/**
 * k8s-ha's own known-hosts file, in OpenSSH's format so `ssh -o
 * UserKnownHostsFile=FILE` can use it too. Written with mode 0600 and
 * replaced atomically, so a crash never leaves half a file.
 */
export class FileHostKeyStore implements HostKeyStore {
  // Several hosts connect at once; their records must not overwrite each other.
  #writing: Promise<void> = Promise.resolve();

  constructor(readonly path: string) {}

  get location(): string {
    return this.path;
  }

  async lookup(id: string): Promise<string | undefined> {
    await this.#writing;
    for (const line of await this.#lines()) {
      const entry = parseLine(line);
      if (entry && entry.hosts.includes(id)) return entry.key;
    }
    return undefined;
  }

  record(id: string, key: string): Promise<void> {
    const next = this.#writing.then(() => this.#record(id, key));
    // Keep the chain alive after a failed write; the caller still sees the error.
    this.#writing = next.catch(() => undefined);
    return next;
  }

  async #record(id: string, key: string): Promise<void> {
    const kept = (await this.#lines()).filter((line) => !parseLine(line)?.hosts.includes(id));
    while (kept.length && kept[kept.length - 1] === '') kept.pop();
    kept.push(`${id} ${key.trim()}`);
    await mkdir(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.${process.pid}.tmp`;
    await writeFile(tmp, kept.join('\n') + '\n', { mode: 0o600 });
    // writeFile's mode applies only to a new file; a stale tmp keeps its mode.
    await chmod(tmp, 0o600);
    await rename(tmp, this.path);
  }

  async #lines(): Promise<string[]> {
    try {
      return (await readFile(this.path, 'utf8')).split('\n');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }
}

function parseLine(line: string): { hosts: string[]; key: string } | undefined {
  const t = line.trim();
  // Comments, hashed names (|1|...) and markers (@revoked) are kept but never match.
  if (!t || t.startsWith('#') || t.startsWith('@') || t.startsWith('|')) return undefined;
  const [hosts, type, b64] = t.split(/\s+/);
  if (!hosts || !type || !b64) return undefined;
  return { hosts: hosts.split(','), key: `${type} ${b64}` };
}
