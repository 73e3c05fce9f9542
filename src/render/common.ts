import { isIPv4, isIPv6 } from 'node:net';
import { MASK, Secret } from '../util/secret.js';

/**
 * Thrown when an input value would produce a broken or injectable config
 * file. `field` is the input's field path (e.g. `servers[1].address`) so the
 * phase that mapped the spec onto the input can point back at the spec.
 * Renderers throw this instead of escaping where the format has no reliable
 * escape (nginx and keepalived tokens, HAProxy words, option-file values).
 */
export class RenderInputError extends Error {
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${field}: ${problem}`);
    this.name = 'RenderInputError';
  }
}

/** Options shared by the renderers of files that hold a secret. */
export interface SecretRenderOptions {
  /** Put MASK where a secret would go, for plans and diffs. Default false. */
  maskSecrets?: boolean;
}

/** The one place a renderer turns a Secret into file text. */
export function secretText(secret: Secret, opts: SecretRenderOptions | undefined): string {
  return opts?.maskSecrets ? MASK : secret.reveal();
}

/** First line of every rendered file, in the format's comment syntax. */
export function managedHeader(comment: string, what: string): string {
  return `${comment} ${what}\n${comment} Managed by k8s-ha: local edits are overwritten on the next apply.\n`;
}

/**
 * Locale-independent string order. `localeCompare` depends on the host's ICU
 * data and locale, which would make "deterministic" output differ between
 * machines.
 */
export function byString(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function sortedUnique(values: readonly string[]): string[] {
  return [...new Set(values)].sort(byString);
}

export function assertInt(field: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RenderInputError(field, `must be an integer from ${min} to ${max}, got ${String(value)}`);
  }
}

export function assertPort(field: string, value: number): void {
  assertInt(field, value, 1, 65535);
}

export function isIp(value: string): boolean {
  return isIPv4(value) || isIPv6(value);
}

// RFC 1123 host name: dot-separated labels of letters, digits and inner
// hyphens, at most 253 characters. Nothing else can reach a config file as a
// host name, which rules out spaces, quotes, `;`, `#`, `{` and newlines.
const HOSTNAME = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export function isHostname(value: string): boolean {
  return HOSTNAME.test(value);
}

export function assertIp(field: string, value: string): void {
  if (typeof value !== 'string' || !isIp(value)) throw new RenderInputError(field, `must be an IPv4 or IPv6 address, got ${JSON.stringify(value)}`);
}

export function assertIpv4(field: string, value: string): void {
  if (typeof value !== 'string' || !isIPv4(value)) throw new RenderInputError(field, `must be an IPv4 address, got ${JSON.stringify(value)}`);
}

export function assertHost(field: string, value: string): void {
  if (typeof value !== 'string' || !(isIp(value) || isHostname(value))) {
    throw new RenderInputError(field, `must be an IP address or a DNS name, got ${JSON.stringify(value)}`);
  }
}

/** `host:port`, with IPv6 literals in brackets as nginx, HAProxy and URLs need. */
export function hostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A name used as a config identifier (upstream server comment, HAProxy server name...). */
export function assertName(field: string, value: string): void {
  if (typeof value !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(value)) {
    throw new RenderInputError(field, `must be 1-63 letters, digits, '.', '_' or '-' starting with a letter or digit, got ${JSON.stringify(value)}`);
  }
}

/** An absolute path made of safe characters: no spaces, quotes or separators of any format. */
export function assertPath(field: string, value: string): void {
  if (typeof value !== 'string' || !/^\/[A-Za-z0-9._/+-]*$/.test(value) || value.split('/').includes('..')) {
    throw new RenderInputError(field, `must be an absolute path of letters, digits and . _ / + - (no '..'), got ${JSON.stringify(value)}`);
  }
}

export function assertNoControlChars(field: string, value: string): void {
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new RenderInputError(field, 'must not contain control characters (newline, tab, NUL...)');
}

/**
 * A duration for nginx and HAProxy, which share the suffixes ms/s/m/h: the
 * largest unit that represents the value exactly, so 3600000 -> "1h" and
 * 1500 -> "1500ms". Readers of the file see round numbers.
 */
export function durationText(field: string, ms: number): string {
  assertInt(field, ms, 1, 7 * 24 * 3600 * 1000);
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** Throw when two items share a key (a server name, an address...). */
export function assertUnique<T>(field: string, items: readonly T[], key: (t: T) => string): void {
  const seen = new Set<string>();
  for (const item of items) {
    const k = key(item);
    if (seen.has(k)) throw new RenderInputError(field, `duplicate ${JSON.stringify(k)}`);
    seen.add(k);
  }
}

/** The listener and the k3s servers that every load-balancer config forwards to (nginx, HAProxy). */
export function assertListenerAndServers(input: {
  listenPort: number;
  listenAddress?: string;
  servers: readonly { name: string; address: string; port: number }[];
}): void {
  assertPort('listenPort', input.listenPort);
  if (input.listenAddress !== undefined) assertIp('listenAddress', input.listenAddress);
  assertServers(input.servers);
  assertUnique('servers[].address:port', input.servers, (s) => hostPort(s.address, s.port));
}

/** At least one k3s server, each with a safe name, host and port, names unique (they go into sh words and config lines). */
export function assertServers(servers: readonly { name: string; address: string; port: number }[]): void {
  if (!Array.isArray(servers) || servers.length === 0) throw new RenderInputError('servers', 'at least one k3s server is needed');
  servers.forEach((s, i) => {
    assertName(`servers[${i}].name`, s.name);
    assertHost(`servers[${i}].address`, s.address);
    assertPort(`servers[${i}].port`, s.port);
  });
  assertUnique('servers[].name', servers, (s) => s.name);
}

/**
 * The datastore listener both load balancers put in front of Galera
 * (haproxy-datastore.ts, nginx-datastore.ts): its port, which must differ
 * from the API listener's `apiPort` when given; at least two data nodes, each
 * with a name that is safe in single-quoted sh words and case patterns (no
 * glob characters), an IP address and a port, the names unique; and the port
 * of their Galera check.
 */
export function assertDatastoreListener(
  d: { listenPort: number; nodes: readonly { name: string; address: string; port: number }[]; checkPort: number },
  apiPort?: number,
): void {
  assertPort('datastore.listenPort', d.listenPort);
  if (apiPort !== undefined && d.listenPort === apiPort) throw new RenderInputError('datastore.listenPort', 'must differ from listenPort');
  if (!Array.isArray(d.nodes) || d.nodes.length < 2) throw new RenderInputError('datastore.nodes', 'a Galera datastore needs at least two data nodes');
  d.nodes.forEach((n, i) => {
    if (typeof n.name !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(n.name)) throw new RenderInputError(`datastore.nodes[${i}].name`, `must be letters, digits, '.', '_' or '-', got ${JSON.stringify(n.name)}`);
    assertIp(`datastore.nodes[${i}].address`, n.address);
    assertPort(`datastore.nodes[${i}].port`, n.port);
  });
  if (new Set(d.nodes.map((n) => n.name)).size !== d.nodes.length) throw new RenderInputError('datastore.nodes', 'node names must be unique');
  assertPort('datastore.checkPort', d.checkPort);
}
