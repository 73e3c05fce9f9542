import { MASK, Secret } from '../util/secret.js';
import {
  RenderInputError,
  SecretRenderOptions,
  assertInt,
  assertIp,
  assertNoControlChars,
  assertPath,
  assertPort,
  byString,
  hostPort,
  managedHeader,
  secretText,
  sortedUnique,
} from './common.js';

/**
 * Where the drop-in goes. Debian's 50-server.cnf sets bind-address =
 * 127.0.0.1; files in mariadb.conf.d are read in name order and the last
 * value wins, so 60-k8s-ha.cnf overrides it (60-galera.cnf sorts before it).
 */
export const MARIADB_CNF_PATH = '/etc/mysql/mariadb.conf.d/60-k8s-ha.cnf';

export interface MariadbTls {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Refuse unencrypted TCP logins (`require_secure_transport`); local socket logins stay allowed. */
  require: boolean;
}

export interface MariadbCnfInput {
  /** The infrastructure host's address that the k3s servers connect to. */
  bindAddress: string;
  /** Default 3306 in MariaDB; stated in the file either way. */
  port: number;
  /** MariaDB default 151; size it for the servers (kine keeps up to 20 idle connections each, opens more under load). */
  maxConnections: number;
  /**
   * True when the server has `innodb_snapshot_isolation` (MariaDB 10.6.18+,
   * 10.11.8+, 11.4.2+, and on by default from 11.8). An older server refuses
   * to start on an unknown variable, so the line is written only when true.
   */
  hasSnapshotIsolationSetting: boolean;
  tls?: MariadbTls;
  /**
   * Addresses of the proxies (the load balancers) that send a PROXY protocol
   * header before the client's handshake (`proxy_protocol_networks`), so
   * MariaDB sees, logs and checks grants against the k3s server's address
   * and not the proxy's. Clients from these addresses that do not speak the
   * PROXY protocol are refused; local admin access uses the socket.
   * Default: none.
   */
  proxyProtocolNetworks?: string[];
  /** This server is a Galera data node. Default: a standalone server. */
  galera?: GaleraCnf;
}

export interface GaleraCnf {
  /** wsrep_cluster_name: the same on every node (and garbd's group). */
  clusterName: string;
  /** This node's name (wsrep_node_name). */
  nodeName: string;
  /** This node's address (wsrep_node_address): replication, IST and SST use it. */
  nodeAddress: string;
  /** Every member's address (the data nodes and the arbitrator), for wsrep_cluster_address. */
  members: string[];
  /** evs.suspect_timeout; inactive_timeout is twice it. */
  suspectTimeoutMs: number;
  /** Replication and state transfers over TLS with these files. Default: plain TCP. */
  tls?: GaleraTlsFiles;
}

/** A Galera member's TLS files (PEM; the key 0600, owned by the daemon's user). */
export interface GaleraTlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** Where every Galera member (data node or garbd) keeps its replication TLS files. */
export const GALERA_TLS_DIR = '/etc/k8s-ha/galera-tls';
export const GALERA_TLS_FILES: GaleraTlsFiles = { caFile: `${GALERA_TLS_DIR}/ca.pem`, certFile: `${GALERA_TLS_DIR}/member.pem`, keyFile: `${GALERA_TLS_DIR}/member-key.pem` };

/** Galera's shared library on Debian 12 (galera-4). */
export const GALERA_PROVIDER = '/usr/lib/galera/libgalera_smm.so';
/** Galera's group communication port (also garbd's). */
export const GALERA_PORT = 4567;

/** ISO 8601 duration as Galera reads it: 2000 -> PT2S, 500 -> PT0.5S. */
export function galeraDuration(ms: number): string {
  return `PT${ms / 1000}S`;
}

/**
 * wsrep_provider_options for fast, bounded failure detection. Galera's
 * defaults (suspect 5 s, inactive 15 s, keepalive 1 s) leave the survivors'
 * writes waiting at least 5 s for a frozen or cut-off node to be evicted.
 */
export function galeraProviderOptions(suspectTimeoutMs: number, tls?: GaleraTlsFiles): string {
  const keepalive = Math.min(1000, Math.max(200, Math.round(suspectTimeoutMs / 4)));
  if (tls !== undefined) {
    assertPath('tls.caFile', tls.caFile);
    assertPath('tls.certFile', tls.certFile);
    assertPath('tls.keyFile', tls.keyFile);
  }
  return [
    `evs.keepalive_period=${galeraDuration(keepalive)}`,
    `evs.inactive_check_period=${galeraDuration(Math.min(keepalive, 500))}`,
    `evs.suspect_timeout=${galeraDuration(suspectTimeoutMs)}`,
    `evs.inactive_timeout=${galeraDuration(suspectTimeoutMs * 2)}`,
    `evs.install_timeout=${galeraDuration(suspectTimeoutMs * 2)}`,
    // Group communication and IST over TLS; Galera checks the peer's chain
    // against ssl_ca. Every member must agree: a TLS member and a plain one
    // cannot talk (socket.dynamic, which accepts both, is left off).
    ...(tls !== undefined ? ['socket.ssl=YES', `socket.ssl_ca=${tls.caFile}`, `socket.ssl_cert=${tls.certFile}`, `socket.ssl_key=${tls.keyFile}`] : []),
  ].join('; ');
}

function validateCnf(input: MariadbCnfInput): void {
  assertIp('bindAddress', input.bindAddress);
  assertPort('port', input.port);
  assertInt('maxConnections', input.maxConnections, 10, 100_000);
  if (typeof input.hasSnapshotIsolationSetting !== 'boolean') throw new RenderInputError('hasSnapshotIsolationSetting', 'must be true or false');
  (input.proxyProtocolNetworks ?? []).forEach((a, i) => assertIp(`proxyProtocolNetworks[${i}]`, a));
  if (input.galera !== undefined) {
    const g = input.galera;
    if (typeof g.clusterName !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(g.clusterName)) throw new RenderInputError('galera.clusterName', `must be 1-64 letters, digits, '_' or '-', got ${JSON.stringify(g.clusterName)}`);
    if (typeof g.nodeName !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(g.nodeName)) throw new RenderInputError('galera.nodeName', `must be 1-64 letters, digits, '_' or '-', got ${JSON.stringify(g.nodeName)}`);
    assertIp('galera.nodeAddress', g.nodeAddress);
    if (!Array.isArray(g.members) || g.members.length < 2) throw new RenderInputError('galera.members', 'a Galera cluster needs at least two members');
    g.members.forEach((a, i) => assertIp(`galera.members[${i}]`, a));
    if (!g.members.includes(g.nodeAddress)) throw new RenderInputError('galera.members', `must include this node's address ${g.nodeAddress}`);
    assertInt('galera.suspectTimeoutMs', g.suspectTimeoutMs, 500, 60_000);
  }
  if (input.tls !== undefined) {
    assertPath('tls.caFile', input.tls.caFile);
    assertPath('tls.certFile', input.tls.certFile);
    assertPath('tls.keyFile', input.tls.keyFile);
  }
}

/**
 * The MariaDB drop-in for the k3s datastore. Check it with
 * `mariadbd --defaults-file=FILE --help --verbose >/dev/null` (fails on an
 * unknown variable) or `my_print_defaults --defaults-file=FILE mysqld`.
 */
export function renderMariadbCnf(input: MariadbCnfInput): string {
  validateCnf(input);
  const l: string[] = [];
  l.push(managedHeader('#', 'MariaDB settings for the k3s datastore (kine).'));
  l.push('[mysqld]');
  l.push("# Default 127.0.0.1 (Debian's 50-server.cnf): the k3s servers connect over the network.");
  l.push(`bind-address = ${input.bindAddress}`);
  l.push(`port = ${input.port}`);
  l.push('# Default 151. kine keeps a pool per server, and a restart briefly doubles it.');
  l.push(`max_connections = ${input.maxConnections}`);
  l.push('# Accounts are granted per server address; reverse DNS would only slow logins');
  l.push('# down and make them depend on a resolver.');
  l.push('skip-name-resolve');
  l.push('# kine uses the AUTO_INCREMENT id of its table as the etcd revision and expects');
  l.push('# +1 per insert; a gap stalls watches and writes fill rows. Galera or a');
  l.push('# replication setup changes these, so state the defaults.');
  l.push('auto_increment_increment = 1');
  l.push('auto_increment_offset = 1');
  if (input.hasSnapshotIsolationSetting) {
    l.push('# ON by default from MariaDB 11.8, where it breaks kine compaction with');
    l.push('# "Record has changed since last read".');
    l.push('innodb_snapshot_isolation = OFF');
  }
  const proxies = sortedUnique(input.proxyProtocolNetworks ?? []);
  if (proxies.length) {
    l.push('# The load balancers send a PROXY protocol header: grants limited to the k3s');
    l.push("# servers' addresses keep their meaning behind them. Other clients from these");
    l.push('# addresses are refused (local admin access uses the socket).');
    l.push(`proxy_protocol_networks = ${proxies.join(',')}`);
  }
  if (input.galera !== undefined) l.push(...galeraLines(input.galera));
  if (input.tls !== undefined) {
    l.push('# TLS for the k3s servers (they use datastore-cafile; the DSN carries no tls=).');
    l.push(`ssl_ca = ${input.tls.caFile}`);
    l.push(`ssl_cert = ${input.tls.certFile}`);
    l.push(`ssl_key = ${input.tls.keyFile}`);
    if (input.tls.require) {
      l.push('# Default OFF: refuse plain TCP logins. Unix-socket logins count as secure.');
      l.push('require_secure_transport = ON');
    }
  }
  // Last: a new group ends [mysqld].
  if (input.galera?.tls !== undefined) l.push(...sstTlsLines(input.galera.tls));
  return l.join('\n') + '\n';
}

function galeraLines(g: GaleraCnf): string[] {
  const members = sortedUnique(g.members).map((a) => hostPort(a, GALERA_PORT));
  return [
    '# Galera, single writer (FACTS "Datastore HA with kine"): the load balancer sends',
    '# every connection to one node; kine needs ROW events, interleaved auto-increment',
    '# locks, and Galera must not change auto_increment_increment/offset (its default',
    '# ON sets the increment to the cluster size, which leaves gaps in the revisions).',
    'binlog_format = ROW',
    'default_storage_engine = InnoDB',
    'innodb_autoinc_lock_mode = 2',
    'wsrep_on = ON',
    `wsrep_provider = ${GALERA_PROVIDER}`,
    `wsrep_cluster_name = ${g.clusterName}`,
    `wsrep_cluster_address = gcomm://${members.join(',')}`,
    `wsrep_node_name = ${g.nodeName}`,
    `wsrep_node_address = ${g.nodeAddress}`,
    'wsrep_auto_increment_control = OFF',
    '# A joiner gets a full copy from a donor that keeps serving (rsync would lock it).',
    'wsrep_sst_method = mariabackup',
    '# Detect a frozen or cut-off node in about suspect_timeout, not 5-15 s.',
    `wsrep_provider_options = "${galeraProviderOptions(g.suspectTimeoutMs, g.tls)}"`,
  ];
}

/**
 * The state transfer script's settings (wsrep_sst_mariabackup reads [sst]):
 * socat over TLS with the member's certificate, the peer's chain checked
 * against the CA (VERIFY_CA: its name is not, as with Galera's own link), and
 * no fallback to cleartext — with ssl-mode set and no usable certificate the
 * script refuses the transfer.
 */
function sstTlsLines(tls: GaleraTlsFiles): string[] {
  return [
    '',
    '[sst]',
    '# Full state transfers (mariabackup streamed by socat) over TLS as well.',
    'ssl-mode = VERIFY_CA',
    `ssl-ca = ${tls.caFile}`,
    `ssl-cert = ${tls.certFile}`,
    `ssl-key = ${tls.keyFile}`,
  ];
}

/**
 * A MariaDB string literal. Backslash and quote are escaped (and the control
 * characters MariaDB names), which is correct when NO_BACKSLASH_ESCAPES is
 * off: renderDatastoreSql sets the session's sql_mode first to make sure.
 */
export function sqlString(value: string): string {
  const escaped = value.replace(/[\\'"\0\n\r\x1a]/g, (c) => {
    switch (c) {
      case '\\':
        return '\\\\';
      case "'":
        return "\\'";
      case '"':
        return '\\"';
      case '\0':
        return '\\0';
      case '\n':
        return '\\n';
      case '\r':
        return '\\r';
      default:
        return '\\Z';
    }
  });
  return `'${escaped}'`;
}

// kine runs `create database if not exists <name>` with the name unquoted, so
// the name must be a plain identifier (and not a reserved word).
const DB_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
// `:` would end the user part of the DSN; MySQL caps user names at 32.
const USER_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/;

function assertDbName(field: string, v: string): void {
  if (typeof v !== 'string' || !DB_NAME.test(v)) throw new RenderInputError(field, `must be a plain identifier (letters, digits, '_'; not starting with a digit), got ${JSON.stringify(v)}`);
}
function assertUserName(field: string, v: string): void {
  if (typeof v !== 'string' || !USER_NAME.test(v)) throw new RenderInputError(field, `must be 1-32 letters, digits or '_', not starting with a digit, got ${JSON.stringify(v)}`);
}
function assertPassword(field: string, v: Secret): void {
  if (!(v instanceof Secret)) throw new RenderInputError(field, 'must be a Secret');
  const p = v.reveal();
  if (p.length === 0) throw new RenderInputError(field, 'must not be empty');
  assertNoControlChars(field, p);
}

export interface DatastoreSqlInput {
  /** Database kine uses (kine's own default is `kubernetes`). */
  database: string;
  user: string;
  password: Secret;
  /** Addresses of the k3s servers: one account `user`@address each. */
  serverAddresses: string[];
  /** Accounts must log in over TLS (`REQUIRE SSL`); otherwise `REQUIRE NONE`. */
  requireTls: boolean;
  /**
   * Hosts of the accounts named `user` that exist now (`SELECT Host FROM
   * mysql.user WHERE User = ...`). Those not in serverAddresses are dropped.
   * Default: none.
   */
  existingUserHosts?: string[];
}

function account(user: string, host: string): string {
  return `${sqlString(user)}@${sqlString(host)}`;
}

/**
 * SQL that converges the datastore's database and accounts; safe to run any
 * number of times. Feed it to `mariadb` on standard input, never as `-e`:
 * it holds the password.
 */
export function renderDatastoreSql(input: DatastoreSqlInput, opts?: SecretRenderOptions): string {
  assertDbName('database', input.database);
  assertUserName('user', input.user);
  assertPassword('password', input.password);
  if (!Array.isArray(input.serverAddresses) || input.serverAddresses.length === 0) throw new RenderInputError('serverAddresses', 'at least one server address is needed');
  input.serverAddresses.forEach((a, i) => assertIp(`serverAddresses[${i}]`, a));
  (input.existingUserHosts ?? []).forEach((h, i) => {
    if (typeof h !== 'string') throw new RenderInputError(`existingUserHosts[${i}]`, 'must be a string');
  });

  const hosts = sortedUnique(input.serverAddresses);
  const stale = sortedUnique(input.existingUserHosts ?? []).filter((h) => !hosts.includes(h));
  const pw = sqlString(secretText(input.password, opts));
  const require = input.requireTls ? 'REQUIRE SSL' : 'REQUIRE NONE';

  const l: string[] = [];
  l.push(managedHeader('--', 'Database and accounts for the k3s datastore; idempotent.'));
  l.push("-- MariaDB's default sql_mode (less NO_AUTO_CREATE_USER, which MySQL 8 rejects):");
  l.push('-- backslash escapes in the strings below must mean what they say even if the');
  l.push('-- server runs with NO_BACKSLASH_ESCAPES.');
  l.push("SET SESSION sql_mode = 'STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION';");
  l.push(`CREATE DATABASE IF NOT EXISTS \`${input.database}\`;`);
  for (const h of hosts) {
    const acct = account(input.user, h);
    l.push(`CREATE USER IF NOT EXISTS ${acct} IDENTIFIED BY ${pw} ${require};`);
    l.push('-- Converges an existing account to the current password and TLS rule.');
    l.push(`ALTER USER ${acct} IDENTIFIED BY ${pw} ${require};`);
    l.push(`GRANT ALL PRIVILEGES ON \`${input.database}\`.* TO ${acct};`);
  }
  for (const h of stale) {
    l.push('-- No longer a k3s server.');
    l.push(`DROP USER IF EXISTS ${account(input.user, h)};`);
  }
  return l.join('\n') + '\n';
}

/** SQL (no secrets) listing the hosts of a user's accounts, for existingUserHosts. */
export function renderUserHostsQuery(user: string): string {
  assertUserName('user', user);
  return `SELECT Host FROM mysql.user WHERE User = ${sqlString(user)} ORDER BY Host;\n`;
}

export interface DatastoreEndpointInput {
  user: string;
  password: Secret;
  /** The datastore's address as the k3s servers reach it. */
  host: string;
  /** Default 3306. */
  port?: number;
  database: string;
}

function endpointText(input: DatastoreEndpointInput, password: string): string {
  assertUserName('user', input.user);
  assertPassword('password', input.password);
  assertIp('host', input.host);
  if (input.port !== undefined) assertPort('port', input.port);
  assertDbName('database', input.database);
  // No percent-encoding: kine hands everything after `mysql://` to
  // go-sql-driver's ParseDSN, which splits at the first ':' and the last '@'
  // before the last '/', and does not decode user or password. An encoded
  // '%40' would reach MariaDB as the three characters "%40". The user name
  // cannot contain ':' and the database name no '/', so any password parses.
  // No `tls=` either: TLS comes from datastore-cafile.
  return `mysql://${input.user}:${password}@tcp(${hostPort(input.host, input.port ?? 3306)})/${input.database}`;
}

/** k3s `datastore-endpoint`: `mysql://USER:PASS@tcp(HOST:PORT)/DB`, as a Secret. */
export function datastoreEndpoint(input: DatastoreEndpointInput): Secret {
  return new Secret(endpointText(input, input.password.reveal()));
}

/** The endpoint with the password masked, for plans and logs. */
export function describeDatastoreEndpoint(input: DatastoreEndpointInput): string {
  return endpointText(input, MASK);
}

/** Hosts in `existing` that renderDatastoreSql would drop; for plan output. */
export function staleUserHosts(serverAddresses: readonly string[], existing: readonly string[]): string[] {
  const keep = new Set(serverAddresses);
  return sortedUnique([...existing]).filter((h) => !keep.has(h)).sort(byString);
}
