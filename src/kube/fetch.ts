import type { Deployment } from '../cluster/deployment.js';
import { hostsWithRole } from '../spec/cluster.js';
import type { Host } from '../transport/host.js';
import { KubeClient, type KubeClientOptions } from './client.js';
import { credentials, parseKubeconfig, userKubeconfig, type Kubeconfig } from './kubeconfig.js';

/** FACTS: k3s writes the admin kubeconfig here, mode 0600, server 127.0.0.1:6443. */
export const K3S_KUBECONFIG_PATH = '/etc/rancher/k3s/k3s.yaml';

/**
 * The admin kubeconfig read from a server (as root), pointed at the cluster's
 * API URL (LB or VIP) and named after the cluster. It holds cluster-admin
 * credentials: write it mode 0600.
 */
export async function fetchKubeconfig(d: Deployment, host: Host): Promise<Kubeconfig> {
  const buf = await host.readFile(K3S_KUBECONFIG_PATH);
  if (!buf) throw new Error(`${host.name}: ${K3S_KUBECONFIG_PATH} does not exist: k3s has not started there yet; run \`k8s-ha apply\` first`);
  const admin = parseKubeconfig(buf.toString('utf8'), `${host.name}:${K3S_KUBECONFIG_PATH}`);
  return userKubeconfig(admin, d.spec.name, d.spec.apiServerUrl);
}

/** Tries each server in file order; the error lists why each failed. */
export async function fetchKubeconfigFromAny(d: Deployment, host: (name: string) => Promise<Host>): Promise<{ kubeconfig: Kubeconfig; from: string }> {
  const errors: string[] = [];
  for (const s of hostsWithRole(d.spec, 'server')) {
    try {
      return { kubeconfig: await fetchKubeconfig(d, await host(s.name)), from: s.name };
    } catch (e) {
      errors.push(`${s.name}: ${(e as Error).message}`);
    }
  }
  throw new Error(`could not read the admin kubeconfig from any server:\n  ${errors.join('\n  ')}`);
}

/** A client for the cluster through its API URL (LB or VIP). */
export function clientFor(k: Kubeconfig, opts?: KubeClientOptions): KubeClient {
  return new KubeClient(credentials(k), opts);
}
