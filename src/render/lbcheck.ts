import { RenderInputError, assertInt, assertPath, assertServers, managedHeader } from './common.js';
import { nginxServerDirective, sortedUpstreams, type LbUpstream } from './nginx.js';
import { renderUnit } from './systemd.js';
import type { NginxDatastoreInput } from './nginx-datastore.js';
import { validateNginxDatastore } from './nginx-datastore.js';
import { datastoreDecide, datastoreFunctions, datastoreInstallState, datastoreLaunch, datastoreVars } from './lbcheck-datastore.js';

/**
 * k8s-ha-lbcheck: the active health check open-source nginx lacks (FACTS: a
 * frozen server still completes TCP handshakes, so passive checks never see
 * it). A POSIX sh loop asks every server for https://ADDR/ping over TLS each
 * interval; after `fall` failures in a row a server is marked `down` in the
 * upstream's server file, after `rise` passes it is put back, and nginx is
 * checked and reloaded (a reload keeps established connections). It never
 * marks every server down: with all of them failing, nginx's own passive
 * checks are the better judge.
 */

export const LBCHECK_UNIT = 'k8s-ha-lbcheck';
export const LBCHECK_SCRIPT_PATH = '/usr/local/sbin/k8s-ha-lbcheck';
export const LBCHECK_UNIT_PATH = `/etc/systemd/system/${LBCHECK_UNIT}.service`;
/** The upstream's server lines; nginx.conf includes it and the checker rewrites it. */
export const LBCHECK_STATE_PATH = '/etc/nginx/k8s-ha-upstream.conf';
/**
 * The servers k8s-ha holds out of this load balancer (one name a line)
 * while it restarts or removes them (phases/lb-hold.ts). The checker keeps
 * them `down` whatever its checks say, or its next change would put a
 * restarting server back.
 */
export const LB_HOLD_PATH = '/var/lib/k8s-ha/lb-held';

/** Names in a hold file: one a line, blanks and duplicates ignored, sorted. */
export function parseHeld(text: string | null | undefined): string[] {
  return [...new Set((text ?? '').split('\n').map((l) => l.trim()).filter(Boolean))].sort();
}

export interface LbCheckInput {
  servers: LbUpstream[];
  /** nginx passive-check parameters, kept on every server line. */
  maxFails: number;
  failTimeoutMs: number;
  /** HTTPS path asked on each server; k3s answers /ping with `pong`. */
  path: string;
  /** Time between rounds of checks; also each check's timeout (as HAProxy's `inter`). */
  intervalMs: number;
  /** Failed checks in a row before a server is marked down. */
  fall: number;
  /** Passed checks in a row before a down server is put back. */
  rise: number;
  /** Default LBCHECK_STATE_PATH. */
  statePath?: string;
  /** Default LB_HOLD_PATH. */
  holdPath?: string;
  /**
   * A Galera datastore routed to one writer through nginx (render/nginx-datastore.ts):
   * the checker also reads each data node's Galera check and keeps exactly one
   * node up in the datastore upstream's file. Default: none.
   */
  datastore?: NginxDatastoreInput;
}

function validate(input: LbCheckInput): void {
  // Names and addresses go into single-quoted sh words and nginx lines.
  assertServers(input.servers);
  if (typeof input.path !== 'string' || !/^\/[A-Za-z0-9._~/-]*$/.test(input.path)) {
    throw new RenderInputError('path', `must be an absolute URL path of letters, digits and . _ ~ / -, got ${JSON.stringify(input.path)}`);
  }
  assertInt('intervalMs', input.intervalMs, 1, 60_000);
  assertInt('fall', input.fall, 1, 100);
  assertInt('rise', input.rise, 1, 100);
  if (input.statePath !== undefined) assertPath('statePath', input.statePath);
  if (input.holdPath !== undefined) assertPath('holdPath', input.holdPath);
  if (input.datastore !== undefined) validateNginxDatastore(input.datastore);
}

const STATE_HEADER = [
  'Servers of the k3s_servers upstream (included by nginx.conf).',
  'k8s-ha-lbcheck appends `down` to servers that fail its TLS check; k8s-ha',
  'ignores those marks when it compares this file.',
];

/**
 * The upstream's server file with `down` on the servers named in `down`
 * (what the checker writes; the phase writes it with none down). The
 * checker's own output is byte-for-byte this.
 */
export function renderUpstreamState(input: LbCheckInput, down: readonly string[] = []): string {
  validate(input);
  const lines = [managedHeader('#', STATE_HEADER[0]!).trimEnd(), ...STATE_HEADER.slice(1).map((l) => `# ${l}`)];
  for (const s of sortedUpstreams(input.servers)) {
    lines.push(`${nginxServerDirective(s, input.maxFails, input.failTimeoutMs)}${down.includes(s.name) ? ' down' : ''}; # ${s.name}`);
  }
  return lines.join('\n') + '\n';
}

/** The state file with every `down` mark removed: what k8s-ha compares, so the checker's marks are not drift. */
export function normalizeUpstreamState(text: string): string {
  return text.replace(/ down;( # [^\n]*)$/gm, ';$1');
}

/** Seconds as sleep(1) and curl --max-time take them (500 -> "0.5"). */
const seconds = (ms: number) => String(ms / 1000);

/** The checker script (install mode 0755). Every value in it was validated to need no quoting. */
export function renderLbCheckScript(input: LbCheckInput): string {
  validate(input);
  const servers = sortedUpstreams(input.servers);
  const ds = input.datastore;
  const statePath = input.statePath ?? LBCHECK_STATE_PATH;
  const header = renderUpstreamState(input).split('\n').filter((l) => l.startsWith('#'));
  const url = (s: LbUpstream) => `https://${s.address.includes(':') ? `[${s.address}]` : s.address}:${s.port}${input.path}`;
  const out: string[] = [];
  out.push('#!/bin/sh');
  out.push(managedHeader('#', 'k8s-ha-lbcheck: active TLS health check of the k3s servers behind nginx.').trimEnd());
  out.push('# nginx open source only notices failed connects; a frozen server still');
  out.push('# completes TCP handshakes and would keep getting new connections.');
  out.push('set -u');
  out.push('umask 022');
  out.push('');
  out.push('# K8S_HA_LBCHECK_* are for tests: another state file, a bounded number of rounds.');
  out.push(`STATE=\${K8S_HA_LBCHECK_STATE:-${statePath}}`);
  out.push(`HOLD=\${K8S_HA_LBCHECK_HOLD:-${input.holdPath ?? LB_HOLD_PATH}}`);
  out.push('ROUNDS=${K8S_HA_LBCHECK_ROUNDS:-0}');
  out.push(`INTERVAL=${seconds(input.intervalMs)}`);
  out.push(`FALL=${input.fall}`);
  out.push(`RISE=${input.rise}`);
  out.push(`N=${servers.length}`);
  servers.forEach((s, i) => {
    const n = i + 1;
    out.push(`name_${n}='${s.name}' url_${n}='${url(s)}' line_${n}='${nginxServerDirective(s, input.maxFails, input.failTimeoutMs)}'`);
    out.push(`dst_${n}='${s.address.includes(':') ? `[${s.address}]` : s.address}' port_${n}=${s.port}`);
    out.push(`fails_${n}=0 oks_${n}=0 down_${n}=0`);
  });
  if (ds) out.push(...datastoreVars(ds));
  out.push('');
  out.push('TMP=$(mktemp -d) || exit 1');
  out.push('trap \'rm -rf "$TMP"\' EXIT');
  out.push('trap \'exit 0\' INT TERM');
  out.push('');
  out.push('log() { echo "k8s-ha-lbcheck: $*"; }');
  out.push('');
  out.push('# The upstream file for the servers marked in $1 ("0 1 0": 1 = down).');
  out.push('render() {');
  for (const l of header) out.push(`  echo '${l.replace(/'/g, `'\\''`)}'`);
  out.push('  i=1');
  out.push('  for d in $1; do');
  out.push('    eval "line=\\$line_$i name=\\$name_$i"');
  out.push('    if [ "$d" = 1 ]; then echo "$line down; # $name"; else echo "$line; # $name"; fi');
  out.push('    i=$((i + 1))');
  out.push('  done');
  out.push('}');
  out.push('');
  const apiKill = [
    "  # Connections already on a down server would hang with it: close them, as",
    "  # HAProxy's on-marked-down shutdown-sessions does, so clients reconnect.",
    '  # Again after 0.5 s and 1.5 s: until the reload has replaced them, the old',
    '  # workers still accept and send some new connections to the down server',
    "  # (measured on the lab: one such connection hung for the client's 4 s).",
    '  ( for pause in 0 0.5 1; do',
    '      sleep "$pause"',
    '      i=1',
    '      for d in $1; do',
    '        if [ "$d" = 1 ]; then',
    '          eval "dst=\\$dst_$i port=\\$port_$i"',
    '          ss -K dst "$dst" dport = ":$port" > /dev/null 2>&1 || log "cannot close the connections to $dst:$port"',
    '        fi',
    '        i=$((i + 1))',
    '      done',
    '    done ) &',
  ];
  if (ds) {
    out.push(...datastoreFunctions(ds));
    out.push('');
    out.push(...datastoreInstallState(apiKill));
  } else {
    out.push('# Put the file for $1 in place if it differs, check it with nginx -t, reload.');
    out.push('install_state() {');
    out.push('  render "$1" > "$TMP/new"');
    out.push('  cmp -s "$TMP/new" "$STATE" && return 0');
    out.push('  had_old=0');
    out.push('  if [ -f "$STATE" ]; then cp "$STATE" "$TMP/old" && had_old=1; fi');
    out.push('  cp "$TMP/new" "$STATE.k8s-ha-tmp" && mv -f "$STATE.k8s-ha-tmp" "$STATE" || { log "cannot write $STATE"; return 1; }');
    out.push('  if ! err=$(nginx -t -q 2>&1); then');
    out.push('    log "nginx -t rejects the new server marks, keeping the old file: $err"');
    out.push('    if [ "$had_old" = 1 ]; then mv -f "$TMP/old" "$STATE"; else rm -f "$STATE"; fi');
    out.push('    return 1');
    out.push('  fi');
    out.push('  # A reload: old workers finish their connections, new ones avoid down servers.');
    out.push('  systemctl reload nginx || { log "nginx reload failed"; return 1; }');
    out.push(...apiKill);
    out.push('}');
  }
  out.push('');
  out.push('applied="" allfail=0');
  out.push('round=0');
  out.push('while :; do');
  out.push('  # Every server is asked at once, each check bounded by the interval;');
  out.push('  # a round lasts the interval or the slowest check, whichever is longer.');
  out.push('  # Only this round\'s jobs are awaited, not the closing of connections.');
  out.push('  i=1 pids=""');
  out.push('  while [ "$i" -le "$N" ]; do');
  out.push('    eval "url=\\$url_$i"');
  out.push(`    ( if [ "$(curl -gsk --noproxy '*' --max-time "$INTERVAL" "$url" 2>/dev/null)" = pong ]; then echo up; else echo down; fi > "$TMP/r$i" ) &`);
  out.push('    pids="$pids $!"');
  out.push('    i=$((i + 1))');
  out.push('  done');
  if (ds) out.push(...datastoreLaunch());
  out.push('  sleep "$INTERVAL" &');
  out.push('  wait $pids $!');
  out.push('  # Servers k8s-ha holds out (a restart or removal under way) stay down.');
  out.push('  # 2>/dev/null before the < : the shell reports a missing file on the stderr of that moment.');
  out.push('  held=" $(tr \'\\n\' \' \' 2>/dev/null < "$HOLD") "');
  out.push('  want="" hwant="" ndown=0 i=1');
  out.push('  while [ "$i" -le "$N" ]; do');
  out.push('    eval "name=\\$name_$i f=\\$fails_$i o=\\$oks_$i d=\\$down_$i"');
  out.push('    if [ "$(cat "$TMP/r$i" 2>/dev/null)" = up ]; then');
  out.push('      f=0 o=$((o + 1))');
  out.push('      if [ "$d" = 1 ] && [ "$o" -ge "$RISE" ]; then d=0; log "$name is up ($o checks passed)"; fi');
  out.push('    else');
  out.push('      o=0 f=$((f + 1))');
  out.push('      if [ "$d" = 0 ] && [ "$f" -ge "$FALL" ]; then d=1; log "$name is down ($f checks failed)"; fi');
  out.push('    fi');
  out.push('    eval "fails_$i=$f oks_$i=$o down_$i=$d"');
  out.push('    h=0; case "$held" in *" $name "*) h=1 ;; esac');
  out.push('    e=$d; [ "$h" = 1 ] && e=1');
  out.push('    want="$want $e" hwant="$hwant $h" ndown=$((ndown + e)) i=$((i + 1))');
  out.push('  done');
  out.push('  if [ "$ndown" -eq "$N" ]; then');
  out.push('    # Never all down: nginx would refuse every client; its passive checks');
  out.push('    # decide among the servers k8s-ha does not hold out.');
  out.push('    want=$hwant');
  out.push('    [ "$allfail" = 1 ] || log "every server fails its check: leaving all of them in nginx"');
  out.push('    allfail=1');
  out.push('  else');
  out.push('    allfail=0');
  out.push('  fi');
  if (ds) {
    out.push(...datastoreDecide());
    out.push('  # Also on the first round: puts the files back in step with this script.');
    out.push('  if [ "$want|$dwant" != "$applied" ]; then');
    out.push('    install_state "$want" "$dwant"');
    out.push('    applied="$want|$dwant"');
    out.push('  fi');
    out.push('  # A hold-down that began this round counts from when nginx has every node');
    out.push('  # down (the reload is under way), not from the decision.');
    out.push('  if [ "$hstart" = 1 ]; then');
    out.push('    hold_until=$(($(date +%s%3N) + HOLD_MS)) hstart=0');
    out.push('  fi');
  } else {
    out.push('  # Also on the first round: puts the file back in step with this script.');
    out.push('  if [ "$want" != "$applied" ]; then');
    out.push('    install_state "$want"');
    out.push('    applied=$want');
    out.push('  fi');
  }
  out.push('  round=$((round + 1))');
  out.push('  [ "$ROUNDS" -gt 0 ] && [ "$round" -ge "$ROUNDS" ] && { wait; exit 0; }');
  out.push('done');
  return out.join('\n') + '\n';
}

/** The checker's systemd unit; restarted when the script changes (the server list is in it). */
export function renderLbCheckUnit(): string {
  return renderUnit({
    comment: [
      'k8s-ha-lbcheck: TLS /ping check of the k3s servers; marks failing ones down in nginx.',
      'Managed by k8s-ha: local edits are overwritten on the next apply.',
    ],
    Unit: [
      ['Description', 'k8s-ha active health check of the k3s API servers behind nginx'],
      ['After', 'network-online.target nginx.service'],
      ['Wants', 'network-online.target'],
    ],
    Service: [
      ['ExecStart', LBCHECK_SCRIPT_PATH],
      ['Restart', 'always'],
      ['RestartSec', '1s'],
    ],
    Install: [['WantedBy', 'multi-user.target']],
  });
}
