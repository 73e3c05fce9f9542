import { galeraNodes, hostByName, type Cluster } from '../spec/cluster.js';
import { Secret } from '../util/secret.js';
import { certificateProblem, createCa, issueCertificate } from '../util/x509.js';
import type { StateFile } from './state.js';

/**
 * The Galera replication TLS material (datastore.galera.tls): one CA for the
 * cluster and a key and certificate per member (each data node and garbd).
 * Made in the k8s-ha process and kept in the state file (the CA key and the
 * members' keys as secrets, the certificates beside them), so the CA key never
 * reaches a host and every run renders the same files: a plan shows a
 * certificate only when one is issued or renewed. What is made in a run is
 * written to the state file only when an apply starts (StateFile.issue).
 */

export interface GaleraMemberTls {
  /** PEM. */
  cert: string;
  /** PKCS#8 PEM. */
  key: Secret;
}

export interface GaleraTls {
  /** The CA certificate (PEM) every member trusts. */
  caCert: string;
  /** Host name -> its key and certificate. */
  members: Map<string, GaleraMemberTls>;
}

const CA_KEY = 'galeraCaKey';
const CA_CERT = 'galeraCa';
const memberKey = (host: string) => `galeraKey.${host}`;
const memberCert = (host: string) => `galera.${host}`;

/** The CA lasts 20 years; a member's certificate 5, renewed (re-issued) 30 days before it ends. */
const CA_DAYS = 20 * 365;
const MEMBER_DAYS = 5 * 365;
const RENEW_BEFORE_DAYS = 30;

/** The material for `c`, issuing what is missing, unfit or about to expire; undefined without Galera TLS. */
export function galeraTls(c: Cluster, state: StateFile, now: Date = new Date()): GaleraTls | undefined {
  const g = c.datastore.galera;
  if (!g?.tls) return undefined;
  let caKey = state.stored('secrets', CA_KEY);
  let caCert = state.stored('certificates', CA_CERT);
  if (caKey === undefined || caCert === undefined) {
    // A lost CA certificate is made again for the same key: the members' certificates stay valid.
    const ca = createCa({ cn: `k8s-ha Galera CA (${c.name})`, org: c.name, days: CA_DAYS, now }, caKey);
    if (caKey === undefined) state.issue('secrets', CA_KEY, ca.keyPem);
    state.issue('certificates', CA_CERT, ca.certPem);
    caKey = ca.keyPem;
    caCert = ca.certPem;
  }
  const members = new Map<string, GaleraMemberTls>();
  const hosts = [...galeraNodes(c), ...(g.arbitrator !== undefined ? [hostByName(c, g.arbitrator)!] : [])];
  for (const h of hosts) {
    let key = state.stored('secrets', memberKey(h.name));
    let cert = state.stored('certificates', memberCert(h.name));
    const unfit = key === undefined || cert === undefined || certificateProblem({ certPem: cert, keyPem: key, caPem: caCert, ip: h.address, renewBeforeDays: RENEW_BEFORE_DAYS, now }) !== null;
    if (unfit) {
      const issued = issueCertificate({ keyPem: caKey, certPem: caCert }, { cn: h.name, org: c.name, ips: [h.address], dns: [h.name], days: MEMBER_DAYS, now });
      state.issue('secrets', memberKey(h.name), issued.keyPem);
      state.issue('certificates', memberCert(h.name), issued.certPem);
      key = issued.keyPem;
      cert = issued.certPem;
    }
    members.set(h.name, { cert: cert!, key: new Secret(key!) });
  }
  return { caCert, members };
}
