import { createGzip } from 'node:zlib';
import { PassThrough } from 'node:stream';
import { join, dirname } from 'node:path';
import type { AnyPhase, Change, Phase } from '../engine/phase.js';
import type { Deployment } from '../cluster/deployment.js';
import { datastoreEndpointTargets, hostsWithRole } from '../spec/cluster.js';
import { sh } from '../transport/quote.js';
import type { Host } from '../transport/host.js';
import { Secret } from '../util/secret.js';
import { spoolPart, type Spooled } from '../backup/archive.js';
import type { EncryptTo } from '../backup/crypt.js';
import { PART } from '../backup/manifest.js';
import { dumpCommand, parseRevision, revisionSql, tableExistsSql, type Revision } from '../backup/sql.js';
import { MARIADB_BATCH } from './infra-mariadb.js';
import { NODE_PASSWORD_PATH, readServerToken } from './k3s-token.js';
import { K3S_BINARY_PATH } from '../render/k3s.js';

/**
 * The phases of `k8s-ha backup` (STYLE.md 1: its own list, from the same
 * phase type as apply). Reading the servers changes nothing; the one change
 * is the dump, streamed from the datastore host over SSH into a local file
 * beside the archive: nothing is written on any host.
 */

/** What one backup run collects; made per run, read by the CLI to write the archive. */
export interface BackupJob {
  /** The archive to write; parts are spooled beside it. */
  out: string;
  to: EncryptTo | null;
  /** How long the dump may take. Default 1 h. */
  dumpTimeoutMs?: number;
  serverToken?: { token: Secret; from: string };
  k3sVersion?: string;
  datastoreHost?: string;
  mariadbVersion?: string;
  dump?: Spooled;
  /** MAX(id) and AUTO_INCREMENT once the dump had finished. */
  revision?: Revision;
  dumpMs?: number;
  /** Each node's /etc/rancher/node/password (host name -> password). */
  nodePasswords: Record<string, string>;
  /** Nodes that had none (k3s never ran there) or could not be read: host name -> why. */
  nodePasswordsMissing: Record<string, string>;
}

interface ServerRead {
  token: Secret | null;
  version: string | null;
}

/** `k3s version v1.31.4+k3s1 (abcdef)` -> `v1.31.4+k3s1`. */
export function parseK3sVersion(stdout: string): string | null {
  return /k3s version (v\S+)/.exec(stdout)?.[1] ?? null;
}

function serversPhase(job: BackupJob): Phase<Deployment, ServerRead> {
  return {
    id: 'backup-servers',
    title: 'Read the token and version from the servers',
    targets: (ctx) => hostsWithRole(ctx.cluster.spec, 'server').map((h) => h.name),
    async observe(_ctx, host: Host): Promise<ServerRead> {
      const token = await readServerToken(host);
      const v = await host.exec(sh`${K3S_BINARY_PATH} --version`, { allowFailure: true, sudo: false });
      const version = v.code === 0 ? parseK3sVersion(v.stdout) : null;
      // The first server that has them is the one recorded (file order).
      if (token && !job.serverToken) job.serverToken = { token, from: host.name };
      if (version && !job.k3sVersion) job.k3sVersion = version;
      return { token, version };
    },
    diff: () => [],
  };
}

/**
 * Every node's password (FACTS: k3s keeps its hash in the datastore, so a
 * node on a fresh machine with another password is refused): read as root,
 * kept only in memory and in the (encrypted, 0600) archive, masked in all
 * output like every other secret.
 */
function nodePasswordsPhase(job: BackupJob): Phase<Deployment, { has: boolean }> {
  return {
    id: 'backup-node-passwords',
    title: "Read each node's k3s node password",
    targets: (ctx) => [...hostsWithRole(ctx.cluster.spec, 'server'), ...hostsWithRole(ctx.cluster.spec, 'agent')].map((h) => h.name),
    async observe(ctx, host: Host) {
      let text: string | undefined;
      try {
        text = (await host.readFile(NODE_PASSWORD_PATH))?.toString('utf8').trim();
      } catch (e) {
        job.nodePasswordsMissing[host.name] = (e as Error).message.split('\n')[0]!;
        return { has: false };
      }
      if (!text) {
        job.nodePasswordsMissing[host.name] = `no ${NODE_PASSWORD_PATH}: k3s never ran there`;
        return { has: false };
      }
      ctx.secrets.add(new Secret(text));
      job.nodePasswords[host.name] = text;
      delete job.nodePasswordsMissing[host.name];
      return { has: true };
    },
    diff: () => [],
  };
}

interface DumpRead {
  mariadbUp: boolean;
  tableExists: boolean;
  version: string;
  revision: Revision | null;
}

async function readRevision(host: Host, database: string): Promise<{ exists: boolean; revision: Revision | null }> {
  const t = await host.exec(MARIADB_BATCH, { stdin: tableExistsSql(database) });
  if (!/^table\t1$/m.test(t.stdout)) return { exists: false, revision: null };
  const r = await host.exec(MARIADB_BATCH, { stdin: revisionSql(database) });
  return { exists: true, revision: parseRevision(r.stdout) };
}

function dumpPhase(job: BackupJob): Phase<Deployment, DumpRead> {
  return {
    id: 'backup-dump',
    title: 'Dump the kine database',
    targets: (ctx) => datastoreEndpointTargets(ctx.cluster.spec),
    async observe(ctx, host: Host): Promise<DumpRead> {
      const db = ctx.cluster.spec.datastore.database;
      const v = await host.exec(MARIADB_BATCH, { stdin: "SELECT 'version', VERSION();\n", allowFailure: true });
      if (v.code !== 0) return { mariadbUp: false, tableExists: false, version: '', revision: null };
      const version = /^version\t(.*)$/m.exec(v.stdout)?.[1] ?? '';
      const { exists, revision } = await readRevision(host, db);
      return { mariadbUp: true, tableExists: exists, version, revision };
    },
    diff(ctx, hostName, o): Change[] {
      if (job.dump) return [];
      const db = ctx.cluster.spec.datastore.database;
      return [
        {
          action: 'run',
          target: { host: hostName, object: `mariadb/${db} dump` },
          summary: `dump database ${db} (kine revision ${o.revision?.maxId ?? '?'}) over SSH into ${job.out}${job.to ? ', encrypted' : ''}`,
          apply: async (h) => {
            const t0 = Date.now();
            job.datastoreHost = hostName;
            job.mariadbVersion = o.version;
            const raw = new PassThrough();
            const gzip = createGzip({ level: 6 });
            raw.once('error', (e) => gzip.destroy(e));
            const spooled = spoolPart(raw.pipe(gzip), PART.dump, join(dirname(job.out), `.${process.pid}-${Date.now()}.${PART.dump}.part`), job.to);
            try {
              await h.exec(dumpCommand(db), { stdout: raw, timeoutMs: job.dumpTimeoutMs ?? 3_600_000 });
            } catch (e) {
              raw.destroy(e as Error);
              await spooled.catch(() => undefined);
              throw e;
            }
            raw.end();
            job.dump = await spooled;
            // Read after the dump: at least the highest revision in it.
            job.revision = (await readRevision(h, db)).revision ?? { maxId: 0, highest: 0 };
            job.dumpMs = Date.now() - t0;
          },
        },
      ];
    },
    preflight(ctx, observed) {
      const c = ctx.cluster.spec;
      return [...observed].flatMap(([name, o]) => {
        if (!o.mariadbUp) {
          return [{ severity: 'error' as const, path: `datastore (${name})`, message: `MariaDB on ${name} does not answer`, hint: `start it (systemctl start mariadb on ${name}), or run \`k8s-ha apply\` first` }];
        }
        if (!o.tableExists) {
          return [{ severity: 'error' as const, path: `datastore (${name})`, message: `database ${c.datastore.database} on ${name} has no kine table: k3s never started on it, so there is nothing to back up`, hint: 'run `k8s-ha apply` to build the cluster first' }];
        }
        return [];
      });
    },
  };
}

/** The backup pipeline, top to bottom. */
export function backupPipeline(job: BackupJob): AnyPhase<Deployment>[] {
  return [serversPhase(job), nodePasswordsPhase(job), dumpPhase(job)];
}
