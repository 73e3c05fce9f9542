import { BACKUP_HELP } from './help-backup.js';

/** The help texts, one per command, each with examples (PRODUCT.md: every command has them). */
export const HELP: Record<string, string> = {
  ...BACKUP_HELP,
  main: `k8s-ha: a highly available k3s cluster from one cluster file

Usage: k8s-ha <command> [options]

Commands:
  init        write a commented starter cluster file
  validate    check a cluster file; every problem at once
  schema      print the cluster file's JSON Schema
  plan        show every change apply would make, per host
  apply       make those changes (asks first on a terminal), then verify
  kubeconfig  write the cluster's kubeconfig (pointed at the LB/VIP) or merge it
  verify      prove the cluster works: nodes, a LoadBalancer Service, --drill
  status      one screen: hosts, load balancer, VIP, datastore, nodes, MetalLB (--serve: a live page)
  backup      the datastore and the token in one archive (--list, --check)
  restore     a backup onto the same or fresh machines, then verify
  reset       uninstall k3s (and on request the LB and the datastore)
  node        node remove NAME: take a server or agent out of the cluster
  lab         real local machines for trying k8s-ha (root)
  version     print the version

Common options:
  -f, --file FILE     the cluster file, also as the argument: k8s-ha plan FILE
                      (default: $K8S_HA_FILE or ./cluster.yaml)
      --json          machine-readable output
  -h, --help          help for a command

Exit codes: 0 ok; 1 a host operation or check failed; 2 bad input (cluster
file, flag), no host contacted; 3 plan --detailed-exitcode with changes
pending; 130 interrupted.

Examples:
  k8s-ha init -o cluster.yaml
  k8s-ha validate -f cluster.yaml
  k8s-ha plan -f cluster.yaml
  k8s-ha apply -f cluster.yaml --yes
`,
  init: `Usage: k8s-ha init [-o FILE] [--name NAME] [--lb ADDR] [--servers A,B] [--agents A,B,C] [--pool RANGE] [--force]

Writes a commented starter cluster file. On a terminal it asks for what the
flags do not give; otherwise the flags (or their defaults) are used.

Examples:
  k8s-ha init -o cluster.yaml
  k8s-ha init -o home.yaml --name home --lb 192.168.1.10 --servers 192.168.1.11,192.168.1.12 \\
      --agents 192.168.1.21,192.168.1.22,192.168.1.23 --pool 192.168.1.200-192.168.1.220
`,
  validate: `Usage: k8s-ha validate [FILE | -f FILE] [--json]

Checks the cluster file against the schema and the cross-field rules and
lists every problem with its line, dotted path and fix. Contacts no host.
Exit code 2 when there is an error; warnings alone exit 0.

Examples:
  k8s-ha validate examples/seed.yaml
  k8s-ha validate -f cluster.yaml --json | jq '.problems[]'
`,
  schema: `Usage: k8s-ha schema

Prints the cluster file's JSON Schema (the same one editors use through the
yaml-language-server comment at the top of the file).

Example:
  k8s-ha schema > cluster.schema.json
`,
  plan: `Usage: k8s-ha plan [FILE | -f FILE] [--json] [--detailed-exitcode] [--force] [--concurrency N] [--accept-new-host-key HOST]

Connects to every host, reads its state and shows, per phase and host, every
change apply would make: + create, ~ update/restart/reload, - delete, > run
(packages, files as diffs with secrets masked, services, objects), and the
order hosts are changed in when it is not all at once. --json carries each
change's action, target (host and file, unit, packages or object), before and
after. Changes nothing on any host.

Options:
  --detailed-exitcode   exit 3 when changes are pending (0 when none)
  --concurrency N       hosts worked on at once (default 5)
  --accept-new-host-key HOST   accept a changed SSH host key for HOST deliberately

Examples:
  k8s-ha plan -f cluster.yaml
  k8s-ha plan -f cluster.yaml --json > plan.json
`,
  node: `Usage: k8s-ha node remove NAME [-f FILE] [--yes | --dry-run] [--force] [--delete-emptydir-data] [--drain-timeout S] [--json] [--break-lock] [--accept-new-host-key HOST]

Takes the k3s server or agent NAME out of the cluster, as \`remove: true\` on
the host in the cluster file does on the next apply (the same steps). The
plan is shown first and asked for on a terminal (--yes off one; --dry-run
shows it and stops). Under the cluster lock, in this order:
  1. a server: out of every load balancer's upstreams, nginx/HAProxy reloaded
     gracefully (clients of the API see no failed request);
  2. cordoned, drained (evictions honour PodDisruptionBudgets; bounded by
     --drain-timeout), its Node object deleted through a server that stays,
     and its NAME.node-password.k3s secret, so a host of that name can join again;
  3. k3s-uninstall.sh / k3s-agent-uninstall.sh run on it;
  4. its datastore account dropped; NAME forgotten in the state file.
NAME may be a host of the file, or one the state file records that is no
longer in the file (a vanished host). Refused: the last server (a warning
when fewer than two remain), a load balancer or datastore host, and a host
that cannot be reached — unless --force, which then removes its Node object,
upstream and account and does nothing on the machine.
  --force                  remove an unreachable host; drain pods no controller manages
  --delete-emptydir-data   drain pods with emptyDir volumes (their data is lost)
  --drain-timeout S        how long the drain may take (default 300)
Interrupted, it can simply be run again. Afterwards delete NAME from the
cluster file (or keep it with remove: true: later applies skip it).

Examples:
  k8s-ha node remove agent3 -f cluster.yaml
  k8s-ha node remove server2 -f cluster.yaml --dry-run
  k8s-ha node remove agent2 -f cluster.yaml --force --yes    # the machine is dead
`,
  apply: `Usage: k8s-ha apply [FILE | -f FILE] [--yes] [--json] [--no-verify] [--break-lock] [--force] [--delete-emptydir-data] [--drain-timeout S] [--concurrency N] [--accept-new-host-key HOST]

Shows the plan, asks for confirmation when standard input is a terminal,
also with the output piped (--yes skips it; with no terminal no question is
asked), then runs exactly that plan, phase by phase. A phase that finds more
to do than the plan showed (a host changed meanwhile) stops before changing
anything and lists the difference.
It holds the cluster lock (/var/lib/k8s-ha/lock on the datastore host) while
it changes hosts, so two applies, or an apply and a restore, never run at
once; --break-lock removes a lock left by a run that is gone.

Upgrades: change k3s.version and apply. The plan shows the rollout: servers
one at a time, each taken out of every load balancer first (waits.lbDrain
for its connections), restarted, and put back once ready (/readyz, its node
Ready on the new version); then agents in batches of upgrade.agentBatch,
each cordoned, drained (evictions honour PodDisruptionBudgets; first,
kube-controller-manager and kube-scheduler must have leaders again, bounded
by waits.leaderElection), upgraded,
Ready on the new version, uncordoned. A new metallb.version is applied and
waited for (controller and speakers rolled out). Refused with the way
out: a downgrade, a skipped minor version, an agent newer than the servers,
and (unless --force) a cluster that is not healthy before the start. A
failure stops where it is; running apply again resumes.
  --force                  upgrade an unhealthy cluster; drain pods no controller manages;
                           remove a host with remove: true that cannot be reached
  --delete-emptydir-data   drain pods with emptyDir volumes (their data is lost)
  --drain-timeout S        how long one node's drain may take (default 300)
Nodes: a host added to the file joins; a host with \`remove: true\` is taken out
(see \`k8s-ha node --help\`: the same steps); a host that vanished from the file
is refused with the way to remove it. A re-installed machine (changed host
key: --accept-new-host-key HOST) gets its old Node object and node-password
secret deleted before it joins, as the plan shows.
Re-running it is safe: a converged cluster gets no change and no restart. An
interrupted apply (Ctrl-C, a dropped connection) can simply be run again.
Ends with \`k8s-ha verify\` (without the drill) unless --no-verify; a failed
check makes the exit code 1.

Examples:
  k8s-ha apply -f cluster.yaml
  k8s-ha apply -f cluster.yaml --yes --json > apply.log
`,
  verify: `Usage: k8s-ha verify [FILE | -f FILE] [--json] [--drill] [--image IMAGE]

Proves the cluster works, check by check, each with its result and time:
the API answers on a server and through the load balancer; every node is
Ready; a test Deployment behind a LoadBalancer Service gets an address from
the MetalLB pool and answers HTTP on it from this machine. The test objects
(namespace k8s-ha-verify) are removed afterwards, also when a check fails.
On the lab's k3s (pods simulated by kwok) the HTTP check is skipped, and
says so.

Options:
  --drill         also stop each server in turn (systemctl stop k3s): the API
                  must still answer through the load balancer, and the server
                  must come back; the next server is stopped only after that
  --image IMAGE   the test Deployment's image, serving HTTP on port 80
                  (default docker.io/library/nginx:1.27-alpine; mirror it for
                  air-gapped clusters)

Exit code 1 when a check fails; skipped checks do not fail.

Examples:
  k8s-ha verify -f cluster.yaml
  k8s-ha verify -f cluster.yaml --drill
  k8s-ha verify -f cluster.yaml --json | jq '.checks[] | select(.status != "pass")'
`,
  kubeconfig: `Usage: k8s-ha kubeconfig [FILE | -f FILE] [-o OUT | --merge]

Reads the admin kubeconfig from a server (/etc/rancher/k3s/k3s.yaml), points
it at the cluster's API address (the load balancer or virtual IP, not one
server) and names its cluster, user and context after the cluster. Written
mode 0600: it holds cluster-admin credentials.

Options:
  -o, --output OUT  write it to OUT (default: <cluster name>.kubeconfig beside
                    the cluster file)
  --merge           merge it into your kubeconfig instead (the first file of
                    $KUBECONFIG, else ~/.kube/config): entries with the
                    cluster's name are replaced, every other context is left
                    as it was; the current context becomes the cluster's

Examples:
  k8s-ha kubeconfig -f cluster.yaml
  kubectl --kubeconfig seed.kubeconfig get nodes
  k8s-ha kubeconfig -f cluster.yaml --merge && kubectl --context seed get nodes
`,
  status: `Usage: k8s-ha status [FILE | -f FILE] [--json] [--watch SECONDS]
       k8s-ha status [-f FILE] --serve [ADDRESS:PORT] [--allow-remote] [--watch SECONDS] [--timeout SECONDS]

One screen for the whole cluster: each host with its roles and whether it
answers over SSH; the load balancer and each upstream as it sees them
(HAProxy: its admin socket; nginx open source has no upstream state API, so
each server's 6443 is probed from the LB host, and the screen says so); who
holds the virtual IP; the datastore (answering, size, kine row count); each
node's Ready state and k3s version; MetalLB pool use. Changes nothing.

Exit code 0 when healthy; 1 when anything is degraded, each thing named at
the end (a host unreachable, an upstream down, the VIP on no or on two hosts,
the datastore down, a node NotReady or missing, a full pool).

Options:
  --watch N, -w N   refresh every N seconds (redrawn in place on a terminal)
                    until Ctrl-C; the exit code is that of the last screen
  --serve [ADDR:PORT]  a live status page in a browser instead, until Ctrl-C
                    (default 127.0.0.1:8440): the topology drawn and coloured
                    by health, a timeline of the changes it saw, MetalLB pools,
                    versions; the same data as --json at /status.json. Served
                    by k8s-ha alone (nothing from the internet), read-only,
                    refreshed every --watch seconds (default 2)
  --allow-remote    let --serve bind an address other than loopback (the page
                    shows the cluster's topology to anyone who reaches it and
                    has no login; an SSH tunnel to 127.0.0.1 is the safer way)
  --timeout N       --serve: a collection that takes longer than N seconds
                    (default 10) marks the page stale

Examples:
  k8s-ha status -f cluster.yaml
  k8s-ha status -f cluster.yaml --watch 5
  k8s-ha status -f cluster.yaml --json | jq '.degraded'
  k8s-ha status -f cluster.yaml --serve              # then open http://127.0.0.1:8440/
  ssh -L 8440:127.0.0.1:8440 admin-box               # the page from another machine
`,
};
