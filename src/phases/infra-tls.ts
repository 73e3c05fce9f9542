import { sh, type Command } from '../transport/quote.js';

/**
 * The datastore's TLS material, made by openssl ON the datastore host so the
 * private keys never travel (node:crypto cannot issue X.509 certificates).
 * The CA certificate is public: the k3s phase reads it from here and gives it
 * to the servers as `datastore-cafile`.
 */
export const DATASTORE_TLS_DIR = '/etc/mysql/k8s-ha-tls';
export const DATASTORE_TLS = {
  caFile: `${DATASTORE_TLS_DIR}/ca.pem`,
  caKeyFile: `${DATASTORE_TLS_DIR}/ca-key.pem`,
  certFile: `${DATASTORE_TLS_DIR}/server.pem`,
  keyFile: `${DATASTORE_TLS_DIR}/server-key.pem`,
} as const;

/** Renew the server certificate this long before it expires. */
const RENEW_BEFORE_S = 30 * 24 * 3600;

/**
 * Prints `ca=yes|no`, `cert=ok|missing|invalid`: the CA exists, and the
 * server certificate chains to it, names `address` and is not about to expire.
 */
export function tlsStatus(address: string): Command {
  const { caFile, caKeyFile, certFile, keyFile } = DATASTORE_TLS;
  return sh`if [ -s ${caFile} ] && [ -s ${caKeyFile} ]; then echo ca=yes; else echo ca=no; fi; if [ ! -s ${certFile} ] || [ ! -s ${keyFile} ]; then echo cert=missing; elif openssl verify -CAfile ${caFile} ${certFile} >/dev/null 2>&1 && openssl x509 -in ${certFile} -noout -checkend ${RENEW_BEFORE_S} >/dev/null 2>&1 && openssl x509 -in ${certFile} -noout -checkip ${address} 2>/dev/null | grep -q 'does match'; then echo cert=ok; else echo cert=invalid; fi`;
}

export interface TlsStatus {
  ca: boolean;
  cert: 'ok' | 'missing' | 'invalid';
}

export function parseTlsStatus(stdout: string): TlsStatus {
  const ca = /^ca=yes$/m.test(stdout);
  const m = /^cert=(ok|missing|invalid)$/m.exec(stdout);
  return { ca, cert: (m?.[1] as TlsStatus['cert'] | undefined) ?? 'missing' };
}

/**
 * Create the CA when missing (an existing CA is kept: servers already trust
 * it), then issue a server certificate for `address` (IP SAN: kine's Go TLS
 * client checks it). Keys are 0600: the CA key root's, the server key
 * mysql's, which MariaDB reads at start.
 */
export function issueTlsCommand(address: string, clusterName: string): Command {
  const { caFile, caKeyFile, certFile, keyFile } = DATASTORE_TLS;
  const dir = DATASTORE_TLS_DIR;
  const csr = `${dir}/server.csr`;
  const ext = `${dir}/server.ext`;
  const newKey = (out: string) => sh`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ${out}`;
  return sh`set -e; umask 077; mkdir -p ${dir}; chmod 755 ${dir}
if [ ! -s ${caKeyFile} ] || [ ! -s ${caFile} ]; then ${newKey(caKeyFile)}; openssl req -x509 -new -key ${caKeyFile} -subj ${`/CN=k8s-ha datastore CA (${clusterName})`} -days 3650 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out ${caFile}; fi
${newKey(keyFile)}
openssl req -new -key ${keyFile} -subj ${`/CN=${address}`} -out ${csr}
printf '%s\\n' ${`subjectAltName=IP:${address}`} extendedKeyUsage=serverAuth basicConstraints=CA:FALSE > ${ext}
openssl x509 -req -in ${csr} -CA ${caFile} -CAkey ${caKeyFile} -set_serial 0x$(openssl rand -hex 16) -days 825 -extfile ${ext} -out ${certFile}
rm -f ${csr} ${ext}
chown mysql:mysql ${keyFile}; chmod 600 ${keyFile} ${caKeyFile}; chmod 644 ${caFile} ${certFile}`;
}
