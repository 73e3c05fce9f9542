import { assertDatastoreListener, assertInt, assertIp, assertPath, durationText, hostPort, managedHeader } from './common.js';
import type { LbUpstream } from './nginx.js';

/**
 * The Galera datastore behind nginx (issue 14): the same one-writer routing
 * HAProxy does (render/haproxy-datastore.ts), done by k8s-ha-lbcheck, which
 * rewrites the datastore upstream's server file so that exactly one node is
 * up in it, or none during a hold-down. This module holds the nginx side (the
 * listener, the server file) and the checker's datastore part, which
 * render/lbcheck.ts puts into its script.
 *
 * How the checker decides, each round (every healthCheck.interval):
 * - each node's Galera check (k8s-ha-galera-check, HTTP 200 = Synced, in the
 *   primary component, ready, and a candidate writer passes a causal read)
 *   counts towards fall/rise, as HAProxy's check does;
 * - the writer is the node its writer file names; it stays the writer while
 *   it is up, so the checker never fails back by itself;
 * - when the writer is marked down, every node is down for holdMs (the
 *   hold-down: kine's read-back of a create whose INSERT failed must fail,
 *   not reach a node that never saw the INSERT), then the first fit node is
 *   the writer: the one that holds kine's sessions if one does (the writer the
 *   other load balancer uses), else the first in the preferred order;
 * - with a virtual IP, the datastore is open only on the load balancer that
 *   holds it, and only holdMs after it took it (keepalived's notify_master
 *   writes the time, renderNginxTakeoverScript; the checker also notices the
 *   address arriving). A load balancer without the address takes no datastore
 *   connections and follows the writer the data nodes show, the one fit node
 *   holding kine's sessions for followMs, so both agree when the address moves;
 * - a node taken out of the file has its connections closed (`ss -K`) once
 *   the reload has told the old workers to stop accepting: they keep their
 *   connections across a reload, and kine would go on writing to the old node.
 */

/** The datastore upstream's server lines; nginx.conf includes it and the checker rewrites it. */
export const NGINX_DATASTORE_STATE_PATH = '/etc/nginx/k8s-ha-datastore.conf';
/** The writer the checker chose (one node name); kept across checker restarts and reboots. */
export const NGINX_WRITER_PATH = '/var/lib/k8s-ha/datastore-writer';
/** When this load balancer last took the virtual IP (epoch ms), written by keepalived's notify_master. */
export const NGINX_TAKEOVER_PATH = '/run/k8s-ha/datastore-takeover';
/** nginx's upstream block of the datastore. */
export const NGINX_DATASTORE_UPSTREAM = 'k3s_datastore';

export interface NginxDatastoreInput {
  /** Port the k3s servers' datastore-endpoint names (3306). */
  listenPort: number;
  /** The data nodes, the preferred writer first; the checker picks a new writer in this order. */
  nodes: LbUpstream[];
  /** Port of each node's Galera HTTP check (200 = fit for writes). */
  checkPort: number;
  /** The hold-down after the writer is lost or this load balancer took the virtual IP (ms). 0: none. */
  holdMs: number;
  /** The API virtual IP: the datastore is open only where it is. Default: none (one load balancer). */
  virtualIP?: string;
  /** Send a PROXY protocol header so MariaDB sees the k3s server's address. Default: false. */
  proxyProtocol?: boolean;
  /**
   * How long the one node holding kine's sessions must be so before a load
   * balancer without the virtual IP takes it as its writer (ms). Default 5000:
   * far longer than the moment a takeover closes the real writer's sessions,
   * while a node cut off in the middle of commits can show stale ones.
   */
  followMs?: number;
  /** Default NGINX_DATASTORE_STATE_PATH. */
  statePath?: string;
  /** Default NGINX_WRITER_PATH. */
  writerPath?: string;
  /** Default NGINX_TAKEOVER_PATH. */
  takeoverPath?: string;
}

export function validateNginxDatastore(d: NginxDatastoreInput, apiPort?: number): void {
  assertDatastoreListener(d, apiPort);
  assertInt('datastore.holdMs', d.holdMs, 0, 60_000);
  if (d.virtualIP !== undefined) assertIp('datastore.virtualIP', d.virtualIP);
  if (d.followMs !== undefined) assertInt('datastore.followMs', d.followMs, 0, 600_000);
  if (d.statePath !== undefined) assertPath('datastore.statePath', d.statePath);
  if (d.writerPath !== undefined) assertPath('datastore.writerPath', d.writerPath);
  if (d.takeoverPath !== undefined) assertPath('datastore.takeoverPath', d.takeoverPath);
}

/** One server line of the datastore upstream without its `;`. max_fails=0: only the checker marks nodes. */
export function datastoreServerDirective(n: LbUpstream): string {
  return `server ${hostPort(n.address, n.port)} max_fails=0`;
}

const STATE_HEADER = [
  'Galera data nodes of the k3s_datastore upstream (included by nginx.conf).',
  'k8s-ha-lbcheck keeps exactly one of them up (the writer), or none during a',
  'hold-down or while this load balancer does not hold the virtual IP; k8s-ha',
  'ignores those marks when it compares this file.',
];

/**
 * The datastore server file with every node but `up` marked down (what the
 * checker writes; the phase writes it with none up, and the checker opens it).
 */
export function renderDatastoreState(d: NginxDatastoreInput, up: string | null = null): string {
  validateNginxDatastore(d);
  const lines = [managedHeader('#', STATE_HEADER[0]!).trimEnd(), ...STATE_HEADER.slice(1).map((l) => `# ${l}`)];
  for (const n of d.nodes) lines.push(`${datastoreServerDirective(n)}${n.name === up ? '' : ' down'}; # ${n.name}`);
  return lines.join('\n') + '\n';
}

/** The node marked up in a datastore server file, or null (none, or the file is not one). */
export function parseDatastoreState(text: string): string | null {
  const up = [...text.matchAll(/^server \S+ max_fails=0; # (\S+)$/gm)].map((m) => m[1]!);
  return up.length === 1 ? up[0]! : null;
}

/**
 * nginx.conf's datastore lines inside `stream {}`: the upstream (its servers
 * in the checker's file) and the listener. No next upstream: a connection
 * to a writer that fails must fail, not reach another node (HAProxy's "no
 * redispatch"); a connection while every node is down is closed at once,
 * before MySQL's greeting, which kine's read-back takes as an error.
 */
export function nginxDatastoreLines(d: NginxDatastoreInput, o: { listenAddress?: string; connectTimeoutMs: number; idleTimeoutMs: number }): string[] {
  validateNginxDatastore(d);
  const listen = o.listenAddress === undefined ? String(d.listenPort) : hostPort(o.listenAddress, d.listenPort);
  const l: string[] = [];
  l.push(`    upstream ${NGINX_DATASTORE_UPSTREAM} {`);
  l.push('        # Galera, one writer: k8s-ha-lbcheck reads each node\'s Galera check and');
  l.push('        # keeps exactly one node up here (none during a hold-down, or while');
  l.push('        # this load balancer does not hold the virtual IP).');
  l.push(`        include ${d.statePath ?? NGINX_DATASTORE_STATE_PATH};`);
  l.push('    }');
  l.push('');
  l.push('    server {');
  l.push(`        listen ${listen};`);
  l.push(`        proxy_pass ${NGINX_DATASTORE_UPSTREAM};`);
  if (d.proxyProtocol) {
    l.push("        # MariaDB reads the k3s server's own address from this header");
    l.push('        # (proxy_protocol_networks), so its grants mean something.');
    l.push('        proxy_protocol on;');
  }
  l.push(`        proxy_connect_timeout ${durationText('connectTimeoutMs', o.connectTimeoutMs)};`);
  l.push(`        proxy_timeout ${durationText('idleTimeoutMs', o.idleTimeoutMs)};`);
  l.push('        # A failed connect must not land on another node (one writer).');
  l.push('        proxy_next_upstream off;');
  l.push('    }');
  return l;
}

/**
 * keepalived's notify_master script on an nginx load balancer with the
 * datastore listener: records when this host took the virtual IP; the
 * checker keeps the datastore closed for the hold-down from then.
 */
export function renderNginxTakeoverScript(takeoverPath: string = NGINX_TAKEOVER_PATH): string {
  assertPath('takeoverPath', takeoverPath);
  const dir = takeoverPath.slice(0, takeoverPath.lastIndexOf('/')) || '/';
  return [
    '#!/bin/sh',
    '# Managed by k8s-ha: local edits are overwritten on the next apply.',
    '# Run by keepalived when this host takes the virtual IP: k8s-ha-lbcheck keeps',
    "# the datastore closed for the hold-down from this time, so kine's read-back of",
    '# a create whose INSERT the move cut fails instead of reporting a row never written.',
    `mkdir -p ${dir} && date +%s%3N > ${takeoverPath}.tmp && mv -f ${takeoverPath}.tmp ${takeoverPath}`,
    'exit 0',
    '',
  ].join('\n');
}
