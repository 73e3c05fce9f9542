import {
  NGINX_DATASTORE_STATE_PATH,
  NGINX_TAKEOVER_PATH,
  NGINX_WRITER_PATH,
  datastoreServerDirective,
  renderDatastoreState,
  validateNginxDatastore,
  type NginxDatastoreInput,
} from './nginx-datastore.js';

/**
 * The datastore part of k8s-ha-lbcheck's script (render/lbcheck.ts puts
 * these pieces into it): variables, the file renderer, the closing of old
 * connections, the checks launched each round and the writer decision. The
 * rules are described in render/nginx-datastore.ts. Every value in it was
 * validated to need no quoting.
 */

/** Variables and the writer read back from its file. */
export function datastoreVars(d: NginxDatastoreInput): string[] {
  validateNginxDatastore(d);
  const out: string[] = [];
  out.push(`DSTATE=\${K8S_HA_LBCHECK_DATASTORE:-${d.statePath ?? NGINX_DATASTORE_STATE_PATH}}`);
  out.push(`WFILE=\${K8S_HA_LBCHECK_WRITER:-${d.writerPath ?? NGINX_WRITER_PATH}}`);
  out.push(`TAKEOVER=\${K8S_HA_LBCHECK_TAKEOVER:-${d.takeoverPath ?? NGINX_TAKEOVER_PATH}}`);
  out.push('PIDFILE=${K8S_HA_LBCHECK_PIDFILE:-/run/nginx.pid}');
  out.push(`HOLD_MS=${d.holdMs}`);
  out.push(`FOLLOW_MS=${d.followMs ?? 5000}`);
  out.push(`VIP='${d.virtualIP ?? ''}'`);
  out.push(`DN=${d.nodes.length}`);
  out.push(`DNAMES=' ${d.nodes.map((n) => n.name).join(' ')} '`);
  const url = (a: string) => `http://${a.includes(':') ? `[${a}]` : a}:${d.checkPort}/`;
  d.nodes.forEach((n, i) => {
    const k = i + 1;
    out.push(`dname_${k}='${n.name}' durl_${k}='${url(n.address)}' dline_${k}='${datastoreServerDirective(n)}'`);
    out.push(`ddst_${k}='${n.address.includes(':') ? `[${n.address}]` : n.address}' dport_${k}=${n.port}`);
    out.push(`dfails_${k}=0 doks_${k}=0 ddown_${k}=0`);
  });
  out.push('# A node the live file marks down starts down (it needs `rise` passes): a');
  out.push('# checker restarted during a hold-down must not reopen the lost writer.');
  out.push('i=1');
  out.push('while [ "$i" -le "$DN" ]; do');
  out.push('  eval "line=\\$dline_$i name=\\$dname_$i"');
  out.push('  grep -Fqx "$line down; # $name" "$DSTATE" 2>/dev/null && eval "ddown_$i=1"');
  out.push('  i=$((i + 1))');
  out.push('done');
  out.push('# The writer survives restarts: a new checker must not move it.');
  out.push('mkdir -p "$(dirname "$WFILE")"');
  out.push('writer=$(cat "$WFILE" 2>/dev/null)');
  out.push('case "$DNAMES" in *" $writer "*) ;; *) writer="" ;; esac');
  out.push('lost="" hold_until=0 hstart=0 vip_was="" vip_since=0 was_open="" fcand=0 fsince=0 gen=0');
  return out;
}

/** drender (the datastore file for given marks), workers, quiesced, dkill. */
export function datastoreFunctions(d: NginxDatastoreInput): string[] {
  const header = renderDatastoreState(d).split('\n').filter((l) => l.startsWith('#'));
  const out: string[] = [];
  out.push('# The datastore file for the nodes marked in $1 ("1 0": 1 = down).');
  out.push('drender() {');
  for (const l of header) out.push(`  echo '${l.replace(/'/g, `'\\''`)}'`);
  out.push('  i=1');
  out.push('  for d in $1; do');
  out.push('    eval "line=\\$dline_$i name=\\$dname_$i"');
  out.push('    if [ "$d" = 1 ]; then echo "$line down; # $name"; else echo "$line; # $name"; fi');
  out.push('    i=$((i + 1))');
  out.push('  done');
  out.push('}');
  out.push('');
  out.push("# nginx's worker processes now (the master's children).");
  out.push('workers() {');
  out.push('  p=$(cat "$PIDFILE" 2>/dev/null) || return 0');
  out.push('  cat "/proc/$p/task/$p/children" 2>/dev/null');
  out.push('}');
  out.push('');
  out.push('# Until every worker in $1 is gone or shutting down (it has closed its');
  out.push('# listeners then and accepts no new connection), at most 3 s.');
  out.push('quiesced() {');
  out.push('  n=0');
  out.push('  while [ "$n" -lt 30 ]; do');
  out.push('    busy=0');
  out.push('    for w in $1; do');
  out.push('      case "$(tr \'\\0\' \' \' 2>/dev/null < "/proc/$w/cmdline")" in \'\'|*"shutting down"*) ;; *) busy=1 ;; esac');
  out.push('    done');
  out.push('    [ "$busy" = 0 ] && return 0');
  out.push('    sleep 0.1');
  out.push('    n=$((n + 1))');
  out.push('  done');
  out.push('  log "nginx\'s old workers still take connections 3 s after the reload"');
  out.push('}');
  out.push('');
  out.push('# Close the connections to every datastore node marked down in $1.');
  out.push('dkill() {');
  out.push('  i=1');
  out.push('  for d in $1; do');
  out.push('    if [ "$d" = 1 ]; then');
  out.push('      eval "dst=\\$ddst_$i port=\\$dport_$i"');
  out.push('      ss -K dst "$dst" dport = ":$port" > /dev/null 2>&1 || log "cannot close the connections to $dst:$port"');
  out.push('    fi');
  out.push('    i=$((i + 1))');
  out.push('  done');
  out.push('}');
  return out;
}

/** Inside the round: every node's Galera check, at once with the API checks. */
export function datastoreLaunch(): string[] {
  return [
    '  i=1',
    '  while [ "$i" -le "$DN" ]; do',
    '    eval "url=\\$durl_$i"',
    '    : > "$TMP/gb$i"',
    `    ( c=$(curl -gs --noproxy '*' --max-time "$INTERVAL" -o "$TMP/gb$i" -w '%{http_code}' "$url" 2>/dev/null); echo "\${c:-000}" > "$TMP/g$i" ) &`,
    '    pids="$pids $!"',
    '    i=$((i + 1))',
    '  done',
  ];
}

/** After the round: fall/rise per node, the writer, the hold-downs, and $dwant (the marks). */
export function datastoreDecide(): string[] {
  const l: string[] = [];
  l.push('  # The datastore: fall/rise per node as for the servers; fit = passed this');
  l.push("  # round and not marked down; sess = its check says it holds kine's sessions.");
  l.push('  now=$(date +%s%3N)');
  l.push('  i=1 wi=0 fit1=0 sess1=0 nsess=0');
  l.push('  while [ "$i" -le "$DN" ]; do');
  l.push('    eval "name=\\$dname_$i f=\\$dfails_$i o=\\$doks_$i d=\\$ddown_$i"');
  l.push('    ok=0');
  l.push('    [ "$(cat "$TMP/g$i" 2>/dev/null)" = 200 ] && ok=1');
  l.push('    if [ "$ok" = 1 ]; then');
  l.push('      f=0 o=$((o + 1))');
  l.push('      if [ "$d" = 1 ] && [ "$o" -ge "$RISE" ]; then d=0; log "datastore node $name is up ($o checks passed)"; fi');
  l.push('    else');
  l.push('      o=0 f=$((f + 1))');
  l.push('      if [ "$d" = 0 ] && [ "$f" -ge "$FALL" ]; then d=1; log "datastore node $name is down ($f checks failed)"; fi');
  l.push('    fi');
  l.push('    eval "dfails_$i=$f doks_$i=$o ddown_$i=$d"');
  l.push('    if [ "$ok" = 1 ] && [ "$d" = 0 ]; then');
  l.push('      [ "$fit1" = 0 ] && fit1=$i');
  l.push("      # The check skips the causal read for a node holding kine's sessions and says so.");
  l.push('      if grep -q "wsrep_causal_read=writer" "$TMP/gb$i" 2>/dev/null; then');
  l.push('        nsess=$((nsess + 1))');
  l.push('        [ "$sess1" = 0 ] && sess1=$i');
  l.push('      fi');
  l.push('    fi');
  l.push('    [ "$name" = "$writer" ] && wi=$i');
  l.push('    i=$((i + 1))');
  l.push('  done');
  l.push('  eval "wd=\\${ddown_$wi:-1}"');
  l.push('  wup=0');
  l.push('  [ "$wd" = 0 ] && wup=1');
  l.push('  # Open only on the holder of the virtual IP, and only the hold-down after it');
  l.push('  # took it (keepalived writes the time; the address seen arriving counts too).');
  l.push('  vopen=1 holds=1 tk=0');
  l.push('  if [ -n "$VIP" ]; then');
  l.push('    holds=0');
  l.push('    case " $(ip -o -4 addr show 2>/dev/null | tr \'\\n\' \' \') " in *" $VIP/"*) holds=1 ;; esac');
  l.push('    [ "$holds" = 1 ] && [ "$vip_was" = 0 ] && vip_since=$now');
  l.push('    vip_was=$holds');
  l.push('    tk=$(cat "$TAKEOVER" 2>/dev/null)');
  l.push("    case \"$tk\" in ''|*[!0-9]*) tk=0 ;; esac");
  l.push('    [ "$vip_since" -gt "$tk" ] && tk=$vip_since');
  l.push('    if [ "$holds" = 0 ] || [ "$now" -lt $((tk + HOLD_MS)) ]; then vopen=0; fi');
  l.push('  fi');
  l.push('  # The writer lost: every node down for the hold-down (once per loss).');
  l.push('  if [ -n "$writer" ] && [ "$wup" = 0 ] && [ "$lost" != "$writer" ]; then');
  l.push('    lost=$writer hold_until=$((now + HOLD_MS)) hstart=1');
  l.push('    log "the datastore writer $writer is down: no datastore node for ${HOLD_MS} ms (the hold-down), then the next fit one"');
  l.push('  fi');
  l.push('  [ "$wup" = 1 ] && lost=""');
  l.push("  # The one fit node holding kine's sessions, and since when it is.");
  l.push('  if [ "$nsess" = 1 ]; then');
  l.push('    [ "$sess1" = "$fcand" ] || fcand=$sess1 fsince=$now');
  l.push('  else');
  l.push('    fcand=0');
  l.push('  fi');
  l.push('  pick=0');
  l.push('  if [ "$wup" = 0 ] && [ "$now" -ge "$hold_until" ]; then');
  l.push("    # No writer, or the hold-down is over: the one fit node holding kine's");
  l.push('    # sessions (the writer the other load balancer uses), else the first fit node.');
  l.push('    pick=$fit1');
  l.push('    [ "$nsess" = 1 ] && pick=$sess1');
  l.push('  elif [ "$holds" = 0 ] && [ "$now" -ge $((tk + HOLD_MS)) ] && [ "$fcand" -gt 0 ] && [ "$fcand" != "$wi" ] && [ "$now" -ge $((fsince + FOLLOW_MS)) ]; then');
  l.push('    # Without the virtual IP (and not just taking it): follow the writer the data');
  l.push('    # nodes show, the one node holding sessions for FOLLOW_MS. Not sooner: when');
  l.push("    # the address moves the other load balancer closes its writer's sessions,");
  l.push('    # and a node cut off in the middle of commits showed stale ones for more');
  l.push('    # than 30 s in the lab.');
  l.push('    pick=$fcand');
  l.push('  fi');
  l.push('  if [ "$pick" -gt 0 ]; then');
  l.push('    eval "writer=\\$dname_$pick"');
  l.push('    wi=$pick wup=1 lost=""');
  l.push('    { echo "$writer" > "$WFILE.tmp" && mv -f "$WFILE.tmp" "$WFILE"; } || log "cannot write $WFILE"');
  l.push('    log "the datastore writer is now $writer"');
  l.push('  fi');
  l.push('  open=0');
  l.push('  [ "$wup" = 1 ] && [ "$now" -ge "$hold_until" ] && [ "$vopen" = 1 ] && open=1');
  l.push('  if [ "$open" != "$was_open" ]; then');
  l.push('    if [ "$open" = 1 ]; then log "datastore open: every connection to $writer"');
  l.push('    elif [ "$wup" = 0 ]; then log "datastore closed: no fit writer${lost:+ (hold-down after losing $lost)}"');
  l.push('    elif [ "$now" -lt "$hold_until" ]; then log "datastore closed: hold-down after losing the writer"');
  l.push('    else log "datastore closed: this load balancer does not hold the virtual IP, or took it less than ${HOLD_MS} ms ago"; fi');
  l.push('    was_open=$open');
  l.push('  fi');
  l.push('  dwant="" i=1');
  l.push('  while [ "$i" -le "$DN" ]; do');
  l.push('    if [ "$open" = 1 ] && [ "$i" = "$wi" ]; then dwant="$dwant 0"; else dwant="$dwant 1"; fi');
  l.push('    i=$((i + 1))');
  l.push('  done');
  return l;
}

/** install_state for both files: one nginx -t, one reload, then the old connections closed. */
export function datastoreInstallState(apiKill: string[]): string[] {
  const l: string[] = [];
  l.push('# Put the files for the server marks $1 and the datastore marks $2 in place');
  l.push('# where they differ, check them with nginx -t, reload.');
  l.push('install_state() {');
  l.push('  render "$1" > "$TMP/new"');
  l.push('  drender "$2" > "$TMP/dnew"');
  l.push('  cmp -s "$TMP/new" "$STATE" && cmp -s "$TMP/dnew" "$DSTATE" && return 0');
  l.push("  # This install's number: its closing of connections stops once a newer one");
  l.push('  # has begun, which may have put a node it closes back up (the new writer).');
  l.push('  gen=$((gen + 1))');
  l.push('  echo "$gen" > "$TMP/gen"');
  l.push('  had_old=0 dhad_old=0');
  l.push('  if [ -f "$STATE" ]; then cp "$STATE" "$TMP/old" && had_old=1; fi');
  l.push('  if [ -f "$DSTATE" ]; then cp "$DSTATE" "$TMP/dold" && dhad_old=1; fi');
  l.push('  { cp "$TMP/new" "$STATE.k8s-ha-tmp" && mv -f "$STATE.k8s-ha-tmp" "$STATE" && cp "$TMP/dnew" "$DSTATE.k8s-ha-tmp" && mv -f "$DSTATE.k8s-ha-tmp" "$DSTATE"; } || { log "cannot write $STATE or $DSTATE"; return 1; }');
  l.push('  if ! err=$(nginx -t -q 2>&1); then');
  l.push('    log "nginx -t rejects the new server marks, keeping the old files: $err"');
  l.push('    if [ "$had_old" = 1 ]; then mv -f "$TMP/old" "$STATE"; else rm -f "$STATE"; fi');
  l.push('    if [ "$dhad_old" = 1 ]; then mv -f "$TMP/dold" "$DSTATE"; else rm -f "$DSTATE"; fi');
  l.push('    return 1');
  l.push('  fi');
  l.push('  old=$(workers)');
  l.push('  # A reload: old workers finish their connections, new ones use the new marks.');
  l.push('  systemctl reload nginx || { log "nginx reload failed"; return 1; }');
  l.push(...apiKill);
  l.push("  # The old workers keep their datastore connections across the reload and");
  l.push('  # accept new ones until they are told to stop: once they have, close every');
  l.push('  # connection to a node marked down (kine reconnects, to the writer), and');
  l.push('  # twice more for stragglers.');
  l.push('  ( quiesced "$old"');
  l.push('    for pause in 0 0.5 1; do');
  l.push('      sleep "$pause"');
  l.push('      [ "$(cat "$TMP/gen" 2>/dev/null)" = "$gen" ] || exit 0');
  l.push('      dkill "$2"');
  l.push('    done ) &');
  l.push('}');
  return l;
}
