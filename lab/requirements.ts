import { access } from 'node:fs/promises';
import { constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { LabUsageError } from './errors.js';

/** A program the lab runs, and the Debian package that brings it. */
const TOOLS: readonly { bin: string; pkg: string }[] = [
  { bin: 'systemd-nspawn', pkg: 'systemd-container' },
  { bin: 'debootstrap', pkg: 'debootstrap' },
  { bin: 'ip', pkg: 'iproute2' },
  { bin: 'nft', pkg: 'nftables' },
  { bin: 'nsenter', pkg: 'util-linux' },
  { bin: 'ssh-keygen', pkg: 'openssh-client' },
  { bin: 'mount', pkg: 'mount' },
  // Not a program: debootstrap checks the mirror's signature with it.
  { bin: 'debian-archive-keyring.gpg', pkg: 'debian-archive-keyring' },
];

const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

async function onPath(bin: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  // Tools in sbin are missing from a non-root PATH; root's usual dirs are added.
  const dirs = [...(env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    try {
      await access(join(d, bin), constants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

/** The message for a host that cannot run the lab, or null. Pure, for tests. */
export function requirementProblem(isRoot: boolean, missingBins: readonly string[]): string | null {
  if (!isRoot) return 'k8s-ha lab needs root (it mounts overlays, makes a bridge and boots machines): run it with sudo';
  if (!missingBins.length) return null;
  const pkgs = [...new Set(missingBins.map((b) => TOOLS.find((t) => t.bin === b)?.pkg ?? b))];
  return `k8s-ha lab needs ${missingBins.join(', ')}; install with: apt-get install -y ${pkgs.join(' ')}`;
}

/** Why the lab cannot run here (not root, a tool missing), with the fix; null when it can. */
export async function labBlocker(env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  const missing: string[] = [];
  for (const t of TOOLS) {
    const found = t.bin === 'debian-archive-keyring.gpg' ? await access(KEYRING).then(() => true, () => false) : await onPath(t.bin, env);
    if (!found) missing.push(t.bin);
  }
  return requirementProblem(process.getuid?.() === 0, missing);
}

export async function checkRequirements(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const why = await labBlocker(env);
  if (why) throw new LabUsageError(why);
}
