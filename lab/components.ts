/**
 * The lab's stand-ins for what cannot be downloaded here, and how the lab's
 * cluster file points k8s-ha at them:
 * - the lab's k3s (labk3s/bin/k3s: kine + the real kube-apiserver,
 *   controller-manager and scheduler, kwok-simulated kubelets), installed by
 *   k8s-ha as an air-gapped k3s binary (`k3s.install.source: local`);
 * - MetalLB's release manifest as published (webhook and all), taken from the
 *   Go module proxy's copy of the release tag (scripts/fetch-metallb.sh), as
 *   GitHub is not reachable here; k8s-ha checks it against its pinned digest;
 * - the lab's container images (labk3s/images/build.sh: pause, the verify web
 *   server, MetalLB's controller and speaker), delivered by k8s-ha's air-gap
 *   images path (`k3s.install.airgapImages`), as no registry is reachable.
 * None of this is used outside the lab.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, mkdir } from 'node:fs/promises';
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
 * MetalLB's release manifest for the lab in `dir`, unmodified: fetched from
 * the Go module proxy (checked against k8s-ha's pinned digest by the script).
 * Cached: fetched once per folder.
 */
export async function labMetallbManifest(dir: string, version = LAB_METALLB_VERSION): Promise<{ file: string; sha256: string }> {
  const file = join(dir, `metallb-native-${version}.yaml`);
  if (!existsSync(file)) {
    await mkdir(dir, { recursive: true });
    await run(join(REPO, 'scripts/fetch-metallb.sh'), [version, file], { timeout: 300_000 });
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
