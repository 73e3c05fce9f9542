#!/usr/bin/env bash
# Smoke test of the lab's k3s on loopback (127.0.0.1), no containers needed:
#   a throwaway MariaDB, two servers sharing it (same token -> same CA),
#   a third server with a wrong token (must fail like k3s), one agent whose
#   kwok-simulated node becomes Ready, and a Deployment whose pods are
#   scheduled onto it and shown Running. Cleans up after itself.
# Usage: labk3s/smoke.sh   (env: K3S=path/to/k3s, KEEP=1 to keep the work dir,
#        SOAK=SECONDS to re-check node health after a while)
# Several nodes on one loopback cannot each run containerd and a kubelet, so
# every node here is simulated by kwok (lab-simulated-kubelet); the real node
# parts are proven on lab machines (test/lab/pods.test.ts).
set -euo pipefail
export LABK3S_SIMULATED_KUBELET=true

here=$(cd "$(dirname "$0")" && pwd)
K3S=${K3S:-$here/bin/k3s}
[ -x "$K3S" ] || { echo "smoke: $K3S not found; run scripts/build-labk3s.sh first" >&2; exit 1; }
DBPORT=${DBPORT:-33306}
P1=${P1:-16443}
P2=${P2:-16444}
work=$(mktemp -d /tmp/labk3s-smoke.XXXXXX)
chmod 755 "$work"
# every process here is a "machine": each server keeps its node password in
# the work dir (never the host's /etc/rancher/node/password)
export LABK3S_NODE_PASSWORD_FILE="$work/server-node-password"
pids=()
dbpid=""
notifypid=""
t0=$(date +%s)

log() { echo "[smoke +$(( $(date +%s) - t0 ))s] $*"; }
fail() { echo "[smoke] FAIL: $*" >&2; for f in "$work"/*.log; do echo "---- tail $f" >&2; tail -n 25 "$f" >&2; done; exit 1; }
cleanup() {
  local rc=$?
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  if [ -n "$notifypid" ]; then kill "$notifypid" 2>/dev/null || true; fi
  if [ -n "$dbpid" ]; then
    kill "$dbpid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$dbpid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$dbpid" 2>/dev/null || true
  fi
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "[smoke] kept $work"; fi
  if [ $rc -eq 0 ]; then echo "[smoke] PASS ($(( $(date +%s) - t0 ))s)"; fi
}
trap cleanup EXIT

wait_for() { # seconds description command...
  local n=$1 what=$2; shift 2
  for _ in $(seq 1 "$n"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    for p in "${pids[@]}" $dbpid; do kill -0 "$p" 2>/dev/null || fail "process $p died while waiting for $what"; done
    sleep 1
  done
  fail "timeout waiting for $what"
}

log "version: $("$K3S" --version | head -1)"
"$K3S" --version | head -1 | grep -Eq '^k3s version v1\.[0-9]+\.[0-9]+\+k3s1 \(labk3s\)$' || fail "--version"

# ---- MariaDB
log "starting MariaDB on 127.0.0.1:$DBPORT"
mkdir -p "$work/db" "$work/dbtmp"
chown mysql:mysql "$work/db" "$work/dbtmp" 2>/dev/null || true
mariadb-install-db --no-defaults --user=mysql --datadir="$work/db" --tmpdir="$work/dbtmp" --auth-root-authentication-method=normal \
  --skip-test-db >"$work/db-install.log" 2>&1 || fail "mariadb-install-db"
mariadbd --no-defaults --user=mysql --datadir="$work/db" --tmpdir="$work/dbtmp" --socket="$work/db/db.sock" --port="$DBPORT" \
  --bind-address=127.0.0.1 --pid-file="$work/db/db.pid" --log-error="$work/db/mariadb.err" \
  --auto-increment-increment=1 --auto-increment-offset=1 >"$work/mariadb.log" 2>&1 &
dbpid=$!
wait_for 60 "MariaDB" mariadb --no-defaults -S "$work/db/db.sock" -uroot -e 'select 1'
mariadb --no-defaults -S "$work/db/db.sock" -uroot -e "CREATE DATABASE k3s; CREATE USER 'k3s'@'127.0.0.1' IDENTIFIED BY 'k3spw'; GRANT ALL ON k3s.* TO 'k3s'@'127.0.0.1';"
DSN="mysql://k3s:k3spw@tcp(127.0.0.1:$DBPORT)/k3s"

# ---- server 1 (configured through a config file, like /etc/rancher/k3s/config.yaml)
cat >"$work/s1.yaml" <<YAML
token: smoke-secret
agent-token: smoke-agent-secret
secrets-encryption: true
datastore-endpoint: "$DSN"
data-dir: $work/s1
node-name: s1
node-ip: 127.0.0.1
bind-address: 127.0.0.1
https-listen-port: $P1
write-kubeconfig: $work/s1-k3s.yaml
write-kubeconfig-mode: "0600"
tls-san:
  - lb.lab.test
  - 10.99.0.10
disable:
  - servicelb
  - traefik
node-taint:
  - CriticalAddonsOnly=true:NoExecute
kube-controller-manager-arg:
  - secure-port=0
kube-scheduler-arg:
  - secure-port=0
YAML
: >"$work/empty.yaml"
# unknown keys must be rejected
printf 'token: x\nno-such-key: 1\n' >"$work/bad.yaml"
if "$K3S" server --config "$work/bad.yaml" >"$work/bad-config.log" 2>&1; then fail "unknown config key accepted"; fi
grep -q 'unknown configuration key' "$work/bad-config.log" || fail "unknown key message"
log "unknown config key rejected: $(grep -o 'unknown configuration key[^(]*' "$work/bad-config.log" | head -1)"

log "starting server 1 on :$P1 (with a NOTIFY_SOCKET, as under systemd Type=notify)"
python3 -c 'import socket,sys
s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1])
open(sys.argv[2],"w").write(s.recv(1024).decode()+"\n")' "$work/notify.sock" "$work/notify.txt" &
notifypid=$!
wait_for 10 "notify listener" test -S "$work/notify.sock"
NOTIFY_SOCKET="$work/notify.sock" "$K3S" server --config "$work/s1.yaml" >"$work/s1.log" 2>&1 &
pids+=($!)
wait_for 240 "server 1 /ping" sh -c "curl -sk https://127.0.0.1:$P1/ping | grep -qx pong"
wait_for 240 "server 1 kubeconfig" test -s "$work/s1-k3s.yaml"
[ "$(stat -c %a "$work/s1-k3s.yaml")" = 600 ] || fail "kubeconfig mode is not 0600"
grep -q "server: https://127.0.0.1:$P1" "$work/s1-k3s.yaml" || fail "kubeconfig server"
wait_for 30 "READY=1 on NOTIFY_SOCKET" grep -qx READY=1 "$work/notify.txt"
log "server 1 sent READY=1 to NOTIFY_SOCKET"
TOKEN=$(cat "$work/s1/server/token")
echo "$TOKEN" | grep -Eq '^K10[0-9a-f]{64}::server:smoke-secret$' || fail "token format: $TOKEN"
hash=$(openssl x509 -in "$work/s1/server/tls/server-ca.crt" >/dev/null 2>&1 && sha256sum <"$work/s1/server/tls/server-ca.crt" | cut -d' ' -f1)
[ "K10$hash::server:smoke-secret" = "$TOKEN" ] || fail "token hash is not sha256 of the CA PEM"
log "server 1 up; token $(echo "$TOKEN" | cut -c1-20)...::server:***"
code=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$P1/readyz" || true)
[ "$code" = 401 ] || fail "anonymous /readyz should be 401, got $code"
openssl x509 -in "$work/s1/server/tls/serving-kube-apiserver.crt" -noout -ext subjectAltName >"$work/sans.txt"
for s in lb.lab.test 10.99.0.10 127.0.0.1 localhost kubernetes.default.svc.cluster.local 10.43.0.1; do
  grep -q "$s" "$work/sans.txt" || fail "SAN $s missing: $(cat "$work/sans.txt")"
done
log "serving cert SANs ok: $(tail -1 "$work/sans.txt" | tr -d ' ')"

kc1() { KUBECONFIG="$work/s1-k3s.yaml" "$K3S" kubectl "$@"; }

# ---- server 2: same token and datastore, CLI flags + env only
cat >"$work/authn.yaml" <<YAML
apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
anonymous:
  enabled: true
  conditions:
  - path: /readyz
  - path: /livez
YAML
log "starting server 2 on :$P2 (same token, same datastore; anonymous /readyz via authentication-config)"
K3S_TOKEN=smoke-secret K3S_AGENT_TOKEN=smoke-agent-secret K3S_DATASTORE_ENDPOINT="$DSN" "$K3S" server --secrets-encryption --config "$work/empty.yaml" \
  --data-dir "$work/s2" --node-name s2 --node-ip 127.0.0.1 --bind-address 127.0.0.1 --https-listen-port "$P2" \
  --write-kubeconfig "$work/s2-k3s.yaml" --tls-san lb.lab.test --disable servicelb --disable traefik \
  --node-taint CriticalAddonsOnly=true:NoExecute \
  --kube-apiserver-arg authentication-config="$work/authn.yaml" \
  --kube-controller-manager-arg secure-port=0 --kube-scheduler-arg secure-port=0 >"$work/s2.log" 2>&1 &
pids+=($!)
wait_for 240 "server 2 kubeconfig" test -s "$work/s2-k3s.yaml"
[ "$(cat "$work/s2/server/token")" = "$TOKEN" ] || fail "server 2 token differs: CA not shared"
cmp -s "$work/s1/server/tls/server-ca.crt" "$work/s2/server/tls/server-ca.crt" || fail "server CA differs"
grep -q 'Read existing bootstrap data' "$work/s2.log" || fail "server 2 did not read bootstrap data"
log "server 2 up, shares the CA (identical token files)"
[ "$(curl -sk "https://127.0.0.1:$P2/readyz")" = ok ] || fail "anonymous /readyz on server 2 (authentication-config)"
code=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$P2/api" || true)
[ "$code" = 401 ] || fail "anonymous /api on server 2 should be 401, got $code"
log "server 2: anonymous /readyz = ok, anonymous /api = 401"

# ---- optional HAProxy in front of both servers (the lab's API load balancer)
LB="https://127.0.0.1:$P1"
if command -v haproxy >/dev/null 2>&1; then
  PLB=${PLB:-16440}
  cat >"$work/haproxy.cfg" <<CFG
global
  maxconn 200
defaults
  mode tcp
  timeout connect 2s
  timeout client 10m
  timeout server 10m
  retries 2
  option redispatch
frontend api
  bind 127.0.0.1:$PLB
  default_backend servers
backend servers
  option httpchk GET /ping
  default-server check check-ssl verify none inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
  server s1 127.0.0.1:$P1
  server s2 127.0.0.1:$P2
CFG
  haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
  pids+=($!)
  LB="https://127.0.0.1:$PLB"
  wait_for 20 "HAProxy" sh -c "curl -sk $LB/ping | grep -qx pong"
  log "HAProxy load balancer on $LB -> :$P1, :$P2"
fi
sed "s#server: https://127.0.0.1:$P1#server: $LB#" "$work/s1-k3s.yaml" >"$work/lb-k3s.yaml"
kclb() { KUBECONFIG="$work/lb-k3s.yaml" "$K3S" kubectl "$@"; }

# ---- server 3: wrong token must fail like k3s
log "starting server 3 with a different token (must fail)"
if timeout 120 "$K3S" server --config "$work/empty.yaml" --token other-secret --datastore-endpoint "$DSN" \
   --data-dir "$work/s3" --https-listen-port 16445 --bind-address 127.0.0.1 --write-kubeconfig "$work/s3.yaml" \
   >"$work/s3.log" 2>&1; then fail "server with wrong token started"; fi
grep -q 'bootstrap data already found and encrypted with different token' "$work/s3.log" || fail "wrong-token message"
log "wrong token refused: $(grep -o 'bootstrap data already found and encrypted with different token' "$work/s3.log" | head -1)"

# ---- agent with a wrong CA hash must refuse to join
bad="K10$(printf '%064d' 0)::server:smoke-secret"
if timeout 60 "$K3S" agent --config "$work/empty.yaml" --server "https://127.0.0.1:$P1" --token "$bad" \
   --data-dir "$work/abad" --node-name bad >"$work/agent-bad.log" 2>&1; then fail "agent with wrong CA hash joined"; fi
grep -q 'does not match' "$work/agent-bad.log" || fail "agent CA hash message"
log "agent with wrong CA hash refused"

# ---- agent joins through server 1's port (the LB in the lab)
log "starting agent a1 (server $LB)"
AGENT_TOKEN=$(cat "$work/s1/server/agent-token")
echo "$AGENT_TOKEN" | grep -Eq '^K10[0-9a-f]{64}::node:smoke-agent-secret$' || fail "agent-token format: $AGENT_TOKEN"
LABK3S_NODE_PASSWORD_FILE="$work/a1-password" K3S_URL="$LB" K3S_TOKEN="$AGENT_TOKEN" "$K3S" agent --config "$work/empty.yaml" \
  --data-dir "$work/a1" --node-name a1 --node-ip 127.0.0.3 --node-label lab/role=worker >"$work/a1.log" 2>&1 &
pids+=($!); a1pid=$!
wait_for 180 "node a1 Ready" sh -c "KUBECONFIG='$work/s1-k3s.yaml' '$K3S' kubectl get node a1 -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
wait_for 120 "nodes s1 s2 Ready" sh -c "KUBECONFIG='$work/s1-k3s.yaml' '$K3S' kubectl wait --for=condition=Ready node/s1 node/s2 --timeout=5s"
# through server 2's API, with the kubectl symlink when present (like /usr/local/bin/kubectl -> k3s)
KCTL="$(dirname "$K3S")/kubectl"; [ -x "$KCTL" ] || KCTL="$K3S kubectl"
KUBECONFIG="$work/s2-k3s.yaml" $KCTL get nodes -o wide | tee "$work/nodes.txt"
grep -Eq '^a1 +Ready' "$work/nodes.txt" || fail "a1 not Ready through server 2"
kclb get nodes >/dev/null || fail "kubectl get nodes through $LB"
kc1 get lease -n kube-node-lease a1 >/dev/null || fail "no lease for a1"
kc1 get node s1 -o jsonpath='{.spec.taints[0].key}' | grep -q CriticalAddonsOnly || fail "server taint"

# ---- node passwords (k3s#802): a1's password file was made at its first
# start (0600) and its hash kept in a1.node-password.k3s; another machine
# calling itself a1 is refused with k3s's words
[ "$(stat -c %a "$work/a1-password")" = 600 ] || fail "node password file mode"
[ "$(kc1 get secret -n kube-system a1.node-password.k3s -o jsonpath='{.type}')" = k3s.cattle.io/node-password ] || fail "no node-password secret for a1"
kc1 get secret -n kube-system a1.node-password.k3s -o jsonpath='{.data.hash}' | base64 -d | grep -Eq '^\$1:[0-9a-f]{16}:15:8:1:' || fail "node-password hash format"
LABK3S_NODE_PASSWORD_FILE="$work/impostor-password" timeout 20 "$K3S" agent --config "$work/empty.yaml" --server "$LB" --token "$AGENT_TOKEN" \
  --data-dir "$work/impostor" --node-name a1 --node-ip 127.0.0.4 >"$work/impostor.log" 2>&1 || true
grep -q "Node password rejected, duplicate hostname or contents of '$work/impostor-password' may not match server node-passwd entry" "$work/impostor.log" || fail "a second a1 was not refused"
[ ! -e "$work/impostor/agent/client-kubelet.crt" ] || fail "the refused a1 got a kubelet certificate"
log "node password: a second machine named a1 refused with k3s's message"

# ---- workload
# secrets-encryption: a Secret is stored encrypted in kine's table
kc1 create secret generic enc-test --from-literal=k=plaintext-value >/dev/null
raw=$(mariadb --no-defaults -S "$work/db/db.sock" -uroot -N -B k3s -e "SELECT value FROM kine WHERE name='/registry/secrets/default/enc-test' ORDER BY id DESC LIMIT 1")
echo "$raw" | grep -q 'k8s:enc:aescbc:v1:' || fail "secret not encrypted at rest"
echo "$raw" | grep -q 'plaintext-value' && fail "secret stored in plaintext"
[ "$(kc1 get secret enc-test -o jsonpath='{.data.k}' | base64 -d)" = plaintext-value ] || fail "secret round trip"
log "secrets-encryption: Secret stored as k8s:enc:aescbc:v1 in MariaDB; agent joined with the agent-token"
log "creating a Deployment"
kc1 create deployment web --image=nginx:alpine --replicas=3 >/dev/null
wait_for 120 "3 pods Running" sh -c "KUBECONFIG='$work/s1-k3s.yaml' '$K3S' kubectl get pods -l app=web --no-headers | grep -c ' Running ' | grep -qx 3"
kc1 get pods -o wide | tee "$work/pods.txt"
[ "$(awk 'NR>1 && $7=="a1"' "$work/pods.txt" | wc -l)" = 3 ] || fail "pods not on a1"
kc1 rollout status deployment/web --timeout=60s
kc1 get --raw /version | grep -q labk3s || fail "/version"

# ---- restart server 1 (systemctl restart): graceful stop, same data dir and datastore
log "restarting server 1"
cp "$work/s1-k3s.yaml" "$work/s1-k3s.before"
s1tls=$(cd "$work/s1/server/tls" && sha256sum serving-kube-apiserver.crt client-admin.crt)
s1pid=${pids[0]}
kill "$s1pid"
for _ in $(seq 1 300); do kill -0 "$s1pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$s1pid" 2>/dev/null && fail "server 1 did not stop within 30s of SIGTERM"
wait "$s1pid" || fail "server 1 exit status $? after SIGTERM"
pids=("${pids[@]:1}")
log "server 1 stopped cleanly"
if [ "$LB" != "https://127.0.0.1:$P1" ]; then
  # failover: the API through the LB, the scheduler and controllers (leader
  # election through kine) keep working on server 2
  kclb get nodes >/dev/null || fail "kubectl through the LB with server 1 down"
  kclb scale deployment web --replicas=4 >/dev/null
  wait_for 90 "4 pods Running with server 1 down" sh -c "KUBECONFIG='$work/lb-k3s.yaml' '$K3S' kubectl get pods -l app=web --no-headers | grep -c ' Running ' | grep -qx 4"
  kclb get node a1 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True || fail "a1 not Ready with server 1 down"
  log "server 1 down: API through the LB ok, Deployment scaled to 4 Running (leaders moved to server 2), a1 Ready"
fi
"$K3S" server --config "$work/s1.yaml" >"$work/s1-restart.log" 2>&1 &
pids+=($!)
wait_for 120 "server 1 ready again" grep -q "server is up" "$work/s1-restart.log"
grep -q 'Read existing bootstrap data' "$work/s1-restart.log" || fail "restart did not reuse bootstrap data"
[ "$(cat "$work/s1/server/token")" = "$TOKEN" ] || fail "token changed after restart"
# Like k3s: certificates stay until near expiry, so the kubeconfig does not change.
cmp -s "$work/s1-k3s.before" "$work/s1-k3s.yaml" || fail "the admin kubeconfig changed across a restart"
[ "$(cd "$work/s1/server/tls" && sha256sum serving-kube-apiserver.crt client-admin.crt)" = "$s1tls" ] || fail "leaf certificates were re-issued at restart"
wait_for 60 "all nodes Ready after restart" sh -c "KUBECONFIG='$work/s1-k3s.yaml' '$K3S' kubectl wait --for=condition=Ready node/s1 node/s2 node/a1 --timeout=5s"
log "server 1 restarted: same token, same certificates and kubeconfig, nodes Ready"

# ---- deleting the Node deletes its node-password secret: the other machine may join as a1
kill "$a1pid"; wait "$a1pid" 2>/dev/null || true
keep=(); for p in "${pids[@]}"; do [ "$p" = "$a1pid" ] || keep+=("$p"); done; pids=("${keep[@]}")
kc1 delete node a1 >/dev/null
wait_for 30 "a1.node-password.k3s deleted with its Node" sh -c "! KUBECONFIG='$work/s1-k3s.yaml' '$K3S' kubectl get secret -n kube-system a1.node-password.k3s"
LABK3S_NODE_PASSWORD_FILE="$work/impostor-password" K3S_URL="$LB" K3S_TOKEN="$AGENT_TOKEN" "$K3S" agent --config "$work/empty.yaml" \
  --data-dir "$work/impostor" --node-name a1 --node-ip 127.0.0.3 >"$work/a1-again.log" 2>&1 &
pids+=($!)
wait_for 120 "a1 Ready again from the other machine" sh -c "KUBECONFIG='$work/s1-k3s.yaml' '$K3S' kubectl get node a1 -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
log "node deleted -> its node-password secret gone -> another machine joined as a1"
if [ -n "${SOAK:-}" ]; then
  log "soak: waiting ${SOAK}s, then re-checking that nodes stay Ready (lease renewal)"
  sleep "$SOAK"
  ps -o pid,rss,time,cmd -p "$(IFS=,; echo "${pids[*]}")" | cut -c1-80
  kc1 get nodes | tee "$work/nodes2.txt"
  [ "$(grep -c ' Ready ' "$work/nodes2.txt")" = 3 ] || fail "nodes not Ready after soak"
  kc1 get lease -n kube-node-lease a1 -o jsonpath='{.spec.renewTime}{"\n"}'
fi
log "all checks passed"
