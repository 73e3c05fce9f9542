import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { run, runStreaming } from './run.js';
import { acquireLock } from './state.js';

/** Bump when the build steps below change, so cached images are rebuilt. */
const IMAGE_SCRIPT_VERSION = 4;

export const SUITE = 'bookworm';
export const MIRROR = 'http://deb.debian.org/debian';

/**
 * What every lab machine carries: what the phases install, so applies are
 * fast (apply must still install what is missing: see `bare` in machine.ts).
 */
export const IMAGE_PACKAGES: readonly string[] = [
  // boot, login, network
  'systemd', 'systemd-sysv', 'dbus', 'libpam-systemd', 'openssh-server', 'sudo', 'iproute2', 'iputils-ping',
  'netbase', 'procps', 'kmod', 'ca-certificates', 'curl', 'openssl', 'less',
  // the load balancer
  'nginx-light', 'libnginx-mod-stream', 'haproxy', 'keepalived',
  // the datastore
  'mariadb-server', 'mariadb-client',
  // a Galera datastore: state transfer with mariabackup, the arbitrator (galera-4 comes with mariadb-server)
  'mariadb-backup', 'galera-arbitrator-4',
  // k3s needs these on the node (iptables for kube-proxy / flannel rules)
  'iptables', 'conntrack', 'socat',
  // the container runtime the lab's k3s runs its kubelet on (k3s bundles its
  // own containerd; here it is Debian's), and the CNI plugins (/usr/lib/cni)
  'containerd', 'runc', 'containernetworking-plugins',
  // small TLS listeners and test servers
  'python3',
];

/** Daemons installed but not started at boot: the phases enable what a host's roles need. */
const DISABLED_UNITS: readonly string[] = [
  'nginx.service', 'haproxy.service', 'keepalived.service', 'mariadb.service', 'garb.service',
  // Periodic jobs that would only add noise (and disk work) during tests.
  'apt-daily.timer', 'apt-daily-upgrade.timer', 'dpkg-db-backup.timer', 'e2scrub_all.timer',
  'fstrim.timer', 'logrotate.timer', 'man-db.timer',
  // Nothing in a lab waits for "online"; waiting only slows the boot.
  'systemd-networkd-wait-online.service',
  // The lab's k3s runs containerd itself, as k3s does; Debian's unit would start a second one.
  'containerd.service', 'cni-dhcp.socket', 'cni-dhcp.service',
];

/**
 * A boot unit doing what a kubelet needs inside a machine-container and
 * nspawn does not give (FACTS, "Real kubelets in the lab"):
 * - nspawn mounts the v1 cgroup hierarchies read-only; kubelet and runc make
 *   cgroups in every one. A plain `remount,rw` silently stays read-only:
 *   `remount,bind,rw` makes them writable (only the machine's own subtree is
 *   visible: it cannot touch the host's).
 * - the kubelet sets vm.overcommit_memory=1, kernel.panic=10 and
 *   kernel.panic_on_oops=1 and fails when it cannot; /proc/sys is read-only
 *   here and those are the host's own values, so files holding the wanted
 *   values are bound over them in this machine's mount namespace only (the
 *   kubelet then finds them set and writes nothing).
 */
const PREP_UNIT = 'k8s-ha-lab-kubelet-prep';
const PREP_SCRIPT = `#!/bin/sh
# k8s-ha lab (see ${PREP_UNIT}.service): what a kubelet needs in this machine-container.
for d in /sys/fs/cgroup/*/; do
  mount -o remount,bind,rw "$d" 2>/dev/null || echo "k8s-ha lab: $d stays read-only" >&2
done
mkdir -p /run/k8s-ha-lab/sysctl
for kv in vm/overcommit_memory=1 kernel/panic=10 kernel/panic_on_oops=1; do
  k=\${kv%%=*}; v=\${kv#*=}
  [ "$(cat /proc/sys/$k)" = "$v" ] && continue
  f=/run/k8s-ha-lab/sysctl/$(echo "$k" | tr / .)
  echo "$v" > "$f"
  mount --bind "$f" "/proc/sys/$k"
done
`;
const PREP_UNIT_FILE = `[Unit]
Description=k8s-ha lab: writable cgroups and the kubelet's sysctls in this machine-container
DefaultDependencies=no
Before=sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/${PREP_UNIT}

[Install]
WantedBy=sysinit.target
`;

const ENABLED_UNITS: readonly string[] = ['ssh.service', 'systemd-networkd.service', `${PREP_UNIT}.service`];

export interface ImageInfo {
  /** Folder holding the root filesystem (the overlay's lower layer). */
  rootfs: string;
  key: string;
  packages: readonly string[];
  builtAt: string;
  buildSeconds: number;
}

/** Where images are cached. Default: /var/cache/k8s-ha-lab (K8S_HA_LAB_CACHE overrides). */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.K8S_HA_LAB_CACHE ?? '/var/cache/k8s-ha-lab';
}

/** The cache key: a hash of everything that decides the image's content. */
export function imageKey(packages: readonly string[] = IMAGE_PACKAGES): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ v: IMAGE_SCRIPT_VERSION, suite: SUITE, mirror: MIRROR, packages: [...packages].sort(), disabled: DISABLED_UNITS, enabled: ENABLED_UNITS, prep: [PREP_SCRIPT, PREP_UNIT_FILE] }));
  return `${SUITE}-${h.digest('hex').slice(0, 16)}`;
}

/** The cached image for the current package list, or null when it must be built. */
export async function findImage(env: NodeJS.ProcessEnv = process.env): Promise<ImageInfo | null> {
  const dir = join(cacheDir(env), 'images', imageKey());
  try {
    return JSON.parse(await readFile(join(dir, 'image.json'), 'utf8')) as ImageInfo;
  } catch {
    return null;
  }
}

/**
 * The image for the current package list: the cached one, or a new one built
 * with debootstrap (75-120 s, about 760 MB). The build happens in a temporary
 * folder renamed into place at the end, so an interrupted build never looks
 * finished; `image.json` is written last and marks a complete image.
 */
export async function ensureImage(log: (line: string) => void = () => {}, env: NodeJS.ProcessEnv = process.env): Promise<ImageInfo> {
  const found = await findImage(env);
  if (found) return found;
  const images = join(cacheDir(env), 'images');
  await mkdir(images, { recursive: true });
  // Two builds at once (two terminals, two test runs) would race on the same folder.
  const lock = await acquireLock(join(images, '.build.lock'), 'building the lab image', 20 * 60_000);
  try {
    const again = await findImage(env);
    if (again) return again;
    const key = imageKey();
    const final = join(images, key);
    const tmp = join(images, `.tmp-${key}-${process.pid}`);
    await rm(tmp, { recursive: true, force: true });
    await rm(final, { recursive: true, force: true });
    const rootfs = join(tmp, 'rootfs');
    await mkdir(rootfs, { recursive: true });
    const started = Date.now();
    log(`building the lab image ${key} with debootstrap (75-120 s; cached in ${images})`);
    await runStreaming(
      ['debootstrap', '--variant=minbase', `--include=${IMAGE_PACKAGES.join(',')}`, '--components=main', SUITE, rootfs, MIRROR],
      (line) => {
        // Milestones only: the per-package lines run to hundreds.
        if (/^I: (Retrieving Release|Installing core|Unpacking the base|Configuring the base|Base system installed)/.test(line) || /^[EW]:/.test(line)) log(line);
      },
    );
    await finishImage(rootfs, log);
    const info: ImageInfo = {
      rootfs: join(final, 'rootfs'),
      key,
      packages: IMAGE_PACKAGES,
      builtAt: new Date().toISOString(),
      buildSeconds: Math.round((Date.now() - started) / 100) / 10,
    };
    await rename(tmp, final);
    await writeFile(join(final, 'image.json'), JSON.stringify(info, null, 2) + '\n');
    log(`lab image ready in ${info.buildSeconds} s`);
    await pruneImages(images, key);
    return info;
  } finally {
    await lock.release();
  }
}

/** Image-wide settings that do not depend on the machine. */
async function finishImage(rootfs: string, log: (line: string) => void): Promise<void> {
  log('configuring the image: units, sshd, apt');
  await mkdir(join(rootfs, 'usr/local/sbin'), { recursive: true });
  await writeFile(join(rootfs, 'usr/local/sbin', PREP_UNIT), PREP_SCRIPT, { mode: 0o755 });
  await writeFile(join(rootfs, 'etc/systemd/system', `${PREP_UNIT}.service`), PREP_UNIT_FILE);
  await run(['systemctl', `--root=${rootfs}`, 'disable', ...DISABLED_UNITS], { allowFailure: true });
  await run(['systemctl', `--root=${rootfs}`, 'enable', ...ENABLED_UNITS]);
  // Every machine gets host keys of its own at creation; shared keys would
  // make every lab machine the same host to SSH.
  for (const f of await readdir(join(rootfs, 'etc/ssh'))) {
    if (f.startsWith('ssh_host_')) await rm(join(rootfs, 'etc/ssh', f));
  }
  await writeFile(
    join(rootfs, 'etc/ssh/sshd_config.d/10-lab.conf'),
    '# k8s-ha lab: one host key per machine (made at creation), root by key only.\n' +
      'HostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\nUseDNS no\n',
  );
  // Filled per machine; an empty file would make systemd invent one per boot.
  await writeFile(join(rootfs, 'etc/machine-id'), '');
  await rm(join(rootfs, 'etc/hostname'), { force: true });
  await writeFile(
    join(rootfs, 'etc/apt/sources.list'),
    `deb ${MIRROR} ${SUITE} main\ndeb ${MIRROR} ${SUITE}-updates main\n`,
  );
  // Package archives are not needed once installed; the index is kept so an
  // apply can `apt-get install` straight away (it should still update first).
  await run(['chroot', rootfs, 'apt-get', 'clean']);
  await run(['chroot', rootfs, 'apt-get', 'update', '-q'], { timeoutMs: 10 * 60_000, allowFailure: true }).then((r) => {
    if (r.code !== 0) log(`W: apt-get update in the image failed (machines will need it): ${r.stderr.trim().split('\n').pop() ?? ''}`);
  });
}

/** Removes images of older package lists; the current one stays. */
async function pruneImages(images: string, keep: string): Promise<void> {
  for (const name of await readdir(images)) {
    if (name === keep || name.startsWith('.')) continue;
    // An image still used as an overlay's lower layer cannot be removed safely.
    if (await imageInUse(join(images, name, 'rootfs'))) continue;
    await rm(join(images, name), { recursive: true, force: true });
  }
}

async function imageInUse(rootfs: string): Promise<boolean> {
  if (!existsSync(rootfs)) return false;
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  return mounts.includes(`lowerdir=${rootfs}`);
}
