/**
 * The lab's stand-ins for what cannot be downloaded here, and how the lab's
 * cluster file points k8s-ha at them:
 * - the lab's k3s (labk3s/bin/k3s: kine + the real kube-apiserver,
 *   controller-manager and scheduler, kwok-simulated kubelets), installed by
 *   k8s-ha as an air-gapped k3s binary (`k3s.install.source: local`);
 * - MetalLB's release manifest, taken from the Go module proxy's copy of the
 *   release tag (scripts/fetch-metallb.sh) without its validating webhook,
 *   which would run in a controller pod that kwok only pretends to run;
 * - MetalLB's real controller, built from Go modules and run as a plain
 *   process on a server machine (`startLabMetallbController`).
 * None of this is used outside the lab.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, readFile, writeFile, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The clone (or installed package) this module belongs to: the nearest directory up with a package.json (lab/ from the sources, dist/lab/ once built). */
export const REPO = ((): string => {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json')) && dirname(d) !== d) d = dirname(d);
  return d;
})();
export const LAB_K3S = join(REPO, 'labk3s/bin/k3s');
export const LAB_METALLB_VERSION = 'v0.14.9';
export const labMetallbController = (version = LAB_METALLB_VERSION): string => join(REPO, `labk3s/metallb/bin/controller-${version}`);
/** The lab's image archives (labk3s/images/build.sh): a folder of `ctr import`-able tarballs, and their names. */
export const LAB_IMAGES_DIR = join(REPO, 'labk3s/images/bin');

export interface LabComponents {
  /** The lab's k3s binary, when built (scripts/build-labk3s.sh). */
  k3sBinary?: string;
  /** The folder of image archives for k3s.install.airgapImages, when built (labk3s/images/build.sh). */
  airgapImages?: string;
  /** The test web server among those images, for verify.image. */
  verifyImage?: string;
  /** MetalLB's manifest for the lab, with its sha256. */
  metallbManifest?: { file: string; sha256: string };
}

/**
 * MetalLB's manifest for the lab in `dir`: fetched from the Go module proxy
 * (checked against k8s-ha's pinned digest by the script), then the
 * ValidatingWebhookConfiguration removed. Cached: fetched once per folder.
 */
export async function labMetallbManifest(dir: string, version = LAB_METALLB_VERSION): Promise<{ file: string; sha256: string }> {
  const full = join(dir, `metallb-native-${version}.yaml`);
  const file = join(dir, `metallb-native-${version}-lab.yaml`);
  if (!existsSync(file)) {
    await mkdir(dir, { recursive: true });
    if (!existsSync(full)) await run(join(REPO, 'scripts/fetch-metallb.sh'), [version, full], { timeout: 300_000 });
    const docs = (await readFile(full, 'utf8')).split(/^---\s*$/m).filter((d) => !/^kind: ValidatingWebhookConfiguration$/m.test(d));
    await writeFile(`${file}.tmp`, docs.join('---\n'));
    await copyFile(`${file}.tmp`, file);
  }
  return { file, sha256: createHash('sha256').update(await readFile(file)).digest('hex') };
}

/** The built image folder and the verify web server's name (from images.txt), or null when not built. */
export async function labImages(dir = LAB_IMAGES_DIR): Promise<{ airgapImages: string; verifyImage: string } | null> {
  const names = await readFile(join(dir, 'images.txt'), 'utf8').catch(() => null);
  const httpd = names?.split('\n').find((n) => n.startsWith('localhost/k8s-ha-lab/httpd:'));
  return httpd ? { airgapImages: dir, verifyImage: httpd } : null;
}

/**
 * What the lab can offer this host: the lab's k3s when it is built, and the
 * MetalLB manifest when the Go module proxy answers. Missing parts are
 * reported through `log`, and the cluster file then uses k8s-ha's defaults.
 */
export async function labComponents(cacheDir: string, log: (line: string) => void): Promise<LabComponents> {
  const out: LabComponents = {};
  if (existsSync(LAB_K3S)) out.k3sBinary = LAB_K3S;
  else log(`W: the lab's k3s is not built (${LAB_K3S}); run scripts/build-labk3s.sh, or the cluster file will try to download k3s`);
  const images = await labImages();
  if (images) Object.assign(out, images);
  else log(`W: the lab's images are not built (${LAB_IMAGES_DIR}); run labk3s/images/build.sh, or no pod can start in the lab (no registry is reachable)`);
  try {
    out.metallbManifest = await labMetallbManifest(cacheDir);
  } catch (e) {
    log(`W: MetalLB's manifest could not be fetched from the Go module proxy (${(e as Error).message.split('\n')[0]}); the cluster file will try the release URL`);
  }
  return out;
}

/** The parts of a lab that starting MetalLB's controller needs. */
export interface LabForController {
  dir: string;
  machines: { name: string; roles: string[] }[];
  exec(name: string, argv: string[], opts?: { allowFailure?: boolean }): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/**
 * Runs MetalLB's real controller on the lab's first server as a transient
 * systemd unit with the admin kubeconfig, its webhook off: in the lab, kwok
 * only pretends to run the controller's pod. Run it after `apply` (it needs
 * MetalLB's CRDs). Returns the machine it runs on; a no-op when it runs.
 */
export async function startLabMetallbController(lab: LabForController, version = LAB_METALLB_VERSION): Promise<string> {
  const bin = labMetallbController(version);
  if (!existsSync(bin)) throw new Error(`${bin} is missing: build it with labk3s/metallb/build.sh ${version} (from the Go module proxy; a few minutes cold)`);
  const server = lab.machines.find((m) => m.roles.includes('server'))?.name;
  if (!server) throw new Error('the lab has no server machine to run MetalLB\'s controller on');
  const active = await lab.exec(server, ['systemctl', 'is-active', '--quiet', 'metallb-controller'], { allowFailure: true });
  if (active.code === 0) return server;
  await copyFile(bin, join(lab.dir, 'machines', server, 'root', 'usr/local/bin/metallb-controller'));
  await lab.exec(server, ['chmod', '0755', '/usr/local/bin/metallb-controller']);
  // A failed earlier run leaves the transient unit behind; clear it first.
  await lab.exec(server, ['systemctl', 'reset-failed', 'metallb-controller'], { allowFailure: true });
  await lab.exec(server, [
    'systemd-run', '--unit=metallb-controller', '--setenv=KUBECONFIG=/etc/rancher/k3s/k3s.yaml',
    '/usr/local/bin/metallb-controller', '--webhook-mode=disabled', '--namespace=metallb-system', '--deployment=controller', '--ml-secret-name=memberlist', '--port=7472',
  ]);
  return server;
}
