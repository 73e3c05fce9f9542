import { isIPv4, isIPv6 } from 'node:net';
import { stringify } from 'yaml';
import { RenderInputError, byString } from './common.js';

export const METALLB_NAMESPACE = 'metallb-system';
export const METALLB_API_VERSION = 'metallb.io/v1beta1';
/** Name of the single L2Advertisement k8s-ha manages. */
export const METALLB_L2_NAME = 'k8s-ha-l2';
/** Label on every object k8s-ha renders, so a later apply can find and prune its own. */
export const MANAGED_BY_LABEL = { 'app.kubernetes.io/managed-by': 'k8s-ha' } as const;

export interface MetallbPool {
  /** Object name (DNS-1123). */
  name: string;
  /** CIDRs (`10.0.0.0/28`) or ranges (`10.0.0.240-10.0.0.250`). */
  addresses: string[];
  /** Let services without a requested address draw from this pool. MetalLB default true. */
  autoAssign: boolean;
}

export interface MetallbInput {
  pools: MetallbPool[];
  /** Announce the pools with ARP/NDP (layer 2). */
  l2Advertisement: boolean;
  /** Default metallb-system (where metallb-native.yaml installs MetalLB). */
  namespace?: string;
}

/** A Kubernetes object as plain data, ready for a client's apply. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  spec: Record<string, unknown>;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** An address as a number, to order and compare ranges. */
function ipToBigInt(ip: string): bigint {
  if (isIPv4(ip)) return ip.split('.').reduce((acc, o) => (acc << 8n) + BigInt(Number(o)), 0n);
  // Expand '::' and an embedded IPv4 tail into eight 16-bit groups.
  let s = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const n = ipToBigInt(v4[1]!);
    s = s.slice(0, -v4[1]!.length) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? (s.split('::') as [string, string]) : [s, undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((acc, g) => (acc << 16n) + BigInt(parseInt(g, 16)), 0n);
}

interface Span {
  family: 4 | 6;
  start: bigint;
  end: bigint;
}

function parseAddress(field: string, value: string): Span {
  const bad = (why: string): RenderInputError => new RenderInputError(field, `${why}, got ${JSON.stringify(value)}`);
  if (typeof value !== 'string') throw bad('must be a CIDR or a range');
  const cidr = /^([^/]+)\/(\d{1,3})$/.exec(value);
  if (cidr) {
    const ip = cidr[1]!;
    const family = isIPv4(ip) ? 4 : isIPv6(ip) ? 6 : 0;
    const bits = family === 4 ? 32 : 128;
    const prefix = Number(cidr[2]);
    if (family === 0 || prefix > bits) throw bad('must be a CIDR such as 10.0.0.240/28 or a range');
    const size = 1n << BigInt(bits - prefix);
    const start = ipToBigInt(ip);
    // MetalLB rejects a CIDR with host bits set: catch it before the webhook does.
    if (start % size !== 0n) throw bad('has host bits set (the address is not the start of the block)');
    return { family, start, end: start + size - 1n };
  }
  const range = /^([^-]+)-([^-]+)$/.exec(value);
  if (range) {
    const [a, b] = [range[1]!.trim(), range[2]!.trim()];
    const family = isIPv4(a) && isIPv4(b) ? 4 : isIPv6(a) && isIPv6(b) ? 6 : 0;
    if (family === 0) throw bad('a range must join two addresses of one family');
    const start = ipToBigInt(a);
    const end = ipToBigInt(b);
    if (start > end) throw bad('a range must run from the lower to the higher address');
    return { family, start, end };
  }
  throw bad('must be a CIDR such as 10.0.0.240/28 or a range such as 10.0.0.240-10.0.0.250');
}

function validate(input: MetallbInput): string {
  const namespace = input.namespace ?? METALLB_NAMESPACE;
  if (!DNS1123_LABEL.test(namespace)) throw new RenderInputError('namespace', `must be a DNS-1123 label, got ${JSON.stringify(namespace)}`);
  if (!Array.isArray(input.pools)) throw new RenderInputError('pools', 'must be a list');
  const names = new Set<string>();
  const spans: { field: string; span: Span }[] = [];
  input.pools.forEach((p, i) => {
    if (typeof p.name !== 'string' || !DNS1123_SUBDOMAIN.test(p.name)) throw new RenderInputError(`pools[${i}].name`, `must be a DNS-1123 name, got ${JSON.stringify(p.name)}`);
    if (names.has(p.name)) throw new RenderInputError(`pools[${i}].name`, `duplicate ${JSON.stringify(p.name)}`);
    names.add(p.name);
    if (typeof p.autoAssign !== 'boolean') throw new RenderInputError(`pools[${i}].autoAssign`, 'must be true or false');
    if (!Array.isArray(p.addresses) || p.addresses.length === 0) throw new RenderInputError(`pools[${i}].addresses`, 'at least one CIDR or range is needed');
    p.addresses.forEach((a, j) => spans.push({ field: `pools[${i}].addresses[${j}]`, span: parseAddress(`pools[${i}].addresses[${j}]`, a) }));
  });
  // MetalLB refuses overlapping pools; two pools handing out one address
  // would give two services the same IP.
  for (let i = 0; i < spans.length; i++) {
    for (let j = i + 1; j < spans.length; j++) {
      const [a, b] = [spans[i]!, spans[j]!];
      if (a.span.family === b.span.family && a.span.start <= b.span.end && b.span.start <= a.span.end) {
        throw new RenderInputError(b.field, `overlaps ${a.field}`);
      }
    }
  }
  return namespace;
}

function addressOrder(a: string, b: string): number {
  const [x, y] = [parseAddress('', a), parseAddress('', b)];
  if (x.family !== y.family) return x.family - y.family;
  if (x.start !== y.start) return x.start < y.start ? -1 : 1;
  return byString(a, b);
}

/**
 * The MetalLB configuration objects: one IPAddressPool per pool (by name,
 * addresses in numeric order) and, when asked, one L2Advertisement for all
 * pools. Apply them only once the MetalLB controller is ready: its webhook
 * rejects them before that.
 */
export function metallbObjects(input: MetallbInput): KubeObject[] {
  const namespace = validate(input);
  const pools = [...input.pools].sort((a, b) => byString(a.name, b.name));
  const objects: KubeObject[] = pools.map((p) => ({
    apiVersion: METALLB_API_VERSION,
    kind: 'IPAddressPool',
    metadata: { name: p.name, namespace, labels: { ...MANAGED_BY_LABEL } },
    spec: { addresses: [...new Set(p.addresses)].sort(addressOrder), autoAssign: p.autoAssign },
  }));
  if (input.l2Advertisement && pools.length > 0) {
    objects.push({
      apiVersion: METALLB_API_VERSION,
      kind: 'L2Advertisement',
      metadata: { name: METALLB_L2_NAME, namespace, labels: { ...MANAGED_BY_LABEL } },
      // Listing the pools (rather than none = all) keeps pools the user adds by
      // hand out of k8s-ha's announcement.
      spec: { ipAddressPools: pools.map((p) => p.name) },
    });
  }
  return objects;
}

/** The same objects as a multi-document YAML file (for `kubectl apply -f`). */
export function renderMetallbObjects(input: MetallbInput): string {
  const docs = metallbObjects(input).map((o) => stringify(o, { sortMapEntries: true, lineWidth: 0, version: '1.1' }));
  return docs.map((d) => `---\n${d}`).join('');
}
