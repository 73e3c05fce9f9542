/**
 * The one schema of the cluster file. It gives the TypeScript type
 * (`ClusterFile`), the JSON Schema printed by `k8s-ha schema` and used by
 * editors, and the reference in docs/cluster-file.md (generated from the
 * descriptions and defaults below, so write them for users).
 *
 * Two keywords of our own ride along on some nodes and are stripped from the
 * published JSON Schema: `errorMessage` (what is wrong, said after the
 * offending value) and `errorHint` (how to fix it). They turn TypeBox's
 * generic errors into one readable sentence per problem.
 */
import { Type, type Static, type TLiteral, type TSchema, type TUnion } from '@sinclair/typebox';
import { CIDR_PATTERN, HOSTNAME_PATTERN, IPV4_PATTERN, RANGE_PATTERN } from './net.js';
import { DURATION_PATTERN } from './duration.js';

export const API_VERSION = 'k8s-ha/v1';
export const ROLES = ['loadbalancer', 'datastore', 'server', 'agent'] as const;
export type Role = (typeof ROLES)[number];
export const K3S_COMPONENTS = ['coredns', 'servicelb', 'traefik', 'local-storage', 'metrics-server', 'runtimes'] as const;
export const ENV_REF_PATTERN = '^\\$\\{env:[A-Za-z_][A-Za-z0-9_]*\\}$';
export const K3S_VERSION_PATTERN = '^v[0-9]+\\.[0-9]+\\.[0-9]+\\+k3s[0-9]+$';
export const METALLB_VERSION_PATTERN = '^v0\\.[0-9]+\\.[0-9]+$';
export const TAINT_PATTERN = '^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?(=[-A-Za-z0-9_.]*)?:(NoSchedule|PreferNoSchedule|NoExecute)$';

const anchored = (p: string): string => `^(?:${p})$`;

// --- small builders: every field gets a description, and a default where one exists

type Literals<T extends readonly string[]> = { -readonly [K in keyof T]: TLiteral<T[K]> };

/** A union of string literals; its TypeScript type keeps the literals. */
function literals<const T extends readonly string[]>(values: T, description: string, def?: T[number]): TUnion<Literals<T>> {
  const variants = values.map((v) => Type.Literal(v)) as unknown as Literals<T>;
  return Type.Union(variants, { description, ...(def !== undefined ? { default: def } : {}) }) as TUnion<Literals<T>>;
}

const dnsLabel = (description: string) =>
  Type.String({
    description,
    pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$',
    errorMessage: 'is not a DNS label',
    errorHint: 'use lower-case letters, digits and "-", at most 63 characters, starting and ending with a letter or digit',
  });

const address = (description: string) =>
  Type.String({
    description,
    pattern: anchored(`${IPV4_PATTERN}|${HOSTNAME_PATTERN}`),
    errorMessage: 'is not an IPv4 address or host name',
    errorHint: 'write a dotted IPv4 address such as 192.168.0.10, or a resolvable host name',
  });

const ipv4 = (description: string, def?: string) =>
  Type.String({
    description,
    pattern: anchored(IPV4_PATTERN),
    errorMessage: 'is not an IPv4 address',
    errorHint: 'write a dotted IPv4 address such as 192.168.0.10',
    ...(def !== undefined ? { default: def } : {}),
  });

const cidr = (description: string, def: string) =>
  Type.String({
    description,
    default: def,
    pattern: anchored(CIDR_PATTERN),
    errorMessage: 'is not an IPv4 CIDR',
    errorHint: 'write a network such as 10.42.0.0/16',
  });

const duration = (description: string, def: string) =>
  Type.String({
    description,
    default: def,
    pattern: DURATION_PATTERN,
    errorMessage: 'is not a duration',
    errorHint: 'write a number with a unit: ms, s, m or h (for example 500ms, 3s, 1h, 1m30s)',
  });

const port = (description: string, def?: number) =>
  Type.Integer({ description, minimum: 1, maximum: 65535, ...(def !== undefined ? { default: def } : {}) });

const fileRef = Type.Object(
  { file: Type.String({ description: 'Path to a file holding the value (relative to the cluster file). Its content is read at run time; one trailing newline is ignored.', minLength: 1 }) },
  { additionalProperties: false, description: 'Read the value from a file.' },
);

/** A generated, environment-provided or file-provided secret; no literal. */
const tokenRef = (description: string, def?: string) =>
  Type.Union(
    [
      Type.String({ pattern: `^generate$|${ENV_REF_PATTERN}`, description: '"generate" or "${env:NAME}"' }),
      fileRef,
    ],
    {
      description,
      ...(def !== undefined ? { default: def } : {}),
      errorMessage: 'is not "generate", "${env:NAME}" or {file: PATH}',
      errorHint: 'use "generate" (kept in the state file), "${env:NAME}" to read an environment variable, or {file: PATH}; a literal value does not belong in the cluster file',
    },
  );

/** SSH fields; the per-host override carries no defaults so that it inherits. */
function sshFields(withDefaults: boolean) {
  const def = <T>(v: T) => (withDefaults ? { default: v } : {});
  return {
    user: Type.String({ description: 'SSH user. When it is not root, commands run through sudo.', minLength: 1, ...def('root') }),
    port: Type.Integer({ description: 'SSH port.', minimum: 1, maximum: 65535, ...def(22) }),
    keyFile: Type.Optional(
      Type.String({ description: 'Private key file (~ is expanded). Without it, the SSH agent is used.', minLength: 1 }),
    ),
    agent: Type.Optional(
      Type.Boolean({ description: 'Authenticate through the SSH agent ($SSH_AUTH_SOCK). Default: true when no keyFile is given.' }),
    ),
    connectTimeout: Type.String({
      description: 'How long to wait for an SSH connection before giving up on a host.',
      pattern: DURATION_PATTERN,
      errorMessage: 'is not a duration',
      errorHint: 'write a number with a unit: ms, s, m or h (for example 10s)',
      ...def('10s'),
    }),
  };
}

export const SshSchema = Type.Object(sshFields(true), {
  additionalProperties: false,
  default: {},
  description: 'SSH settings for every host; a host may override any of them.',
});

const SshOverrideSchema = Type.Partial(Type.Object(sshFields(false)), {
  additionalProperties: false,
  description: 'Per-host SSH settings; each one defaults to the top-level ssh value.',
});

export const HostSchema = Type.Object(
  {
    name: dnsLabel('Host name, unique in the cluster; also the Kubernetes node name.'),
    address: address('Address k8s-ha connects to and the other hosts reach this host on.'),
    roles: Type.Array(literals(ROLES, 'A role: loadbalancer (the API load balancer), datastore (MariaDB), server (k3s server), agent (k3s agent).'), {
      description: 'What runs on this host. One host may hold several roles (for example loadbalancer and datastore).',
      minItems: 1,
      uniqueItems: true,
      errorHint: 'give at least one of loadbalancer, datastore, server, agent, each once',
    }),
    ssh: Type.Optional(SshOverrideSchema),
    sudo: Type.Optional(
      Type.Object(
        {
          enabled: Type.Optional(Type.Boolean({ description: 'Run commands through sudo. Default: true when the SSH user is not root.' })),
          passwordEnv: Type.Optional(
            Type.String({
              description: 'Name of the environment variable holding the sudo password, read at run time. Without it, sudo must not ask for a password.',
              pattern: '^[A-Za-z_][A-Za-z0-9_]*$',
              errorMessage: 'is not an environment variable name',
              errorHint: 'give the variable\'s name (for example SUDO_PASSWORD), not the password itself',
            }),
          ),
        },
        { additionalProperties: false, description: 'How to become root on this host.' },
      ),
    ),
    labels: Type.Optional(
      Type.Record(Type.String(), Type.String(), { description: 'Kubernetes node labels, set when the node registers.', default: {} }),
    ),
    taints: Type.Optional(
      Type.Array(
        Type.String({
          pattern: TAINT_PATTERN,
          errorMessage: 'is not a taint',
          errorHint: 'write KEY[=VALUE]:EFFECT with EFFECT one of NoSchedule, PreferNoSchedule, NoExecute',
          description: 'A taint KEY[=VALUE]:EFFECT.',
        }),
        { description: 'Kubernetes node taints, set when the node registers (servers also get k3s.serverTaints).', default: [] },
      ),
    ),
    nodeIP: Type.Optional(ipv4('Address the k3s node advertises (node-ip), when it differs from address.')),
    remove: Type.Optional(
      Type.Boolean({
        description:
          'Take this k3s node (server or agent) out of the cluster on the next apply, as `k8s-ha node remove NAME` does: out of the load balancer (a server: before its k3s stops), cordoned, drained, its Node object and node-password secret deleted, k3s uninstalled, its datastore account dropped, forgotten in the state file. A host that cannot be reached is removed only with --force. Delete the entry once it is done.',
        default: false,
      }),
    ),
  },
  { additionalProperties: false, description: 'A machine of the cluster.' },
);

export const VirtualIpSchema = Type.Object(
  {
    address: ipv4('The virtual IP: the API address clients use. keepalived moves it between the two load-balancer hosts.'),
    interface: Type.String({ description: 'Network interface on the load-balancer hosts that carries the virtual IP (for example eth0).', minLength: 1 }),
    routerId: Type.Integer({
      description: 'VRRP virtual_router_id, unique on the network segment.',
      minimum: 1,
      maximum: 255,
      default: 51,
      errorHint: 'pick a number from 1 to 255 not used by another VRRP router on this segment',
    }),
    priority: Type.Integer({
      description: 'Priority of the first load-balancer host; the second gets 50 less.',
      minimum: 51,
      maximum: 254,
      default: 150,
    }),
    advertInterval: duration(
      'VRRP advertisement interval; failover takes about three of them (measured on the lab: 1.8 s at 500ms, 3.4 s at 1s). Below 1s keepalived speaks VRRP v3, which has no password, so authPass is used only with whole seconds.',
      '500ms',
    ),
    unicast: Type.Boolean({ description: 'Send VRRP to the peer\'s address instead of multicast (for networks that filter multicast).', default: false }),
    preempt: Type.Boolean({
      description:
        'Move the virtual IP back to the first load-balancer host when it returns (keepalived preempts). false keeps it where it is (nopreempt): one move per failure instead of two, each move a short API and datastore blip; the first host then takes it back only when the other fails.',
      default: true,
    }),
    authPass: Type.Optional(
      Type.String({ description: 'VRRP password; keepalived uses only the first 8 characters. "${env:NAME}" reads it from the environment.', minLength: 1 }),
    ),
  },
  { additionalProperties: false, description: 'A virtual IP shared by two load-balancer hosts (keepalived, VRRP).' },
);

export const LoadBalancerSchema = Type.Object(
  {
    kind: literals(['nginx', 'haproxy'] as const, 'nginx (stream proxy; active checks by k8s-ha-lbcheck, see nginx.activeCheck) or haproxy (its own active TLS health check on each server).', 'nginx'),
    port: port('Port the API load balancer listens on; clients and agents use it.', 6443),
    deploy: literals(['package', 'docker'] as const, 'Install the load balancer from the distribution\'s packages or run it as a container.', 'package'),
    timeouts: Type.Object(
      {
        connect: duration(
          'Connect timeout to a server; far below nginx\'s 60 s so a cut-off server costs one short wait before the next one is tried. A LAN connect takes milliseconds; 1 s also covers one lost SYN.',
          '1s',
        ),
        idle: duration('Idle timeout of a client connection; long so kubectl exec, port-forward and logs -f stay open.', '1h'),
      },
      { additionalProperties: false, default: {}, description: 'Load balancer timeouts.' },
    ),
    nginx: Type.Object(
      {
        maxFails: Type.Integer({ description: 'nginx max_fails: failed connections before a server is skipped.', minimum: 0, default: 1 }),
        failTimeout: duration('nginx fail_timeout: how long a failed server is skipped.', '10s'),
        activeCheck: Type.Boolean({
          description:
            'Run k8s-ha-lbcheck beside nginx: a TLS check of healthCheck.path on each server every healthCheck.interval that marks failing servers down and reloads nginx. nginx open source only notices failed connects, so without it a frozen or hung server keeps getting about half the new connections for as long as it hangs. Needs curl (installed); package deploy only. With a Galera datastore it also routes the one writer (it reads each data node\'s Galera check), so it cannot be turned off then.',
          default: true,
        }),
      },
      { additionalProperties: false, default: {}, description: 'nginx passive health checks (used when kind is nginx).' },
    ),
    healthCheck: Type.Object(
      {
        path: Type.String({ description: 'HTTPS path checked on each server. /ping answers without authentication.', pattern: '^/', default: '/ping' }),
        interval: duration('Time between checks.', '500ms'),
        fall: Type.Integer({ description: 'Failed checks before a server is taken out.', minimum: 1, default: 2 }),
        rise: Type.Integer({ description: 'Passed checks before a server is put back.', minimum: 1, default: 2 }),
      },
      { additionalProperties: false, default: {}, description: 'Active HTTPS health check of each server: HAProxy\'s own check, or k8s-ha-lbcheck beside nginx (nginx.activeCheck).' },
    ),
    virtualIP: Type.Optional(VirtualIpSchema),
  },
  { additionalProperties: false, default: {}, description: 'The TCP load balancer in front of the k3s servers\' API (6443).' },
);

export const DatastoreSchema = Type.Object(
  {
    kind: literals(['mariadb'] as const, 'The datastore engine.', 'mariadb'),
    port: port('MariaDB port.', 3306),
    database: Type.String({ description: 'Database k3s uses.', pattern: '^[A-Za-z0-9_]{1,64}$', default: 'k3s' }),
    user: Type.String({ description: 'Database user k3s connects as (allowed only from the server hosts).', pattern: '^[A-Za-z0-9_]{1,32}$', default: 'k3s' }),
    password: Type.Union(
      [Type.String({ minLength: 1, description: '"generate", "${env:NAME}" or a literal password (discouraged).' }), fileRef],
      {
        description: 'Password of the database user: "generate" (kept in the state file), "${env:NAME}", {file: PATH}, or a literal (warned about).',
        default: 'generate',
        errorMessage: 'is not "generate", "${env:NAME}", {file: PATH} or a password',
        errorHint: 'use "generate" unless the database already exists',
      },
    ),
    tls: Type.Object(
      { enabled: Type.Boolean({ description: 'Encrypt connections from the servers to MariaDB with certificates k8s-ha issues.', default: false }) },
      { additionalProperties: false, default: {}, description: 'TLS between k3s and MariaDB.' },
    ),
    maxConnections: Type.Optional(
      Type.Integer({ description: 'MariaDB max_connections. Default: max(151, 100 per server + 50).', minimum: 10 }),
    ),
    backup: Type.Optional(
      Type.Object(
        {
          schedule: Type.String({
            description: 'When to back up: a systemd calendar expression (OnCalendar=), e.g. hourly, daily, "*-*-* 03:00:00".',
            default: 'daily',
            pattern: '^[A-Za-z0-9*,./:~ -]{1,100}$',
            errorMessage: 'is not a systemd calendar expression',
            errorHint: 'use hourly, daily, weekly, or a time like "*-*-* 03:00:00" (man systemd.time)',
          }),
          keep: Type.Integer({ description: 'How many backups to keep on the datastore host; older ones are removed after each new one.', minimum: 1, maximum: 1000, default: 7 }),
          dir: Type.String({
            description: 'Folder on the datastore host for the archives (mode 0700; each archive 0600).',
            default: '/var/backups/k8s-ha',
            pattern: '^/[A-Za-z0-9._/-]*$',
            errorMessage: 'is not an absolute path',
            errorHint: 'give an absolute path of letters, digits, . _ - and /',
          }),
          recipients: Type.Optional(
            Type.Array(
              Type.String({
                description: 'An age recipient (public key, age1...).',
                pattern: '^age1[02-9ac-hj-np-z]{58}$',
                errorMessage: 'is not an age recipient',
                errorHint: 'give the public key of an age identity: `age-keygen -y KEYFILE` prints it (age1 followed by 58 letters and digits)',
              }),
              {
                minItems: 1,
                description:
                  'Encrypt every scheduled archive to these age recipients (public keys) on the datastore host, so a stolen datastore disk or backup folder does not hold the token (the secrets part is encrypted by k8s-ha before it reaches the host; the dump is encrypted as it is written). No private key is ever on the host: `backup --check` and `restore` open the archives with --identity. Default: not encrypted (mode 0600 in a 0700 folder).',
              },
            ),
          ),
          staleAfter: Type.Optional(
            Type.String({
              description: "Age after which status reports the newest backup as stale (degraded). Default: twice the schedule's period (hourly, daily, weekly...), else 48h.",
              pattern: DURATION_PATTERN,
              errorMessage: 'is not a duration',
              errorHint: 'write a number with a unit: ms, s, m or h (for example 2h, 48h)',
            }),
          ),
        },
        { additionalProperties: false, description: 'Scheduled backups on the datastore host (the Galera writer): a systemd timer runs the same backup as `k8s-ha backup`, the token included.' },
      ),
    ),
    galera: Type.Optional(
      Type.Object(
        {
          enabled: Type.Boolean({ description: 'Replicate the datastore with Galera across the datastore hosts (two or more), with exactly one of them written at a time.', default: false }),
          mode: literals(['single-writer', 'multi-writer'] as const, 'single-writer: the load balancer sends every connection to one node, the others stand by. multi-writer is refused: k3s does not support it.', 'single-writer'),
          writer: Type.Optional(dnsLabel('The datastore host the load balancer prefers as the writer (the others are its backups). Default: the first datastore host.')),
          arbitrator: Type.Optional(
            dnsLabel('A host (not a datastore host) that runs garbd, the Galera arbitrator: a vote without data, so two data nodes keep a quorum when one of them dies.'),
          ),
          nodePort: port('Port each data node\'s MariaDB listens on. The k3s servers never use it: they connect to the load balancer (or its virtual IP) on datastore.port, which forwards to the writer.', 3307),
          checkPort: port('Port of the Galera health check on each data node (HTTP 200 when the node is Synced in the primary component, else 503); the load balancer reads it.', 9200),
          suspectTimeout: duration(
            'How long a silent node goes before the others suspect it and evict it (evs.suspect_timeout; Galera default 5s). Writes on the survivors wait this long when a node freezes or is cut off; too low and a loaded node is evicted by mistake.',
            '2s',
          ),
          writerHold: duration(
            "After the writer is lost, how long the load balancer refuses every new datastore connection before the next node takes writes. kine's create, when its INSERT fails, reads the key back and reports success if no row is found; right after a switch that read would reach the new writer, which never saw the INSERT. Refused, kine refuses the create and the client retries. Longer than kine's read-back, shorter than the write gap you accept; 0s turns it off.",
            '1500ms',
          ),
          peerPort: port('TCP port the load balancers\' HAProxy peers use to share the current writer (and to keep it across a reload). HAProxy only: behind nginx, k8s-ha-lbcheck keeps the writer in a file and follows the node holding kine\'s sessions.', 10000),
          tls: Type.Object(
            {
              enabled: Type.Boolean({
                description:
                  "Encrypt replication between the data nodes and garbd (Galera's group communication and incremental transfers, socket.ssl) and full state transfers (mariabackup over socat, [sst] ssl-mode=VERIFY_CA), with certificates from a CA k8s-ha makes and keeps in the state file (its key never goes to a host). Every member must agree: a TLS node and a plain one cannot talk, so turning it on or off while data nodes run is refused with the way to do it (README, \"Galera datastore\").",
                default: false,
              }),
            },
            { additionalProperties: false, default: {}, description: 'TLS for Galera replication and state transfers.' },
          ),
          experimental: Type.Boolean({
            description: 'Galera under kine rests on the load balancers\' hold-downs, not on kine (see the README, "Galera datastore"); preflight refuses it unless this is true.',
            default: false,
          }),
        },
        { additionalProperties: false, description: 'Galera replication (single writer only).' },
      ),
    ),
  },
  { additionalProperties: false, default: {}, description: 'The external MariaDB datastore the k3s servers share.' },
);

const flagValue = Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Array(Type.String())], {
  description: 'Flag value; a list repeats the flag.',
  errorMessage: 'is not a string, number, boolean or list of strings',
  errorHint: 'write the flag\'s value as in k3s\'s config.yaml',
});

export const K3sSchema = Type.Object(
  {
    version: Type.Optional(
      Type.String({
        description: 'Pinned k3s release, for example v1.37.2+k3s1. Recommended: upgrades then happen only when you change it.',
        pattern: K3S_VERSION_PATTERN,
        errorMessage: 'is not a k3s version',
        errorHint: 'write the full release name, for example v1.37.2+k3s1',
      }),
    ),
    channel: Type.Optional(
      Type.String({
        description: 'Release channel used when no version is pinned: stable, latest, testing or vX.Y.',
        pattern: '^(stable|latest|testing|v[0-9]+\\.[0-9]+)$',
        errorMessage: 'is not a k3s channel',
        errorHint: 'use stable, latest, testing or a minor version such as v1.31',
      }),
    ),
    token: tokenRef('Cluster token shared by the servers. It encrypts the bootstrap data in the datastore: never change it on an existing cluster.', 'generate'),
    agentToken: Type.Optional(tokenRef('Separate token for agents (agent-token). Default: agents use the cluster token.')),
    clusterCidr: cidr('Pod network (cluster-cidr).', '10.42.0.0/16'),
    serviceCidr: cidr('Service network (service-cidr).', '10.43.0.0/16'),
    clusterDns: ipv4('Cluster IP of CoreDNS (cluster-dns); inside serviceCidr.', '10.43.0.10'),
    clusterDomain: Type.String({ description: 'Cluster DNS domain (cluster-domain).', pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$', default: 'cluster.local' }),
    disable: Type.Array(literals(K3S_COMPONENTS, 'A k3s packaged component.'), {
      description: 'Packaged components not to deploy (disable). servicelb must be disabled when MetalLB is used.',
      uniqueItems: true,
      default: ['servicelb', 'traefik'],
    }),
    serverTaints: Type.Array(
      Type.String({
        pattern: TAINT_PATTERN,
        errorMessage: 'is not a taint',
        errorHint: 'write KEY[=VALUE]:EFFECT, for example CriticalAddonsOnly=true:NoExecute',
        description: 'A taint KEY[=VALUE]:EFFECT.',
      }),
      { description: 'Taints on every server (node-taint); CriticalAddonsOnly=true:NoExecute keeps workloads off the servers.', default: [] },
    ),
    tlsSan: Type.Array(address('An extra name or address.'), {
      description: 'Extra names on the API certificate (tls-san). The load balancer / virtual IP address is always added.',
      default: [],
    }),
    serverArgs: Type.Record(Type.String(), flagValue, {
      description: 'Extra k3s server flags (long names without "--", as in config.yaml), checked against k3s\'s list.',
      default: {},
    }),
    agentArgs: Type.Record(Type.String(), flagValue, {
      description: 'Extra k3s agent flags (long names without "--"), checked against k3s\'s list.',
      default: {},
    }),
    install: Type.Object(
      {
        source: literals(['download', 'local'] as const, 'download: the install script fetches k3s; local: upload files from this machine (air gap).', 'download'),
        path: Type.Optional(Type.String({ description: 'Local k3s binary to upload when source is local.', minLength: 1 })),
        airgapImages: Type.Optional(Type.String({ description: 'Local k3s air-gap images tarball to upload.', minLength: 1 })),
      },
      { additionalProperties: false, default: {}, description: 'Where the k3s binary comes from.' },
    ),
    flannelBackend: literals(['vxlan', 'host-gw', 'wireguard-native', 'none'] as const, 'Flannel backend (flannel-backend); none to bring your own CNI.', 'vxlan'),
    secretsEncryption: Type.Boolean({ description: 'Encrypt Secrets at rest (secrets-encryption).', default: false }),
  },
  { additionalProperties: false, default: {}, description: 'k3s on the server and agent hosts.' },
);

export const MetallbSchema = Type.Object(
  {
    enabled: Type.Boolean({ description: 'Install MetalLB.', default: true }),
    version: Type.String({
      description: 'MetalLB release.',
      default: 'v0.14.9',
      pattern: METALLB_VERSION_PATTERN,
      errorMessage: 'is not a MetalLB version',
      errorHint: 'write a release such as v0.14.9',
    }),
    manifest: Type.Optional(
      Type.Object(
        {
          file: Type.Optional(Type.String({ description: 'Local metallb-native.yaml to apply instead of downloading the release\'s.', minLength: 1 })),
          sha256: Type.Optional(
            Type.String({
              description: 'Expected SHA-256 of the manifest; a mismatch stops the apply.',
              pattern: '^[a-f0-9]{64}$',
              errorMessage: 'is not a SHA-256 digest',
              errorHint: 'write 64 lower-case hexadecimal digits',
            }),
          ),
        },
        { additionalProperties: false, description: 'Where the MetalLB manifest comes from.' },
      ),
    ),
    pools: Type.Array(
      Type.Object(
        {
          name: dnsLabel('IPAddressPool name.'),
          addresses: Type.Array(
            Type.String({
              pattern: anchored(`${RANGE_PATTERN}|${CIDR_PATTERN}`),
              errorMessage: 'is not an address range or CIDR',
              errorHint: 'write a range such as 192.168.0.170-192.168.0.175 or a CIDR such as 192.168.0.176/29',
              description: 'A range a.b.c.d-a.b.c.e or a CIDR.',
            }),
            { description: 'Addresses handed to LoadBalancer Services; outside node addresses, the virtual IP and DHCP ranges.', minItems: 1 },
          ),
          autoAssign: Type.Boolean({ description: 'Assign from this pool without an explicit request.', default: true }),
        },
        { additionalProperties: false, description: 'An address pool.' },
      ),
      { description: 'Address pools (IPAddressPool).', minItems: 1, errorHint: 'give at least one pool with a range of free addresses' },
    ),
    l2Advertisement: Type.Boolean({ description: 'Announce the pools with ARP (L2Advertisement).', default: true }),
  },
  { additionalProperties: false, description: 'MetalLB, for Services of type LoadBalancer. Omit the section to go without.' },
);

export const WaitsSchema = Type.Object(
  {
    serverReady: duration('How long a k3s server may take to answer /ping and /readyz after a (re)start before apply fails naming it.', '5m'),
    agentReady: duration('How long a k3s agent may take to become a Ready node after a (re)start.', '5m'),
    metallbReady: duration("How long MetalLB's controller and webhook may take to become ready after the manifest went on.", '5m'),
    lbDrain: duration(
      'Before a k3s server restarts (an upgrade, a setting) or is removed, every load balancer takes it out of its upstreams; its open connections through the load balancer then get this long to end on their own before they are closed (watches never end by themselves; their clients reconnect through another server).',
      '10s',
    ),
    leaderElection: duration(
      'Before a node is drained (an upgrade, a removal), how long apply waits for kube-controller-manager and kube-scheduler each to have a leader renewing its Lease in kube-system: right after the server that led restarts, none leads for up to ~15 s, and a pod evicted then is neither replaced nor dropped from its Services. When it runs out, apply stops before the drain, naming the Lease.',
      '60s',
    ),
    noProgress: duration(
      'A wait for a server or agent gives up early when nothing it watches changes for this long: the probe\'s answer, the unit\'s state, the journal (a frozen or hung host). Below serverReady and agentReady to matter.',
      '45s',
    ),
  },
  {
    additionalProperties: false,
    default: {},
    description:
      'Bounds of the waits apply does (each one fails naming the host and the last state seen). Other bounds: ssh.connectTimeout; a lost SSH connection is noticed after 3 missed keepalives 10 s apart; one remote command may run 2 minutes (package installs).',
  },
);

export const VerifySchema = Type.Object(
  {
    image: Type.Optional(
      Type.String({
        description: 'Image of the test web server `verify` runs behind a LoadBalancer Service: it must serve HTTP on port 80 and be pullable by the nodes (or imported from the air-gap images). Default docker.io/library/nginx:1.27-alpine; `verify --image` overrides it.',
        minLength: 1,
        pattern: '^[^\\s]+$',
        errorMessage: 'is not an image reference',
        errorHint: 'write an image such as docker.io/library/nginx:1.27-alpine',
      }),
    ),
  },
  { additionalProperties: false, description: 'How `k8s-ha verify` (and the end of `apply`) tests the cluster.' },
);

export const UpgradeSchema = Type.Object(
  {
    agentBatch: Type.Optional(
      Type.Union([Type.Integer({ minimum: 1 }), Type.String({ pattern: '^([1-9][0-9]?|100)%$' })], {
        description: 'How many agents are upgraded at once, each cordoned and drained first: a count (2) or a percentage of the agents ("25%", at least one). Default 1: one at a time, so the rest keep serving.',
        errorMessage: 'is not a count or a percentage',
        errorHint: 'write a whole number from 1 up, or a percentage such as "25%"',
      }),
    ),
  },
  { additionalProperties: false, description: 'How `apply` rolls a new k3s version through the nodes: servers one at a time, then agents in batches.' },
);

export const ClusterFileSchema = Type.Object(
  {
    apiVersion: Type.Literal(API_VERSION, { description: 'Version of the cluster file format.' }),
    name: dnsLabel('Cluster name; used in the kubeconfig context and file names.'),
    ssh: SshSchema,
    hosts: Type.Array(HostSchema, { description: 'Every machine of the cluster.', minItems: 1, errorHint: 'list at least the load balancer, datastore and server hosts' }),
    loadBalancer: LoadBalancerSchema,
    datastore: DatastoreSchema,
    k3s: K3sSchema,
    metallb: Type.Optional(MetallbSchema),
    waits: WaitsSchema,
    verify: Type.Optional(VerifySchema),
    upgrade: Type.Optional(UpgradeSchema),
  },
  {
    additionalProperties: false,
    title: 'k8s-ha cluster file',
    description: 'One file describing a highly available k3s cluster: hosts, API load balancer, MariaDB datastore, k3s and MetalLB.',
  },
);

/** The cluster file as written (after defaults), before resolution. */
export type ClusterFile = Static<typeof ClusterFileSchema>;
export type HostFile = Static<typeof HostSchema>;

const OWN_KEYWORDS = new Set(['errorMessage', 'errorHint']);

/**
 * Deep copy of a schema without TypeBox's symbols and our own keywords. A
 * field with a default is not `required` for the file's author (TypeBox lists
 * it because the defaulted value always has it), so it leaves `required`.
 */
function publish(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(publish);
  if (node === null || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    if (!OWN_KEYWORDS.has(k)) out[k] = publish(v);
  }
  const props = out.properties as Record<string, { default?: unknown }> | undefined;
  if (Array.isArray(out.required) && props) {
    const required = (out.required as string[]).filter((key) => props[key]?.default === undefined);
    if (required.length) out.required = required;
    else delete out.required;
  }
  return out;
}

/** The JSON Schema (draft 2020-12 compatible) of the cluster file. */
export function clusterJsonSchema(): Record<string, unknown> {
  return { $schema: 'https://json-schema.org/draft/2020-12/schema', ...(publish(ClusterFileSchema) as Record<string, unknown>) };
}

/** Our extra keywords, read from a schema node. */
export function schemaMessage(schema: TSchema): { message?: string; hint?: string } {
  const s = schema as { errorMessage?: unknown; errorHint?: unknown };
  return {
    ...(typeof s.errorMessage === 'string' ? { message: s.errorMessage } : {}),
    ...(typeof s.errorHint === 'string' ? { hint: s.errorHint } : {}),
  };
}
