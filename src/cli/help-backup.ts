/** Help for backup, restore and reset (kept beside help.ts so each command's text stays in one place). */
export const BACKUP_HELP: Record<string, string> = {
  backup: `Usage: k8s-ha backup [-f FILE] [-o OUT] [--passphrase-env NAME | --passphrase-file F | --recipient AGE1...]
       k8s-ha backup --list [DIR|ARCHIVE...]
       k8s-ha backup --check ARCHIVE [--passphrase-env NAME | --passphrase-file F | --identity KEYFILE]

Backs up what a cluster cannot be rebuilt without, into one archive written
where k8s-ha runs (mode 0600): a consistent dump of the kine database
(mariadb-dump --single-transaction on the datastore host - the Galera writer
when there are several - streamed over SSH, never written on a host), the k3s
server token (read from a server), the agent token, each node's k3s node
password (/etc/rancher/node/password: k3s refuses a node whose password does
not match the hash the datastore keeps), the state file's secrets, and
manifest.json (cluster, k3s version, highest kine revision, time, the
sha256 of every part). A backup is the database AND the token: either alone
cannot restore a cluster.

The archive is a tar; with a key flag each part is an age file (age -d opens
it). The manifest is never encrypted, so --list and --check need no key.

Options:
  -o, --output OUT        the archive (default: NAME-YYYYMMDDTHHMMSSZ.k8s-ha-backup.tar
                          beside the cluster file); never overwritten
  --passphrase-env NAME   encrypt to the passphrase in environment variable NAME
  --passphrase-file F     encrypt to the passphrase in file F (first line)
  --recipient AGE1...     encrypt to an age public key (repeatable); restore
                          then needs --identity with the private key
  --list [PATH...]        list the archives in the cluster file's folder (or
                          the folders/archives given): cluster, time, revision,
                          encryption; contacts no host
  --check ARCHIVE         check every part against the manifest's sha256; with
                          the key, the decrypted content too; contacts no host.
                          Exit 1 when anything does not match

Scheduled backups on the datastore host: datastore.backup in the cluster file
(see docs/cluster-file.md); \`status\` shows the newest one's age. With
datastore.backup.recipients (age public keys) every scheduled archive is
encrypted on the host as it is written, and the token reaches the host only
encrypted: no private key and no plaintext token is on the host, so a stolen
datastore disk does not give cluster-admin. Open them with --identity.

Examples:
  k8s-ha backup -f cluster.yaml
  K8S_HA_PASS=... k8s-ha backup -f cluster.yaml --passphrase-env K8S_HA_PASS
  k8s-ha backup -f cluster.yaml --recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
  k8s-ha backup --list
  k8s-ha backup --check seed-20261201T091500Z.k8s-ha-backup.tar --identity ~/.config/age/key.txt
`,
  restore: `Usage: k8s-ha restore ARCHIVE [-f FILE] [--yes | --dry-run] [--no-verify] [--break-lock]
                      [--passphrase-env NAME | --passphrase-file F | --identity KEYFILE]

Puts a backup back, onto the machines of the cluster file - the same ones or
fresh ones. Before any host is contacted it checks that the archive is this
cluster's (its name), that every part matches the manifest's sha256, and
that the backup's token decrypts the dump's k3s bootstrap data.

Then, as a plan shown first: the load balancer, virtual IP and datastore as
apply makes them (a fresh machine gets them); k3s stopped on every agent,
then every server; the kine database replaced with the dump and its
AUTO_INCREMENT set above the highest revision the cluster ever served (the
backup's or the database's before the restore, whichever is higher), so no
watcher sees a revision twice; each node's /etc/rancher/node/password put
back as the backup has it, so fresh machines join as the nodes they replace
(for a node the backup has none for, its old node-password secret is removed
with the load and it joins with the password it has); the backup's token put
back in the state file and on the servers; the servers started one at a time, then the agents and
MetalLB; then \`k8s-ha verify\`. A restore cut off anywhere converges when
run again. Another apply or restore holding the cluster is refused.

On a terminal it asks for the cluster's name before changing anything; off
one it needs --yes.

Options:
  --yes, -y        do not ask (needed off a terminal)
  --dry-run        show what it would do, change nothing
  --no-verify      skip the verify at the end
  --break-lock     take over the cluster lock of a run that is gone (a
                   restore killed halfway leaves its lock; the lock error says
                   when it looks stale) and converge from where it stopped
  key flags        as for \`k8s-ha backup --check\`, for an encrypted archive

Exit codes: 2 when the archive is refused (another cluster's, damaged, a
token that does not fit), nothing contacted; 1 when a host step or verify fails.

Examples:
  k8s-ha restore seed-20261201T091500Z.k8s-ha-backup.tar -f cluster.yaml
  k8s-ha restore backup.tar -f cluster.yaml --identity ~/.config/age/key.txt --yes
`,
  reset: `Usage: k8s-ha reset [-f FILE] [--datastore] [--loadbalancer] [--forget] [--yes | --dry-run]

Uninstalls k3s from every node of the cluster file: the agents first, their
Node objects deleted through the API while it still answers, then the
servers - each through the k3s-agent-uninstall.sh / k3s-uninstall.sh that
apply leaves on every node (reset and those scripts do the same thing: k3s's
units, config, data, binary, pod mounts, CNI interfaces and namespaces and
k3s's iptables rules go). The datastore is kept, so \`k8s-ha apply\` builds
the cluster again on it.

Options:
  --datastore      also drop the k3s database and its accounts, k8s-ha's
                   MariaDB drop-in and certificates, the scheduled-backup timer
                   (archives already written stay), and /etc/rancher/node on
                   the nodes. On a terminal it asks for the cluster's name
  --loadbalancer   also stop and disable the load balancer, its checker and
                   keepalived, and remove the files k8s-ha wrote for them
  --forget         remove the state file afterwards (the token is then gone:
                   take a backup first if the datastore is kept)
  --yes, -y        do not ask (needed off a terminal)
  --dry-run        show what it would do, change nothing

Packages: every install k8s-ha makes records on the host which packages it
added (absent before, dependencies included) in
/var/lib/k8s-ha/installed-packages. Once a reset removes everything k8s-ha
runs on a host (a load balancer + datastore host needs both --loadbalancer
and --datastore), it purges exactly those - with MariaDB's data folder when
k8s-ha installed MariaDB and no other database was made in it - and leaves
every package that was there before.

Examples:
  k8s-ha reset -f cluster.yaml --dry-run
  k8s-ha reset -f cluster.yaml --datastore --loadbalancer --yes --forget
`,
};
