import type { Change } from '../engine/phase.js';
import type { Problem } from '../engine/errors.js';
import type { Cluster } from '../spec/cluster.js';
import { hostsWithRole } from '../spec/cluster.js';
import type { LbUpstream } from '../render/nginx.js';
import { RenderInputError } from '../render/common.js';

/**
 * Helpers shared by the infrastructure phases (load balancer, virtual IP,
 * datastore): the upstream list, and turning a renderer's refusal into a
 * problem that points at the cluster file.
 */

/** k3s serves its API (and /ping) on 6443 only (FACTS: 9345 is RKE2's). */
export const K3S_API_PORT = 6443;

/** Every `server` host of the cluster file, as the load balancer's upstreams. */
export function apiUpstreams(c: Cluster): LbUpstream[] {
  return hostsWithRole(c, 'server').map((h) => ({ name: h.name, address: h.address, port: K3S_API_PORT }));
}

/**
 * Renderers refuse inputs they cannot write safely (RenderInputError names
 * the input field). Map that back to the cluster file: `fieldMap` turns the
 * renderer's field into a dotted path of the cluster file.
 */
export function renderProblem(err: unknown, fieldMap: (field: string) => string, hint: string): Problem {
  if (err instanceof RenderInputError) {
    return { severity: 'error', path: fieldMap(err.field), message: err.problem, hint };
  }
  return { severity: 'error', path: fieldMap(''), message: err instanceof Error ? err.message : String(err), hint };
}

/**
 * Put `extra` right after the package installs of a diffDesired() result
 * (packages are always first there), so commands that need the packages
 * (openssl, a checker) run after them and before the files go live.
 */
export function afterPackages(changes: Change[], extra: Change[]): Change[] {
  const i = changes.findIndex((c) => !('packages' in c.target));
  const at = i < 0 ? changes.length : i;
  return [...changes.slice(0, at), ...extra, ...changes.slice(at)];
}

/** Non-empty lines of tab-separated output, split into fields (`mariadb --batch`, `ip -o`). */
export function tabLines(stdout: string): string[][] {
  return stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => l.split('\t'));
}
