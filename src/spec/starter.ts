/**
 * The commented starter file `k8s-ha init` writes. It is built from a few
 * answers and follows the seed's shape: one infrastructure host with the load
 * balancer and the datastore, the servers, the agents, and MetalLB when a
 * pool is given. Tests load what it writes, so it stays valid.
 */

export interface StarterAnswers {
  /** Cluster name (a DNS label). */
  name: string;
  /** Address of the host running the API load balancer (and, by default, MariaDB). */
  lbAddress: string;
  /** Addresses of the k3s servers; two or more for HA. */
  servers: string[];
  /** Addresses of the k3s agents; may be empty. */
  agents: string[];
  /** A free range or CIDR for MetalLB, e.g. 192.168.0.170-192.168.0.175; no MetalLB when absent. */
  poolRange?: string;
  /** A separate datastore host; default: the load-balancer host. */
  datastoreAddress?: string;
  /** Default root. */
  sshUser?: string;
  /** Default: the SSH agent. */
  keyFile?: string;
  /** Default v1.37.2+k3s1. */
  k3sVersion?: string;
  /** Default v0.14.9. */
  metallbVersion?: string;
  /** Value for the yaml-language-server $schema comment (a path or URL); no comment when absent. */
  schemaRef?: string;
}

export const STARTER_K3S_VERSION = 'v1.37.2+k3s1';
export const STARTER_METALLB_VERSION = 'v0.14.9';

/** A YAML plain scalar when safe, a double-quoted one otherwise. */
function scalar(v: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9._/~+-]*$/.test(v) && !/^(true|false|null|yes|no|on|off|[0-9.]+)$/i.test(v) ? v : JSON.stringify(v);
}

function hostBlock(name: string, address: string, roles: string[]): string[] {
  return [`  - name: ${scalar(name)}`, `    address: ${scalar(address)}`, `    roles: [${roles.join(', ')}]`];
}

export function starterClusterFile(a: StarterAnswers): string {
  const user = a.sshUser ?? 'root';
  const separateDs = a.datastoreAddress !== undefined && a.datastoreAddress !== a.lbAddress;
  const lines: string[] = [];
  if (a.schemaRef) lines.push(`# yaml-language-server: $schema=${a.schemaRef}`, '#');
  lines.push(
    `# k8s-ha cluster file for "${a.name}". Check it with \`k8s-ha validate\`, preview`,
    '# the changes with `k8s-ha plan`, then make them with `k8s-ha apply`.',
    '# Every field and its default: docs/cluster-file.md.',
    'apiVersion: k8s-ha/v1',
    `name: ${scalar(a.name)}`,
    '',
    '# How k8s-ha reaches the hosts. A host may override any of these under its own ssh:.',
    'ssh:',
    `  user: ${scalar(user)}`,
    '  port: 22',
  );
  if (a.keyFile) lines.push(`  keyFile: ${scalar(a.keyFile)}`);
  else lines.push('  # keyFile: ~/.ssh/id_ed25519   # without it, the SSH agent is used');
  if (user !== 'root') {
    lines.push('# Not root: commands run through sudo. If sudo asks for a password, add to each host', '#   sudo: {passwordEnv: SUDO_PASSWORD}');
  }
  lines.push(
    '',
    '# Every machine and what runs on it. Roles: loadbalancer, datastore, server, agent.',
    'hosts:',
    ...hostBlock('infra', a.lbAddress, separateDs ? ['loadbalancer'] : ['loadbalancer', 'datastore']),
  );
  if (separateDs) lines.push(...hostBlock('db', a.datastoreAddress!, ['datastore']));
  a.servers.forEach((addr, i) => lines.push(...hostBlock(`server${i + 1}`, addr, ['server'])));
  a.agents.forEach((addr, i) => lines.push(...hostBlock(`agent${i + 1}`, addr, ['agent'])));
  lines.push(
    '',
    '# The API load balancer in front of the servers. Clients and agents use',
    `# https://${a.lbAddress}:6443. For a second load balancer, give another host the`,
    '# loadbalancer role and add a virtualIP: {address, interface} here.',
    'loadBalancer:',
    '  kind: nginx        # or haproxy, which also takes out a hung server (active TLS check)',
    '  port: 6443',
    '',
    '# The MariaDB the servers share. The password is generated once and kept in the',
    '# state file beside this one; "${env:NAME}" or {file: PATH} supply your own.',
    'datastore:',
    '  kind: mariadb',
    '  database: k3s',
    '  user: k3s',
    '  password: generate',
    '',
    'k3s:',
    '  # A pinned release: upgrading is changing this line and running apply.',
    `  version: ${scalar(a.k3sVersion ?? STARTER_K3S_VERSION)}`,
    '  # The cluster token encrypts the datastore\'s bootstrap data: generated once,',
    '  # kept in the state file, and never to be changed on a running cluster.',
    '  token: generate',
    '  # servicelb must stay disabled when MetalLB hands out addresses.',
    '  disable: [servicelb, traefik]',
    '  # Keep workloads off the servers (needs agents):',
    '  # serverTaints: [CriticalAddonsOnly=true:NoExecute]',
    '  # Extra k3s flags, checked against k3s\'s own list:',
    '  # serverArgs: {kube-apiserver-arg: [audit-log-maxage=30]}',
  );
  if (a.poolRange) {
    lines.push(
      '',
      '# MetalLB answers for Services of type LoadBalancer from this pool. Keep the',
      '# pool outside the hosts\' addresses and your DHCP server\'s range.',
      'metallb:',
      `  version: ${scalar(a.metallbVersion ?? STARTER_METALLB_VERSION)}`,
      '  pools:',
      '    - name: default',
      `      addresses: [${scalar(a.poolRange)}]`,
      '  l2Advertisement: true',
    );
  } else {
    lines.push('', '# No MetalLB: add a metallb section with a pool of free addresses to get one.');
  }
  return `${lines.join('\n')}\n`;
}
