import { readFile, writeFile } from 'node:fs/promises';
import { LabUsageError } from './errors.js';
import { run } from './run.js';

/** An IPv4 network: first address as a 32-bit number, and the prefix length. */
export interface Cidr {
  base: number;
  prefix: number;
}

export function ipToNumber(ip: string): number {
  const parts = ip.split('.');
  if (parts.length !== 4) throw new LabUsageError(`"${ip}" is not an IPv4 address (expected a.b.c.d)`);
  let n = 0;
  for (const p of parts) {
    const v = Number(p);
    if (!/^\d{1,3}$/.test(p) || v > 255) throw new LabUsageError(`"${ip}" is not an IPv4 address (expected a.b.c.d)`);
    n = n * 256 + v;
  }
  return n;
}

export function numberToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

export function parseCidr(text: string): Cidr {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(text.trim());
  if (!m) throw new LabUsageError(`--subnet "${text}" is not an IPv4 CIDR; write it like 10.213.0.0/24`);
  const prefix = Number(m[2]);
  if (prefix > 32) throw new LabUsageError(`--subnet "${text}": a prefix length is at most 32`);
  const size = 2 ** (32 - prefix);
  const ip = ipToNumber(m[1] ?? '');
  return { base: ip - (ip % size), prefix };
}

export function formatCidr(c: Cidr): string {
  return `${numberToIp(c.base)}/${c.prefix}`;
}

function size(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.base < b.base + size(b) && b.base < a.base + size(a);
}

/** The n-th address of the network (0 = the network address). */
export function nth(c: Cidr, n: number): string {
  if (n < 0 || n >= size(c)) throw new LabUsageError(`subnet ${formatCidr(c)} has no room for address #${n}; use a /24 or larger`);
  return numberToIp(c.base + n);
}

/** A network the host already uses, and where it came from (for the error message). */
export interface HostNet {
  cidr: Cidr;
  what: string;
}

interface IpRoute {
  dst?: string;
  dev?: string;
  type?: string;
}
interface IpAddr {
  ifname?: string;
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}

/** Every IPv4 network in the host's routes and on its interfaces. */
export async function hostNetworks(): Promise<HostNet[]> {
  const out: HostNet[] = [];
  const routes = JSON.parse((await run(['ip', '-j', '-4', 'route', 'show', 'table', 'all'])).stdout || '[]') as IpRoute[];
  for (const r of routes) {
    if (!r.dst || r.dst === 'default') continue;
    // Broadcast and local entries duplicate the addresses listed below.
    if (r.type === 'broadcast' || r.type === 'local' || r.type === 'multicast') continue;
    const dst = r.dst.includes('/') ? r.dst : `${r.dst}/32`;
    out.push({ cidr: parseCidr(dst), what: `route ${r.dst}${r.dev ? ` dev ${r.dev}` : ''}` });
  }
  const addrs = JSON.parse((await run(['ip', '-j', '-4', 'addr'])).stdout || '[]') as IpAddr[];
  for (const a of addrs) {
    for (const i of a.addr_info ?? []) {
      if (i.family !== 'inet' || !i.local || i.prefixlen === undefined) continue;
      if (i.local.startsWith('127.')) continue;
      out.push({ cidr: parseCidr(`${i.local}/${i.prefixlen}`), what: `address ${i.local}/${i.prefixlen} on ${a.ifname ?? '?'}` });
    }
  }
  return out;
}

/** The first of the host's networks that `subnet` overlaps, or null. */
export function collision(subnet: Cidr, host: readonly HostNet[]): HostNet | null {
  return host.find((h) => overlaps(subnet, h.cidr)) ?? null;
}

/** Candidates tried, in order, when no --subnet is given. */
export const DEFAULT_SUBNETS: readonly string[] = Array.from({ length: 16 }, (_, i) => `10.213.${i}.0/24`);

/**
 * The lab's subnet: the one asked for (refused, naming the collision, when it
 * overlaps the host's networks), or the first free default.
 */
export function chooseSubnet(wanted: string | undefined, host: readonly HostNet[]): Cidr {
  if (wanted) {
    const c = parseCidr(wanted);
    if (c.prefix > 24) throw new LabUsageError(`--subnet ${wanted}: the lab needs a /24 or larger (machines from .10, MetalLB pool at .200)`);
    const hit = collision(c, host);
    if (hit) {
      // Suggest only a subnet that is free here (the first default may be the one that collides).
      const free = DEFAULT_SUBNETS.find((d) => !collision(parseCidr(d), host) && !overlaps(parseCidr(d), c));
      throw new LabUsageError(`--subnet ${formatCidr(c)} collides with the host's ${hit.what}; choose another with --subnet${free ? ` (e.g. ${free}, free on this host)` : ', one none of the host\'s routes covers'}`);
    }
    return c;
  }
  for (const s of DEFAULT_SUBNETS) {
    const c = parseCidr(s);
    if (!collision(c, host)) return c;
  }
  throw new LabUsageError(`every default lab subnet (10.213.0-15.0/24) collides with the host's routes; choose one with --subnet CIDR`);
}

// ---- bridge, NAT, links -------------------------------------------------

export async function linkExists(name: string): Promise<boolean> {
  const r = await run(['ip', '-j', 'link', 'show', 'dev', name], { allowFailure: true });
  return r.code === 0;
}

export async function createBridge(bridge: string, address: string, prefix: number): Promise<void> {
  await run(['ip', 'link', 'add', 'name', bridge, 'type', 'bridge']);
  await run(['ip', 'addr', 'add', `${address}/${prefix}`, 'dev', bridge]);
  await run(['ip', 'link', 'set', 'dev', bridge, 'up']);
}

export async function deleteLink(name: string): Promise<void> {
  if (await linkExists(name)) await run(['ip', 'link', 'del', 'dev', name]);
}

export async function setLink(name: string, up: boolean): Promise<void> {
  await run(['ip', 'link', 'set', 'dev', name, up ? 'up' : 'down']);
}

/** The host-side interface whose index is `ifindex` (a veth's peer). */
export async function linkNameByIndex(ifindex: number): Promise<string | null> {
  const links = JSON.parse((await run(['ip', '-j', 'link'])).stdout || '[]') as { ifindex: number; ifname: string }[];
  return links.find((l) => l.ifindex === ifindex)?.ifname ?? null;
}

export async function readIpForward(): Promise<string> {
  return (await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim();
}

export async function writeIpForward(value: string): Promise<void> {
  await writeFile('/proc/sys/net/ipv4/ip_forward', `${value}\n`);
}

/**
 * NAT for the lab: machines reach the Debian mirror (apt-get install) through
 * the host. One table of the lab's own, so `down` removes exactly its rules.
 * Names are validated (lab names are [a-z0-9-]) before they reach here.
 */
export async function addNat(table: string, subnet: string, bridge: string): Promise<void> {
  const rules = [
    `table ip ${table} {`,
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    ip saddr ${subnet} ip daddr != ${subnet} oifname != "${bridge}" masquerade`,
    '  }',
    '}',
  ].join('\n');
  await run(['nft', '-f', '-'], { input: `${rules}\n` });
}

export async function deleteNat(table: string): Promise<void> {
  const r = await run(['nft', 'list', 'table', 'ip', table], { allowFailure: true });
  if (r.code === 0) await run(['nft', 'delete', 'table', 'ip', table]);
}

/** The host's first non-loopback nameservers, for the machines' resolv.conf. */
export async function hostNameservers(): Promise<string[]> {
  const text = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  const ns = [...text.matchAll(/^nameserver\s+(\S+)/gm)].map((m) => m[1] ?? '').filter((a) => a && !a.startsWith('127.') && a !== '::1');
  // A host that resolves only through a local stub (systemd-resolved) cannot
  // lend it to the machines: the caller warns that names will not resolve.
  return ns;
}
