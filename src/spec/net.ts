/**
 * IPv4 arithmetic for the cross-field checks: addresses, CIDRs and
 * `a.b.c.d-a.b.c.e` ranges, all reduced to inclusive [first, last] integer
 * intervals so that "overlaps" and "contains" are two comparisons.
 */

/** An inclusive interval of IPv4 addresses as unsigned 32-bit integers. */
export interface Ipv4Range {
  first: number;
  last: number;
}

const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
/** Dotted-quad IPv4, no leading zeros (they read as octal to some tools). */
export const IPV4_PATTERN = `${OCTET}(?:\\.${OCTET}){3}`;
/**
 * An RFC 1123 host name whose last label starts with a letter. The rule on the
 * last label is stricter than the RFC on purpose: it is what makes a mistyped
 * address such as "192.168.0.1x" an error instead of a host name.
 */
export const HOSTNAME_PATTERN =
  '(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
export const CIDR_PATTERN = `${IPV4_PATTERN}/(?:3[0-2]|[12]?[0-9])`;
export const RANGE_PATTERN = `${IPV4_PATTERN}-${IPV4_PATTERN}`;

const ipv4Re = new RegExp(`^${IPV4_PATTERN}$`);

export function isIpv4(text: string): boolean {
  return ipv4Re.test(text);
}

/** The address as an unsigned integer, or undefined when it is not IPv4. */
export function ipv4ToInt(text: string): number | undefined {
  if (!isIpv4(text)) return undefined;
  return text.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function intToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** A CIDR such as 10.42.0.0/16 as a range; undefined when malformed. */
export function parseCidr(text: string): Ipv4Range | undefined {
  const [addr, bits, ...rest] = text.split('/');
  if (addr === undefined || bits === undefined || rest.length || !/^\d{1,2}$/.test(bits)) return undefined;
  const base = ipv4ToInt(addr);
  const prefix = Number(bits);
  if (base === undefined || prefix > 32) return undefined;
  const size = 2 ** (32 - prefix);
  const first = Math.floor(base / size) * size;
  return { first, last: first + size - 1 };
}

/** True when the CIDR's address has host bits set (10.42.1.0/16). */
export function cidrHasHostBits(text: string): boolean {
  const r = parseCidr(text);
  const addr = ipv4ToInt(text.split('/')[0] ?? '');
  return r !== undefined && addr !== undefined && addr !== r.first;
}

/**
 * A MetalLB pool entry: either a CIDR or a `first-last` range. A reversed
 * range parses (first > last) so the check can say "reversed" rather than
 * "invalid".
 */
export function parsePoolEntry(text: string): Ipv4Range | undefined {
  if (text.includes('/')) return parseCidr(text);
  const parts = text.split('-');
  if (parts.length !== 2) return undefined;
  const first = ipv4ToInt(parts[0]!.trim());
  const last = ipv4ToInt(parts[1]!.trim());
  if (first === undefined || last === undefined) return undefined;
  return { first, last };
}

export function rangesOverlap(a: Ipv4Range, b: Ipv4Range): boolean {
  return a.first <= b.last && b.first <= a.last;
}

export function rangeContains(r: Ipv4Range, addr: number): boolean {
  return r.first <= addr && addr <= r.last;
}

export function rangeSize(r: Ipv4Range): number {
  return r.last - r.first + 1;
}
