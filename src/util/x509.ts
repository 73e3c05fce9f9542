import { X509Certificate, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';

/**
 * A small certificate authority in the k8s-ha process: an ECDSA P-256 CA and
 * leaf certificates signed by it, for the Galera nodes' replication TLS.
 * node:crypto makes keys and signatures and parses certificates but cannot
 * issue one, so the certificate's DER is built here (RFC 5280, the subset
 * needed: v3, one CN, validity, SAN, basic constraints, key usage, extended
 * key usage, key identifiers). The CA key lives in the state file only; it
 * never goes to a host (cluster/galera-tls.ts).
 */

export interface KeyAndCert {
  /** PKCS#8 PEM. */
  keyPem: string;
  certPem: string;
}

// --- DER ---------------------------------------------------------------

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const tlv = (tag: number, content: Buffer): Buffer => Buffer.concat([Buffer.from([tag]), len(content.length), content]);
const seq = (...parts: Buffer[]): Buffer => tlv(0x30, Buffer.concat(parts));
const set = (...parts: Buffer[]): Buffer => tlv(0x31, Buffer.concat(parts));
const explicit = (n: number, content: Buffer): Buffer => tlv(0xa0 + n, content);
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const bits = (b: Buffer, unused = 0): Buffer => tlv(0x03, Buffer.concat([Buffer.from([unused]), b]));
const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0x00]));
const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));

/** A positive INTEGER from big-endian bytes (a leading 0 when the high bit is set). */
function integer(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, v[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
}

function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [arcs[0]! * 40 + arcs[1]!];
  for (const a of arcs.slice(2)) {
    const chunk: number[] = [a & 0x7f];
    for (let v = Math.floor(a / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5). */
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'; // YYYYMMDDHHMMSSZ
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2), 'ascii')) : tlv(0x18, Buffer.from(iso, 'ascii'));
}

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  subjectKeyId: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyId: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

const extension = (id: string, critical: boolean, value: Buffer): Buffer => seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));

function name(cn: string, org: string): Buffer {
  return seq(set(seq(oid(OID.organization), utf8(org))), set(seq(oid(OID.commonName), utf8(cn))));
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  // IPv6: expand '::' and write 8 groups of 16 bits.
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = ip.includes('::') ? (tail ? tail.split(':') : []) : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function pem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

// --- Issuing -----------------------------------------------------------

export interface IssueOptions {
  /** Subject common name. */
  cn: string;
  /** Subject organisation (the cluster's name, so a certificate says where it belongs). */
  org: string;
  /** IP subject alternative names. */
  ips?: string[];
  /** DNS subject alternative names. */
  dns?: string[];
  /** Validity from now (a minute back for clock skew). */
  days: number;
  /** Default: now. */
  now?: Date;
}

function spki(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: 'spki', format: 'der' });
}

/** The key identifier: SHA-1 of the DER public key info (RFC 5280 4.2.1.2 allows any unique method). */
function keyId(key: KeyObject): Buffer {
  return createHash('sha1').update(spki(key)).digest();
}

function build(subject: IssueOptions, subjectKey: KeyObject, issuer: { dn: Buffer; key: KeyObject }, ca: boolean): string {
  const now = subject.now ?? new Date();
  const notBefore = new Date(now.getTime() - 60_000);
  const notAfter = new Date(now.getTime() + subject.days * 86_400_000);
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const san = [...(subject.ips ?? []).map((ip) => tlv(0x87, ipBytes(ip))), ...(subject.dns ?? []).map((d) => tlv(0x82, Buffer.from(d, 'ascii')))];
  const exts = [
    extension(OID.basicConstraints, true, ca ? seq(bool(true)) : seq()),
    // CA: keyCertSign + cRLSign (bits 5, 6); leaf: digitalSignature + keyAgreement (bits 0, 4).
    extension(OID.keyUsage, true, ca ? bits(Buffer.from([0x06]), 1) : bits(Buffer.from([0x88]), 3)),
    ...(ca ? [] : [extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth)))]),
    ...(san.length ? [extension(OID.subjectAltName, false, seq(...san))] : []),
    extension(OID.subjectKeyId, false, octets(keyId(subjectKey))),
    extension(OID.authorityKeyId, false, seq(tlv(0x80, keyId(issuer.key)))),
  ];
  const alg = seq(oid(OID.ecdsaWithSha256));
  const tbs = seq(explicit(0, integer(Buffer.from([2]))), integer(serial), alg, issuer.dn, seq(time(notBefore), time(notAfter)), name(subject.cn, subject.org), spki(subjectKey), explicit(3, seq(...exts)));
  const sig = sign('sha256', tbs, issuer.key); // DER ECDSA-Sig-Value
  return pem('CERTIFICATE', seq(tbs, alg, bits(sig)));
}

const newKey = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
const keyPem = (k: KeyObject): string => k.export({ type: 'pkcs8', format: 'pem' }).toString();

/** A self-signed CA: with a new key, or a new certificate for `existingKeyPem` (its certificate was lost). */
export function createCa(opts: IssueOptions, existingKeyPem?: string): KeyAndCert {
  const key = existingKeyPem !== undefined ? createPrivateKey(existingKeyPem) : newKey();
  return { keyPem: keyPem(key), certPem: build(opts, key, { dn: name(opts.cn, opts.org), key }, true) };
}

/** A new key and a leaf certificate for it (server and client use), signed by `ca`. */
export function issueCertificate(ca: KeyAndCert, opts: IssueOptions): KeyAndCert {
  const caKey = createPrivateKey(ca.keyPem);
  const caCert = new X509Certificate(ca.certPem);
  const key = newKey();
  // The issuer's name exactly as it is encoded in the CA certificate.
  return { keyPem: keyPem(key), certPem: build(opts, key, { dn: subjectDer(caCert), key: caKey }, false) };
}

/** The header length and content length of the DER element at `at`. */
function header(b: Buffer, at: number): { hdr: number; n: number } {
  const first = b[at + 1]!;
  if (!(first & 0x80)) return { hdr: 2, n: first };
  let n = 0;
  for (let j = 0; j < (first & 0x7f); j++) n = n * 256 + b[at + 2 + j]!;
  return { hdr: 2 + (first & 0x7f), n };
}

/** The elements inside a constructed DER element (each with its own header). */
function children(el: Buffer): Buffer[] {
  const { hdr, n } = header(el, 0);
  const out: Buffer[] = [];
  for (let i = hdr; i < hdr + n; ) {
    const h = header(el, i);
    out.push(el.subarray(i, i + h.hdr + h.n));
    i += h.hdr + h.n;
  }
  return out;
}

/** The subject Name's DER from a certificate: TBSCertificate's 6th element (version, serial, signature, issuer, validity, subject). */
function subjectDer(cert: X509Certificate): Buffer {
  return children(children(cert.raw)[0]!)[5]!;
}

/**
 * Why `certPem` (with `keyPem`) is not fit to use for `ip` under `caPem`, or
 * null when it is: it must chain to the CA, name the address, hold the key's
 * public half, and be valid for longer than `renewBeforeDays`.
 */
export function certificateProblem(input: { certPem: string; keyPem: string; caPem: string; ip: string; renewBeforeDays: number; now?: Date }): string | null {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(input.certPem);
  } catch {
    return 'not a certificate';
  }
  try {
    if (!cert.verify(new X509Certificate(input.caPem).publicKey)) return 'not signed by the CA';
  } catch {
    return 'the CA certificate cannot be read';
  }
  if (cert.checkIP(input.ip) === undefined) return `does not name ${input.ip}`;
  try {
    if (!cert.checkPrivateKey(createPrivateKey(input.keyPem))) return 'does not match its key';
  } catch {
    return 'the key cannot be read';
  }
  const now = (input.now ?? new Date()).getTime();
  if (new Date(cert.validTo).getTime() - now < input.renewBeforeDays * 86_400_000) return `expires ${new Date(cert.validTo).toISOString().slice(0, 10)}`;
  return null;
}

/** The base64 lines of every private key in a PEM text: masked one by one in a plan's line diff. */
export function privateKeyLines(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/-----BEGIN [A-Z ]*PRIVATE KEY-----\n([\s\S]*?)-----END [A-Z ]*PRIVATE KEY-----/g)) {
    out.push(...m[1]!.split('\n').map((l) => l.trim()).filter(Boolean));
  }
  return out;
}
