import { RenderInputError } from './common.js';
import { renderUnit } from './systemd.js';
import type { Secret } from '../util/secret.js';
import { ARCHIVE_SUFFIX, FORMAT, FORMAT_VERSION, PART } from '../backup/manifest.js';
import { quote } from '../transport/quote.js';

/**
 * Scheduled backups on the datastore host: a systemd timer starts a oneshot
 * service that runs the script below. The script writes the same archive
 * `k8s-ha backup` writes (manifest.json, kine.sql.gz, secrets.json in a
 * tar; `k8s-ha restore` and `backup --check` read it), mode 0600 in a 0700
 * folder, then keeps the newest `keep`. Pure and deterministic.
 */

export const BACKUP_SCRIPT_PATH = '/usr/local/lib/k8s-ha/backup.sh';
/** The secrets part the script copies into each archive (0600): the token must be in every backup. */
export const BACKUP_SECRETS_PATH = '/etc/k8s-ha/backup-secrets.json';
export const BACKUP_UNIT = 'k8s-ha-backup';
export const BACKUP_SERVICE_PATH = `/etc/systemd/system/${BACKUP_UNIT}.service`;
export const BACKUP_TIMER_PATH = `/etc/systemd/system/${BACKUP_UNIT}.timer`;

export interface BackupScheduleInput {
  cluster: string;
  database: string;
  /** The datastore host's name (the manifest's datastore.host). */
  host: string;
  k3sVersion: string;
  schedule: string;
  keep: number;
  dir: string;
}

const SAFE = /^[A-Za-z0-9._+-]+$/;

function check(input: BackupScheduleInput): void {
  for (const k of ['cluster', 'database', 'host', 'k3sVersion'] as const) {
    if (!SAFE.test(input[k])) throw new RenderInputError(k, `must be letters, digits and . _ + - only (got ${JSON.stringify(input[k])})`);
  }
  if (!/^\/[A-Za-z0-9._/-]*$/.test(input.dir) || input.dir.split('/').includes('..')) throw new RenderInputError('dir', 'must be an absolute path without ..');
  if (!/^[A-Za-z0-9*,./:~ -]{1,100}$/.test(input.schedule)) throw new RenderInputError('schedule', 'is not a systemd calendar expression');
  if (!Number.isInteger(input.keep) || input.keep < 1) throw new RenderInputError('keep', 'must be a whole number of at least 1');
}

export function renderBackupScript(input: BackupScheduleInput): string {
  check(input);
  const re = `^${input.cluster.replace(/[.+]/g, '\\$&')}-[0-9]{8}T[0-9]{6}Z${ARCHIVE_SUFFIX.replace(/\./g, '\\.')}$`;
  return `#!/bin/sh
# Scheduled backup of the ${input.cluster} cluster's datastore, run by ${BACKUP_UNIT}.timer.
# Writes the archive \`k8s-ha backup\` writes (restore it with \`k8s-ha restore FILE\`),
# mode 0600, and keeps the newest ${input.keep}. Managed by k8s-ha: local edits are overwritten.
set -eu
umask 077
DIR=${quote(input.dir)}
KEEP=${input.keep}
DB=${input.database}
CLUSTER=${input.cluster}
SECRETS=\${K8S_HA_BACKUP_SECRETS:-${BACKUP_SECRETS_PATH}}

mkdir -p "$DIR"
chmod 0700 "$DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
work=$(mktemp -d "$DIR/.k8s-ha-backup.XXXXXX")
trap 'rm -rf "$work"' EXIT

# One consistent snapshot (--single-transaction); the dump's own exit status, not gzip's.
{ rc=0; mariadb-dump --single-transaction --quick --hex-blob --skip-add-locks --skip-dump-date --default-character-set=utf8mb4 "$DB" || rc=$?; echo "$rc" > "$work/rc"; } | gzip -6 -n > "$work/${PART.dump}"
[ "$(cat "$work/rc")" = 0 ] || { echo "k8s-ha-backup: mariadb-dump of $DB failed (exit $(cat "$work/rc"))" >&2; exit 1; }

# The highest revision once the dump is done: MAX(id), or AUTO_INCREMENT - 1 when higher.
rev=$(printf "SELECT 'max', COALESCE(MAX(id), 0) FROM \\\`%s\\\`.kine;\\nSELECT 'next', AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = '%s' AND TABLE_NAME = 'kine';\\n" "$DB" "$DB" |
  mariadb --batch --skip-column-names | awk -F '\\t' '$1 == "max" { m = $2 } $1 == "next" && $2 != "NULL" { n = $2 - 1 } END { print (n > m ? n : m) + 0 }')
server=$(echo "SELECT VERSION();" | mariadb --batch --skip-column-names)
cp "$SECRETS" "$work/${PART.secrets}"

part() { printf '{ "name": "%s", "sha256": "%s", "size": %s }' "$1" "$(sha256sum < "$work/$1" | cut -d' ' -f1)" "$(stat -c %s "$work/$1")"; }
cat > "$work/manifest.json" <<EOF
{
  "format": "${FORMAT}",
  "version": ${FORMAT_VERSION},
  "cluster": "$CLUSTER",
  "createdAt": "$created",
  "source": "scheduled",
  "k3sVersion": "${input.k3sVersion}",
  "kineRevision": $rev,
  "datastore": { "host": "${input.host}", "database": "$DB", "server": "$server" },
  "encryption": null,
  "parts": [ $(part ${PART.dump}), $(part ${PART.secrets}) ]
}
EOF
out="$DIR/$CLUSTER-$stamp${ARCHIVE_SUFFIX}"
tar --format=ustar -C "$work" -cf "$work/archive" manifest.json ${PART.dump} ${PART.secrets}
chmod 0600 "$work/archive"
mv "$work/archive" "$out"

# Rotation: the newest $KEEP of this cluster's archives stay.
ls -1 "$DIR" | grep -E '${re}' | sort -r | tail -n +$((KEEP + 1)) | while read -r old; do rm -f "$DIR/$old"; done
echo "k8s-ha-backup: wrote $out (kine revision $rev)"
`;
}

export function renderBackupService(input: BackupScheduleInput): string {
  check(input);
  return renderUnit({
    comment: [`Scheduled backup of the ${input.cluster} datastore. Managed by k8s-ha.`],
    Unit: [
      ['Description', `k8s-ha backup of the ${input.cluster} datastore`],
      ['After', 'mariadb.service'],
      ['Requires', 'mariadb.service'],
    ],
    Service: [
      ['Type', 'oneshot'],
      ['ExecStart', BACKUP_SCRIPT_PATH],
      ['UMask', '0077'],
      ['Nice', '10'],
      ['IOSchedulingClass', 'idle'],
    ],
  });
}

export function renderBackupTimer(input: BackupScheduleInput): string {
  check(input);
  return renderUnit({
    comment: [`When ${BACKUP_UNIT}.service runs. Managed by k8s-ha.`],
    Unit: [['Description', `k8s-ha backup of the ${input.cluster} datastore (${input.schedule})`]],
    Timer: [
      ['OnCalendar', input.schedule],
      // A backup missed while the host was off runs at the next boot.
      ['Persistent', 'true'],
    ],
    Install: [['WantedBy', 'timers.target']],
  });
}

/** The secrets part as the script copies it: the same JSON `k8s-ha backup` writes. */
export function renderBackupSecrets(s: { serverToken: Secret; agentToken?: Secret; state: Record<string, Secret> }): string {
  return (
    JSON.stringify({
      serverToken: s.serverToken.reveal(),
      ...(s.agentToken ? { agentToken: s.agentToken.reveal() } : {}),
      state: Object.fromEntries(Object.entries(s.state).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, v.reveal()])),
    }) + '\n'
  );
}
