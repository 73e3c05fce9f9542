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
/**
 * With datastore.backup.recipients: the secrets part as k8s-ha encrypted it
 * before it reached the host (the plaintext is never there), and beside it
 * the plaintext's sha256 and the recipients it was encrypted to (for the
 * manifest, and so an apply re-encrypts only when either changes).
 */
export const BACKUP_SECRETS_AGE_PATH = '/etc/k8s-ha/backup-secrets.json.age';
export const BACKUP_SECRETS_RECORD_PATH = '/etc/k8s-ha/backup-secrets.json.sha256';
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
  /** age recipients: every part encrypted to them as it is written (needs the `age` package). Default none. */
  recipients?: string[];
}

const SAFE = /^[A-Za-z0-9._+-]+$/;

function check(input: BackupScheduleInput): void {
  for (const k of ['cluster', 'database', 'host', 'k3sVersion'] as const) {
    if (!SAFE.test(input[k])) throw new RenderInputError(k, `must be letters, digits and . _ + - only (got ${JSON.stringify(input[k])})`);
  }
  if (!/^\/[A-Za-z0-9._/-]*$/.test(input.dir) || input.dir.split('/').includes('..')) throw new RenderInputError('dir', 'must be an absolute path without ..');
  if (!/^[A-Za-z0-9*,./:~ -]{1,100}$/.test(input.schedule)) throw new RenderInputError('schedule', 'is not a systemd calendar expression');
  if (!Number.isInteger(input.keep) || input.keep < 1) throw new RenderInputError('keep', 'must be a whole number of at least 1');
  for (const r of input.recipients ?? []) if (!/^age1[02-9ac-hj-np-z]{58}$/.test(r)) throw new RenderInputError('recipients', `${JSON.stringify(r)} is not an age recipient`);
}

/** The record beside the encrypted secrets part: `<sha256 of the plaintext> <recipient,...>`. */
export function renderBackupSecretsRecord(plainSha256: string, recipients: string[]): string {
  return `${plainSha256} ${recipients.join(',')}\n`;
}

export function renderBackupScript(input: BackupScheduleInput): string {
  check(input);
  const recipients = input.recipients ?? [];
  const enc = recipients.length > 0;
  const dumpName = enc ? `${PART.dump}.age` : PART.dump;
  const secretsName = enc ? `${PART.secrets}.age` : PART.secrets;
  const dumpCmd = 'mariadb-dump --single-transaction --quick --hex-blob --skip-add-locks --skip-dump-date --default-character-set=utf8mb4 "$DB"';
  const plainDump = `# One consistent snapshot (--single-transaction); the dump's own exit status, not gzip's.
{ rc=0; ${dumpCmd} || rc=$?; echo "$rc" > "$work/rc"; } | gzip -6 -n > "$work/${PART.dump}"`;
  // The plaintext never touches the disk: gzip's output goes to age, and
  // through a fifo to sha256sum for the manifest's plainSha256.
  const encryptedDump = `# One consistent snapshot (--single-transaction), compressed and encrypted as it is written; the
# dump's own exit status is checked, age's (the pipeline's) stops the script under set -e.
mkfifo "$work/plain"
sha256sum < "$work/plain" | cut -d' ' -f1 > "$work/plain.sha" &
{ rc=0; ${dumpCmd} || rc=$?; echo "$rc" > "$work/rc"; } | gzip -6 -n | tee "$work/plain" | age $RECIPIENTS > "$work/${dumpName}"
wait
dump_plain=$(cat "$work/plain.sha")`;
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
${enc ? `SECRETS_AGE=\${K8S_HA_BACKUP_SECRETS_AGE:-${BACKUP_SECRETS_AGE_PATH}}
SECRETS_RECORD=\${K8S_HA_BACKUP_SECRETS_RECORD:-${BACKUP_SECRETS_RECORD_PATH}}
# Encrypted to these age recipients (public keys; no private key is on this host).
RECIPIENTS="${recipients.map((r) => `-r ${r}`).join(' ')}"
` : `SECRETS=\${K8S_HA_BACKUP_SECRETS:-${BACKUP_SECRETS_PATH}}
`}
mkdir -p "$DIR"
chmod 0700 "$DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
work=$(mktemp -d "$DIR/.k8s-ha-backup.XXXXXX")
trap 'rm -rf "$work"' EXIT

${enc ? encryptedDump : plainDump}
[ "$(cat "$work/rc")" = 0 ] || { echo "k8s-ha-backup: mariadb-dump of $DB failed (exit $(cat "$work/rc"))" >&2; exit 1; }

# The highest revision once the dump is done: MAX(id), or AUTO_INCREMENT - 1 when higher.
rev=$(printf "SELECT 'max', COALESCE(MAX(id), 0) FROM \\\`%s\\\`.kine;\\nSELECT 'next', AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = '%s' AND TABLE_NAME = 'kine';\\n" "$DB" "$DB" |
  mariadb --batch --skip-column-names | awk -F '\\t' '$1 == "max" { m = $2 } $1 == "next" && $2 != "NULL" { n = $2 - 1 } END { print (n > m ? n : m) + 0 }')
server=$(echo "SELECT VERSION();" | mariadb --batch --skip-column-names)
${enc ? `cp "$SECRETS_AGE" "$work/${secretsName}"
secrets_plain=$(cut -d' ' -f1 "$SECRETS_RECORD")` : `cp "$SECRETS" "$work/${secretsName}"`}

# name, sha256 and size of a part as stored; with a second argument, the plaintext's sha256 too.
part() { printf '{ "name": "%s", "sha256": "%s", "size": %s%s }' "$1" "$(sha256sum < "$work/$1" | cut -d' ' -f1)" "$(stat -c %s "$work/$1")" "\${2:+, \\"plainSha256\\": \\"$2\\"}"; }
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
  "encryption": ${enc ? `{ "to": "recipients", "recipients": [${recipients.map((r) => `"${r}"`).join(', ')}] }` : 'null'},
  "parts": [ $(part ${dumpName}${enc ? ' "$dump_plain"' : ''}), $(part ${secretsName}${enc ? ' "$secrets_plain"' : ''}) ]
}
EOF
out="$DIR/$CLUSTER-$stamp${ARCHIVE_SUFFIX}"
tar --format=ustar -C "$work" -cf "$work/archive" manifest.json ${dumpName} ${secretsName}
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
