import { readdir, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { dirname, join } from 'node:path';
import { ClusterRun, type OpenOptions } from '../cluster/open.js';
import { backupPipeline, type BackupJob } from '../phases/backup.js';
import { tokenPassphrase } from '../phases/k3s-token.js';
import { spoolPart, openArchive, writeArchive, checkArchive, type OpenedArchive, type CheckResult } from './archive.js';
import { encryptionOf, type DecryptWith, type EncryptTo } from './crypt.js';
import { ARCHIVE_SUFFIX, FORMAT, FORMAT_VERSION, PART, archiveFileName, type Manifest, type SecretsPart } from './manifest.js';
import { TarFormatError } from './tar.js';
import { ManifestError } from './manifest.js';

/**
 * `k8s-ha backup`: run the backup pipeline (phases/backup.ts) over the
 * cluster, then write the archive where k8s-ha runs: the dump, the tokens and
 * the state file's secrets, and a manifest with every part's sha256.
 */

export interface BackupOptions {
  /** The archive; default: `NAME-STAMP.k8s-ha-backup.tar` beside the cluster file. */
  out?: string;
  to?: EncryptTo | null;
  open?: OpenOptions;
  /** For tests: the clock. */
  now?: () => Date;
}

export interface BackupResult {
  path: string;
  manifest: Manifest;
  /** Time spent dumping (remote dump + transfer + compression + spooling), ms. */
  dumpMs: number;
  totalMs: number;
  warnings: string[];
}

export function defaultArchivePath(clusterFile: string, cluster: string, at: Date): string {
  return join(dirname(clusterFile), archiveFileName(cluster, at));
}

export async function runBackup(clusterFile: string, opts: BackupOptions = {}): Promise<BackupResult> {
  const t0 = Date.now();
  const now = opts.now ?? (() => new Date());
  const started = now();
  const warnings: string[] = [];
  // The path needs the cluster's name, known once the file is loaded: a placeholder until then.
  const job: BackupJob = { out: opts.out ?? '', to: opts.to ?? null, nodePasswords: {}, nodePasswordsMissing: {} };
  const run = await ClusterRun.open(clusterFile, { ...opts.open, phases: backupPipeline(job) });
  const spec = run.deployment.spec;
  if (!job.out) job.out = defaultArchivePath(clusterFile, spec.name, started);
  let secretsSpool: Awaited<ReturnType<typeof spoolPart>> | undefined;
  try {
    // A dump only reads the cluster: no cluster lock (cluster/open.ts).
    await run.apply(undefined, { lock: false });
    if (!job.dump || !job.revision) throw new Error('the dump did not run: nothing was written');
    const stateToken = run.deployment.secrets.k3sToken;
    const serverToken = job.serverToken?.token ?? stateToken;
    if (job.serverToken && tokenPassphrase(job.serverToken.token.reveal()) !== tokenPassphrase(stateToken.reveal())) {
      warnings.push(`the token on ${job.serverToken.from} differs from the one k8s-ha has (state file or k3s.token): the backup holds the server's, which is the one the datastore's bootstrap data is encrypted with`);
    }
    if (!job.serverToken) warnings.push("no server's token file could be read (k3s not running?): the backup holds the token from the state file / k3s.token");
    const secrets: SecretsPart = {
      serverToken: serverToken.reveal(),
      ...(run.deployment.secrets.agentToken ? { agentToken: run.deployment.secrets.agentToken.reveal() } : {}),
      state: run.state.exportSecrets(),
      ...(Object.keys(job.nodePasswords).length ? { nodePasswords: job.nodePasswords } : {}),
    };
    const missing = Object.entries(job.nodePasswordsMissing);
    if (missing.length) {
      warnings.push(`no node password from ${missing.map(([h, why]) => `${h} (${why})`).join(', ')}: a restore lets such a node join as a new machine (its old node-password secret is deleted)`);
    }
    secretsSpool = await spoolPart(Readable.from([Buffer.from(JSON.stringify(secrets))]), PART.secrets, join(dirname(job.out), `.${process.pid}-${Date.now()}.${PART.secrets}.part`), job.to);
    const manifest = await writeArchive(
      job.out,
      {
        format: FORMAT,
        version: FORMAT_VERSION,
        cluster: spec.name,
        createdAt: started.toISOString(),
        source: 'cli',
        k3sVersion: job.k3sVersion ?? spec.k3s.version ?? 'unknown',
        kineRevision: job.revision.highest,
        datastore: { host: job.datastoreHost ?? '', database: spec.datastore.database, server: job.mariadbVersion ?? '' },
        encryption: encryptionOf(job.to),
      },
      [job.dump, secretsSpool],
    );
    return { path: job.out, manifest, dumpMs: job.dumpMs ?? 0, totalMs: Date.now() - t0, warnings };
  } catch (e) {
    // Spooled parts never outlive a failed backup.
    await Promise.all([job.dump?.file, secretsSpool?.file].filter((f): f is string => !!f).map((f) => rm(f, { force: true })));
    throw e;
  } finally {
    await run.close();
  }
}

export interface ListedArchive {
  path: string;
  manifest?: Manifest;
  /** Why it could not be read. */
  error?: string;
  mode?: number;
  size?: number;
}

/** Read an archive's manifest; an unreadable one is reported, not thrown. */
export async function describeArchive(path: string): Promise<ListedArchive> {
  try {
    const a = await openArchive(path);
    return { path, manifest: a.manifest, mode: a.mode, size: a.size };
  } catch (e) {
    if (e instanceof TarFormatError || e instanceof ManifestError || (e as NodeJS.ErrnoException).code) return { path, error: (e as Error).message };
    throw e;
  }
}

/** Every `*.k8s-ha-backup.tar` in a folder, newest first (by the manifest's time). */
export async function listArchives(dir: string): Promise<ListedArchive[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith(ARCHIVE_SUFFIX));
  const out = await Promise.all(names.map((n) => describeArchive(join(dir, n))));
  return out.sort((a, b) => (b.manifest?.createdAt ?? '').localeCompare(a.manifest?.createdAt ?? ''));
}

export async function checkArchiveFile(path: string, key?: DecryptWith): Promise<{ archive: OpenedArchive; result: CheckResult }> {
  const archive = await openArchive(path);
  return { archive, result: await checkArchive(archive, key) };
}
