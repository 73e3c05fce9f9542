import { createHash } from 'node:crypto';
import { diffDesired, observeDesired, type Desired, type ObservedState } from '../engine/desired.js';
import type { Change, Phase } from '../engine/phase.js';
import { encryptBuffer } from '../backup/crypt.js';
import type { Deployment } from '../cluster/deployment.js';
import { datastoreEndpointHost, type Cluster } from '../spec/cluster.js';
import {
  BACKUP_SCRIPT_PATH,
  BACKUP_SECRETS_AGE_PATH,
  BACKUP_SECRETS_PATH,
  BACKUP_SECRETS_RECORD_PATH,
  BACKUP_SERVICE_PATH,
  BACKUP_TIMER_PATH,
  BACKUP_UNIT,
  renderBackupScript,
  renderBackupSecrets,
  renderBackupSecretsRecord,
  renderBackupService,
  renderBackupTimer,
} from '../render/backup-timer.js';
import type { Secret } from '../util/secret.js';
import { renderProblem } from './infra-common.js';

/**
 * Scheduled backups (datastore.backup) on the datastore host the servers
 * write to (the Galera writer): the script, the secrets it puts in every
 * archive (0600: the token must be in a backup), a oneshot service and its
 * timer. Without datastore.backup, what an earlier apply installed is
 * removed; archives already written are left where they are.
 */

export const BACKUP_TIMER = `${BACKUP_UNIT}.timer`;
const FILES = [BACKUP_SCRIPT_PATH, BACKUP_SECRETS_PATH, BACKUP_SERVICE_PATH, BACKUP_TIMER_PATH, BACKUP_SECRETS_AGE_PATH, BACKUP_SECRETS_RECORD_PATH];

/** The secrets part every archive carries (the token must be in a backup). */
function secretsJson(d: Deployment): string {
  const state: Record<string, Secret> = { k3sToken: d.secrets.k3sToken, datastorePassword: d.secrets.datastorePassword, vrrpPass: d.secrets.vrrpPass, ...(d.secrets.agentToken ? { agentToken: d.secrets.agentToken } : {}) };
  return renderBackupSecrets({ serverToken: d.secrets.k3sToken, ...(d.secrets.agentToken ? { agentToken: d.secrets.agentToken } : {}), state });
}

function desired(d: Deployment, hostName: string): Desired {
  const c = d.spec;
  const b = c.datastore.backup;
  if (!b) return { absent: FILES, services: [{ unit: BACKUP_TIMER, enabled: false, running: false }] };
  const recipients = b.recipients;
  const input = { cluster: c.name, database: c.datastore.database, host: hostName, k3sVersion: c.k3s.version ?? 'unknown', schedule: b.schedule, keep: b.keep, dir: b.dir, recipients };
  const unitFiles = [
    { path: BACKUP_SCRIPT_PATH, content: renderBackupScript(input), mode: 0o700 },
    { path: BACKUP_SERVICE_PATH, content: renderBackupService(input) },
    { path: BACKUP_TIMER_PATH, content: renderBackupTimer(input) },
  ];
  const services = [{ unit: BACKUP_TIMER, restartOn: [BACKUP_TIMER_PATH] }];
  if (recipients.length) {
    // Encrypted: the plaintext secrets never on the host; the encrypted part is written by encryptChange.
    const plainSha = createHash('sha256').update(secretsJson(d)).digest('hex');
    return {
      packages: ['age'],
      files: [...unitFiles, { path: BACKUP_SECRETS_RECORD_PATH, content: renderBackupSecretsRecord(plainSha, recipients), mode: 0o600 }],
      absent: [BACKUP_SECRETS_PATH],
      services,
    };
  }
  return {
    files: [
      ...unitFiles,
      // Every value in the file is a secret, the ones an earlier apply left there too.
      { path: BACKUP_SECRETS_PATH, content: secretsJson(d), mode: 0o600, secretsIn: backupSecretValues },
    ],
    absent: [BACKUP_SECRETS_AGE_PATH, BACKUP_SECRETS_RECORD_PATH],
    services,
  };
}

interface BackupObserved {
  state: ObservedState;
  /** The encrypted secrets part is on the host. */
  encryptedSecrets: boolean;
}

/**
 * The secrets part encrypted here, to the recipients, and written 0600: age
 * output differs every time, so it is written only when the record beside it
 * (plaintext sha256 and recipients) changes or the file is missing — before
 * the record, so a run cut off between the two writes it again.
 */
function encryptChange(d: Deployment, hostName: string, recipients: string[], exists: boolean): Change {
  return {
    action: exists ? 'update' : 'create',
    target: { host: hostName, file: BACKUP_SECRETS_AGE_PATH },
    summary: `${exists ? 'update' : 'create'} ${BACKUP_SECRETS_AGE_PATH} (mode 0600): the token and the state file's secrets, encrypted here to ${recipients.length} age recipient${recipients.length > 1 ? 's' : ''}; the plaintext is never on the host`,
    apply: async (h) => {
      const enc = await encryptBuffer(Buffer.from(secretsJson(d)), { recipients });
      await h.writeFile(BACKUP_SECRETS_AGE_PATH, enc, { mode: 0o600 });
    },
  };
}

/** Every string in the secrets file (JSON); nothing when it does not parse. */
export function backupSecretValues(content: string): string[] {
  try {
    const out: string[] = [];
    const walk = (v: unknown): void => {
      if (typeof v === 'string') out.push(v);
      else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x);
    };
    walk(JSON.parse(content));
    return out;
  } catch {
    return [];
  }
}

function target(c: Cluster): string[] {
  const ds = datastoreEndpointHost(c);
  return ds ? [ds.name] : [];
}

export const datastoreBackupPhase: Phase<Deployment, BackupObserved | null> = {
  id: 'datastore-backup',
  title: 'Scheduled datastore backups',
  targets: (ctx) => target(ctx.cluster.spec),
  async observe(ctx, host) {
    try {
      const state = await observeDesired(host, desired(ctx.cluster, host.name));
      const encryptedSecrets = ctx.cluster.spec.datastore.backup?.recipients.length ? (await host.readFile(BACKUP_SECRETS_AGE_PATH)) !== null : false;
      return { state, encryptedSecrets };
    } catch (e) {
      if (e instanceof Error && e.name === 'RenderInputError') return null; // reported by preflight
      throw e;
    }
  },
  diff(ctx, hostName, o) {
    if (!o) return [];
    const changes = diffDesired(desired(ctx.cluster, hostName), o.state, ctx.secrets);
    const b = ctx.cluster.spec.datastore.backup;
    if (b) {
      const recordChanges = changes.some((c) => 'file' in c.target && c.target.file === BACKUP_SECRETS_RECORD_PATH);
      if (b.recipients.length && (recordChanges || !o.encryptedSecrets)) {
        const at = Math.max(0, changes.findIndex((c) => 'file' in c.target && c.target.file === BACKUP_SECRETS_RECORD_PATH));
        changes.splice(recordChanges ? at : changes.length, 0, encryptChange(ctx.cluster, hostName, b.recipients, o.encryptedSecrets));
      }
      return changes;
    }
    // Removing: stop and disable the timer while its unit file still exists
    // (systemd refuses to disable a unit whose file is gone), then the files.
    const rank = (c: (typeof changes)[number]) => ('unit' in c.target && c.target.unit !== 'systemd' ? 0 : c.action === 'delete' ? 1 : 2);
    return [...changes].sort((a, b2) => rank(a) - rank(b2));
  },
  preflight(ctx) {
    try {
      for (const h of target(ctx.cluster.spec)) desired(ctx.cluster, h);
      return [];
    } catch (e) {
      return [renderProblem(e, (f) => (f === 'k3sVersion' ? 'k3s.version' : f === 'cluster' ? 'name' : `datastore.backup.${f}`), 'fix the value in the cluster file')];
    }
  },
};
