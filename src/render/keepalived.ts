import { Secret } from '../util/secret.js';
import {
  RenderInputError,
  SecretRenderOptions,
  assertInt,
  assertIpv4,
  assertName,
  assertPath,
  managedHeader,
  secretText,
  sortedUnique,
} from './common.js';

/** Where keepalived.conf is installed (Debian packaging). */
export const KEEPALIVED_CONF_PATH = '/etc/keepalived/keepalived.conf';

export interface KeepalivedInput {
  /** `global_defs.router_id`: names this LB host in logs, e.g. its node name. */
  hostName: string;
  /** `virtual_router_id`, 1-255: identical on both LBs, unique on the segment. */
  routerId: number;
  /** Interface that carries the VIP and the adverts, e.g. eth0. */
  interface: string;
  /** The API virtual IP (IPv4). */
  virtualAddress: string;
  /** Prefix length of the VIP on the interface, e.g. 24. */
  prefixLength: number;
  /** 1-254; the preferred LB gets the higher value (255 is reserved for an address owner). */
  priority: number;
  /** The other LB hosts' addresses; used only when `unicast`. */
  peers: string[];
  /** This host's address on `interface`; the source of unicast adverts. */
  selfAddress: string;
  /** Send adverts to `peers` rather than multicast 224.0.0.18 (for networks that filter multicast). */
  unicast: boolean;
  /**
   * Advert interval. Failover takes about 3 x this plus the check time.
   * Whole seconds use VRRP v2; anything else needs VRRP v3 (10 ms steps),
   * which has no authentication.
   */
  advertIntervalMs: number;
  /** VRRP v2 PASS authentication, at most 8 characters (keepalived uses only 8). */
  authPass?: Secret;
  /**
   * The track script (render/lb-alive.ts): exit 0 while this host's load
   * balancer serves clients. keepalived runs it every second as root.
   */
  checkScript: string;
  /** keepalived kills the script after this many seconds (counts as a failure). */
  checkTimeoutS: number;
  /** Return to the preferred LB when it recovers (a second short blip). Default true. */
  preempt?: boolean;
  /**
   * A script keepalived runs (as root) when this host takes the VIP, e.g.
   * the datastore listener's hold-down (render/haproxy-datastore.ts). Default: none.
   */
  notifyMaster?: string;
  /**
   * A script keepalived runs (as root) when this host gives up the VIP or
   * holds it no more (BACKUP, FAULT, keepalived stopping), e.g. closing the
   * datastore sessions through this load balancer (render/haproxy-datastore.ts).
   * Default: none.
   */
  notifyRelease?: string;
}

const IFACE = /^[A-Za-z0-9_.-]{1,15}$/;
// keepalived splits on blanks and treats '#' and '!' as comments, '{' '}' as
// blocks, '$' as a parameter, '@' as a conditional prefix and quotes as
// grouping: a password is limited to characters none of those touch.
const AUTH_PASS = /^[A-Za-z0-9_.+=%:,/*^-]{1,8}$/;

function vrrpVersion(advertIntervalMs: number): 2 | 3 {
  return advertIntervalMs % 1000 === 0 ? 2 : 3;
}

function validate(input: KeepalivedInput): void {
  assertName('hostName', input.hostName);
  assertInt('routerId', input.routerId, 1, 255);
  if (typeof input.interface !== 'string' || !IFACE.test(input.interface)) {
    throw new RenderInputError('interface', `must be a Linux interface name (1-15 letters, digits, '_', '.', '-'), got ${JSON.stringify(input.interface)}`);
  }
  assertIpv4('virtualAddress', input.virtualAddress);
  assertInt('prefixLength', input.prefixLength, 1, 32);
  assertInt('priority', input.priority, 1, 254);
  const version = vrrpVersion(input.advertIntervalMs);
  if (version === 2) assertInt('advertIntervalMs', input.advertIntervalMs, 1000, 255_000);
  else {
    assertInt('advertIntervalMs', input.advertIntervalMs, 10, 40_950);
    if (input.advertIntervalMs % 10 !== 0) throw new RenderInputError('advertIntervalMs', 'VRRP v3 counts in centiseconds: must be a multiple of 10');
  }
  if (input.authPass !== undefined) {
    if (version === 3) {
      throw new RenderInputError('authPass', 'VRRP v3 (needed for a sub-second advertIntervalMs) has no authentication: drop authPass or use whole seconds');
    }
    if (!AUTH_PASS.test(input.authPass.reveal())) {
      throw new RenderInputError('authPass', "must be 1-8 characters of letters, digits and _ . + = % : , / * ^ - (keepalived ignores the rest and gives some a meaning)");
    }
  }
  assertPath('checkScript', input.checkScript);
  assertInt('checkTimeoutS', input.checkTimeoutS, 1, 60);
  if (input.notifyMaster !== undefined) assertPath('notifyMaster', input.notifyMaster);
  if (input.notifyRelease !== undefined) assertPath('notifyRelease', input.notifyRelease);
  if (input.unicast) {
    assertIpv4('selfAddress', input.selfAddress);
    if (!Array.isArray(input.peers) || input.peers.length === 0) throw new RenderInputError('peers', 'unicast needs at least one peer');
    input.peers.forEach((p, i) => assertIpv4(`peers[${i}]`, p));
    if (input.peers.includes(input.selfAddress)) throw new RenderInputError('peers', 'must not contain selfAddress');
    if (input.peers.includes(input.virtualAddress) || input.selfAddress === input.virtualAddress) {
      throw new RenderInputError('virtualAddress', 'must not be a host address of an LB');
    }
  }
}

function advertText(ms: number): string {
  // 1000 -> "1", 500 -> "0.5", 250 -> "0.25"
  return String(ms / 1000);
}

/**
 * /etc/keepalived/keepalived.conf for one of the LB hosts. Both hosts start
 * as BACKUP and elect by priority, so a restarting host never claims the VIP
 * before it has heard its peer. Check it with `keepalived -t -f FILE`.
 */
/** The VRRP passwords in a keepalived.conf as found on a host (read leniently). */
export function keepalivedSecrets(text: string): string[] {
  return [...text.matchAll(/^\s*auth_pass\s+(\S+)/gm)].map((m) => m[1]!.replace(/^"(.*)"$/, '$1'));
}

export function renderKeepalivedConf(input: KeepalivedInput, opts?: SecretRenderOptions): string {
  validate(input);
  const version = vrrpVersion(input.advertIntervalMs);
  const l: string[] = [];
  l.push(managedHeader('#', 'keepalived.conf: VRRP virtual IP for the k3s API load balancer.'));
  l.push('global_defs {');
  l.push(`    router_id ${input.hostName}`);
  l.push('    # Run the check as root, and refuse scripts that a non-root user could');
  l.push('    # modify (otherwise keepalived warns and runs them anyway).');
  l.push('    script_user root');
  l.push('    enable_script_security');
  if (version === 3) {
    l.push('    # VRRP v2 adverts count whole seconds; v3 allows the sub-second interval.');
    l.push('    vrrp_version 3');
  }
  l.push('}');
  l.push('');
  l.push('# What clients need, not that a process exists: a TLS request through');
  l.push("# this host's listener answered (nginx's graceful stop keeps its process");
  l.push('# for seconds after the listener closed; a hung daemon keeps it forever).');
  l.push('vrrp_script chk_lb {');
  l.push(`    script "${input.checkScript}"`);
  l.push('    # keepalived takes whole seconds; one failure is enough, as the script');
  l.push('    # fails only when the servers answer directly but not through this host.');
  l.push('    interval 1');
  l.push(`    timeout ${input.checkTimeoutS}`);
  l.push('    fall 1');
  l.push('    rise 2');
  l.push('    # weight 0: a failing check puts the instance in FAULT, so this host');
  l.push('    # drops the VIP at once instead of merely lowering its priority.');
  l.push('    weight 0');
  l.push('}');
  l.push('');
  l.push('vrrp_instance k3s_api {');
  l.push('    state BACKUP');
  l.push(`    interface ${input.interface}`);
  l.push(`    virtual_router_id ${input.routerId}`);
  l.push(`    priority ${input.priority}`);
  l.push(`    advert_int ${advertText(input.advertIntervalMs)}`);
  if (input.preempt === false) {
    l.push('    # Keep the VIP where it is when the preferred LB returns (nopreempt');
    l.push('    # requires state BACKUP, set above).');
    l.push('    nopreempt');
  }
  if (input.authPass !== undefined) {
    l.push('    authentication {');
    l.push('        auth_type PASS');
    l.push(`        auth_pass ${secretText(input.authPass, opts)}`);
    l.push('    }');
  }
  if (input.unicast) {
    l.push('    # Unicast adverts for networks that filter VRRP multicast.');
    l.push(`    unicast_src_ip ${input.selfAddress}`);
    l.push('    unicast_peer {');
    for (const p of sortedUnique(input.peers)) l.push(`        ${p}`);
    l.push('    }');
  }
  l.push('    virtual_ipaddress {');
  l.push(`        ${input.virtualAddress}/${input.prefixLength} dev ${input.interface}`);
  l.push('    }');
  l.push('    track_script {');
  l.push('        chk_lb');
  l.push('    }');
  if (input.notifyMaster !== undefined) {
    l.push('    # Connections cut by the move fail on this host now: see the script.');
    l.push(`    notify_master "${input.notifyMaster}"`);
  }
  if (input.notifyRelease !== undefined) {
    l.push('    # Sessions left behind by the move (their clients now reach the other host): see the script.');
    for (const k of ['notify_backup', 'notify_fault', 'notify_stop']) l.push(`    ${k} "${input.notifyRelease}"`);
  }
  l.push('}');
  return l.join('\n') + '\n';
}
