import { diffDesired, observeDesired, type Desired, type ObservedState } from '../engine/desired.js';
import type { Phase } from '../engine/phase.js';
import type { Deployment } from '../cluster/deployment.js';
import { datastoreEndpointHost, type Cluster } from '../spec/cluster.js';
import {
  BACKUP_SCRIPT_PATH,
  BACKUP_SECRETS_PATH,
  BACKUP_SERVICE_PATH,
  BACKUP_TIMER_PATH,
  BACKUP_UNIT,
  renderBackupScript,
  renderBackupSecrets,
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
const FILES = [BACKUP_SCRIPT_PATH, BACKUP_SECRETS_PATH, BACKUP_SERVICE_PATH, BACKUP_TIMER_PATH];

function desired(d: Deployment, hostName: string): Desired {
  const c = d.spec;
  const b = c.datastore.backup;
  if (!b) return { absent: FILES, services: [{ unit: BACKUP_TIMER, enabled: false, running: false }] };
  const input = { cluster: c.name, database: c.datastore.database, host: hostName, k3sVersion: c.k3s.version ?? 'unknown', schedule: b.schedule, keep: b.keep, dir: b.dir };
  const state: Record<string, Secret> = { k3sToken: d.secrets.k3sToken, datastorePassword: d.secrets.datastorePassword, vrrpPass: d.secrets.vrrpPass, ...(d.secrets.agentToken ? { agentToken: d.secrets.agentToken } : {}) };
  return {
    files: [
      { path: BACKUP_SCRIPT_PATH, content: renderBackupScript(input), mode: 0o700 },
      {
        path: BACKUP_SECRETS_PATH,
        content: renderBackupSecrets({ serverToken: d.secrets.k3sToken, ...(d.secrets.agentToken ? { agentToken: d.secrets.agentToken } : {}), state }),
        mode: 0o600,
        // Every value in the file is a secret, the ones an earlier apply left there too.
        secretsIn: backupSecretValues,
      },
      { path: BACKUP_SERVICE_PATH, content: renderBackupService(input) },
      { path: BACKUP_TIMER_PATH, content: renderBackupTimer(input) },
    ],
    services: [{ unit: BACKUP_TIMER, restartOn: [BACKUP_TIMER_PATH] }],
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

export const datastoreBackupPhase: Phase<Deployment, ObservedState | null> = {
  id: 'datastore-backup',
  title: 'Scheduled datastore backups',
  targets: (ctx) => target(ctx.cluster.spec),
  async observe(ctx, host) {
    try {
      return await observeDesired(host, desired(ctx.cluster, host.name));
    } catch (e) {
      if (e instanceof Error && e.name === 'RenderInputError') return null; // reported by preflight
      throw e;
    }
  },
  diff(ctx, hostName, o) {
    if (!o) return [];
    const changes = diffDesired(desired(ctx.cluster, hostName), o, ctx.secrets);
    if (ctx.cluster.spec.datastore.backup) return changes;
    // Removing: stop and disable the timer while its unit file still exists
    // (systemd refuses to disable a unit whose file is gone), then the files.
    const rank = (c: (typeof changes)[number]) => ('unit' in c.target && c.target.unit !== 'systemd' ? 0 : c.action === 'delete' ? 1 : 2);
    return [...changes].sort((a, b) => rank(a) - rank(b));
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
