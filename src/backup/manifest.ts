/**
 * What a backup archive says about itself (`manifest.json`, the first entry).
 * It holds no secret, so `backup --list` and `--check` read it without a key,
 * and every part's sha256 so that a damaged or altered archive is refused
 * before anything is restored from it.
 */

export const MANIFEST_NAME = 'manifest.json';
export const FORMAT = 'k8s-ha-backup';
export const FORMAT_VERSION = 1;

/** The archive's parts by role; the stored name adds `.age` when encrypted. */
export const PART = {
  /** `mariadb-dump --single-transaction` of the kine database, gzip-compressed. */
  dump: 'kine.sql.gz',
  /** The k3s tokens and the state file's secrets (secretsPart). */
  secrets: 'secrets.json',
} as const;

export interface ManifestPart {
  /** The entry's name in the archive (e.g. `kine.sql.gz.age`). */
  name: string;
  /** sha256 (hex) of the entry's bytes as stored. */
  sha256: string;
  size: number;
  /** When encrypted: sha256 of the content once decrypted. */
  plainSha256?: string;
}

export type Encryption = { to: 'passphrase' } | { to: 'recipients'; recipients: string[] };

export interface Manifest {
  format: typeof FORMAT;
  version: typeof FORMAT_VERSION;
  cluster: string;
  /** ISO 8601, UTC. */
  createdAt: string;
  /** What made it: `k8s-ha backup` on the operator's machine, or the datastore host's timer. */
  source: 'cli' | 'scheduled';
  /** The k3s version the servers ran (their `k3s --version`), else the cluster file's pin. */
  k3sVersion: string;
  /** The highest kine revision (row id) once the dump had finished: at least every revision in it. */
  kineRevision: number;
  datastore: { host: string; database: string; server: string };
  encryption: Encryption | null;
  parts: ManifestPart[];
}

/** What the secrets part holds (JSON). */
export interface SecretsPart {
  /** The server token as k3s keeps it (`K10<ca hash>::server:<secret>`), or the secret alone when no server was readable. */
  serverToken: string;
  agentToken?: string;
  /** The state file's secrets (name -> value), so a restore onto a new machine needs nothing else. */
  state: Record<string, string>;
  /**
   * Each node's /etc/rancher/node/password (host name -> password), read at
   * backup time: the restored datastore keeps each node's password hash
   * (k3s#802), so a restore onto fresh machines puts these back before k3s
   * starts. Absent in scheduled backups (the datastore host cannot read the
   * nodes) and in archives of older k8s-ha releases.
   */
  nodePasswords?: Record<string, string>;
}

/** A manifest that cannot be used, with what is wrong. */
export class ManifestError extends Error {}

export function parseManifest(text: string, where: string): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ManifestError(`${where}: manifest.json is not JSON (${(e as Error).message})`);
  }
  const m = raw as Partial<Manifest>;
  if (m?.format !== FORMAT) throw new ManifestError(`${where}: not a k8s-ha backup (manifest format ${JSON.stringify(m?.format)})`);
  if (m.version !== FORMAT_VERSION) {
    throw new ManifestError(`${where}: backup format version ${m.version}; this k8s-ha reads version ${FORMAT_VERSION}: use the k8s-ha release that made it`);
  }
  const problems: string[] = [];
  if (typeof m.cluster !== 'string' || !m.cluster) problems.push('cluster');
  if (typeof m.createdAt !== 'string' || Number.isNaN(Date.parse(m.createdAt))) problems.push('createdAt');
  if (typeof m.kineRevision !== 'number' || !Number.isSafeInteger(m.kineRevision) || m.kineRevision < 0) problems.push('kineRevision');
  if (!Array.isArray(m.parts)) problems.push('parts');
  for (const p of m.parts ?? []) {
    if (typeof p?.name !== 'string' || !/^[0-9a-f]{64}$/.test(p.sha256 ?? '') || typeof p.size !== 'number') problems.push(`parts[${String(p?.name)}]`);
  }
  if (problems.length) throw new ManifestError(`${where}: manifest.json is missing or has bad values for: ${problems.join(', ')}`);
  return m as Manifest;
}

/** The stored part for a role (`kine.sql.gz` or `kine.sql.gz.age`). */
export function partFor(m: Manifest, role: keyof typeof PART): ManifestPart | undefined {
  const base = PART[role];
  return m.parts.find((p) => p.name === base || p.name === `${base}.age`);
}

/** Deterministic JSON: keys in the order above, two-space indent. */
export function renderManifest(m: Manifest): string {
  return JSON.stringify(m, null, 2) + '\n';
}

/** `seed-20261201T091500Z.k8s-ha-backup.tar` (`.tar.age`-free: the parts are encrypted, the tar is not). */
export function archiveFileName(cluster: string, at: Date): string {
  const stamp = at.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${cluster}-${stamp}.k8s-ha-backup.tar`;
}

export const ARCHIVE_SUFFIX = '.k8s-ha-backup.tar';
