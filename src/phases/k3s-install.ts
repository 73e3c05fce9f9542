import { markPending } from '../engine/desired.js';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import type { Change } from '../engine/phase.js';
import { K3S_BINARY_PATH } from '../render/k3s.js';
import type { Cluster } from '../spec/cluster.js';
import type { Host } from '../transport/host.js';
import { sh, type Command } from '../transport/quote.js';

/**
 * The k3s binary (and air-gap images) of the pinned version, as the machine
 * running k8s-ha sees them: their sha256 for `observe`/`diff`, their bytes
 * only when a host actually needs them (`load`, called from a change).
 * Planning reads checksums only, never a whole binary from the internet.
 */

/** Where k3s looks for image tarballs to import at start (FACTS: air-gap). */
export const K3S_IMAGES_DIR = '/var/lib/rancher/k3s/agent/images';

/** Default base of k3s's release downloads; a test points it at a local double. */
export const K3S_RELEASES_URL = 'https://github.com/k3s-io/k3s/releases/download';

export interface Artifact {
  /** The file name on the host (images) or for messages (binary). */
  name: string;
  sha256: string;
  /** Where it comes from, for the plan: a local path or a release URL. */
  origin: string;
  load(): Promise<Buffer>;
}

export interface ArtifactOptions {
  /** Default K3S_RELEASES_URL. */
  releasesUrl?: string;
  /** Downloaded releases are kept here. Default `$XDG_CACHE_HOME/k8s-ha/k3s` or `~/.cache/k8s-ha/k3s`. */
  cacheDir?: string;
  /** Default: the global fetch. */
  fetch?: typeof fetch;
}

/** The release asset names k3s publishes per architecture (Debian's arch names in, k3s's out). */
export function releaseAssetNames(arch: string): { binary: string; checksums: string } {
  switch (arch) {
    case 'amd64':
      return { binary: 'k3s', checksums: 'sha256sum-amd64.txt' };
    case 'arm64':
      return { binary: 'k3s-arm64', checksums: 'sha256sum-arm64.txt' };
    case 'armhf':
      return { binary: 'k3s-armhf', checksums: 'sha256sum-arm.txt' };
    default:
      throw new Error(`k3s publishes no binary for the architecture ${arch || '(unknown)'}: k3s runs on amd64, arm64 and armhf`);
  }
}

/** `HEX  NAME` lines of a sha256sum file -> name -> hex. */
export function parseChecksums(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{64})\s+\*?(\S+)\s*$/i.exec(line.trim());
    if (m) out.set(m[2]!, m[1]!.toLowerCase());
  }
  return out;
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

function defaultCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'k8s-ha', 'k3s');
}

/**
 * Finds, hashes, downloads and caches artifacts. One instance serves the
 * servers and the agents phases, so each file is hashed (or each checksum
 * list fetched) once per process.
 */
export class K3sArtifacts {
  private readonly memo = new Map<string, Promise<unknown>>();
  private readonly releasesUrl: string;
  private readonly cacheDir: string;
  private readonly fetchFn: typeof fetch;

  constructor(opts: ArtifactOptions = {}) {
    this.releasesUrl = (opts.releasesUrl ?? K3S_RELEASES_URL).replace(/\/+$/, '');
    this.cacheDir = opts.cacheDir ?? defaultCacheDir();
    this.fetchFn = opts.fetch ?? fetch;
  }

  private once<T>(key: string, fn: () => Promise<T>): Promise<T> {
    let p = this.memo.get(key) as Promise<T> | undefined;
    if (!p) {
      p = fn();
      // A failure (network down) may succeed on a later run in the same process.
      p.catch(() => this.memo.delete(key));
      this.memo.set(key, p);
    }
    return p;
  }

  /** The binary for `arch`, per `k3s.install`. Throws with a fix when it cannot be had. */
  async binary(c: Cluster, arch: string): Promise<Artifact> {
    const inst = c.k3s.install;
    if (inst.source === 'local') {
      if (!inst.path) throw new Error('k3s.install.path is not set: name the k3s binary (or a folder holding it) for install.source: local');
      return this.localBinary(inst.path, arch);
    }
    if (!c.k3s.version) {
      throw new Error(`k3s.version is not pinned (channel ${c.k3s.channel ?? 'stable'}): k8s-ha installs one exact version on every node, so that servers never drift apart; set k3s.version (e.g. v1.37.2+k3s1)`);
    }
    return this.releaseBinary(c.k3s.version, arch);
  }

  /** Image tarballs to place in K3S_IMAGES_DIR (install.airgapImages: a file or a folder of them). */
  async images(c: Cluster): Promise<Artifact[]> {
    const p = c.k3s.install.airgapImages;
    if (!p) return [];
    const files = await this.once(`images-list:${p}`, async () => {
      const st = await stat(p).catch((e: NodeJS.ErrnoException) => {
        throw new Error(`k3s.install.airgapImages: cannot read ${p}: ${e.code === 'ENOENT' ? 'no such file or folder' : e.message}`);
      });
      if (!st.isDirectory()) return [p];
      const names = (await readdir(p)).filter((n) => /\.(tar|tar\.gz|tgz|tar\.zst)$/.test(n)).sort();
      if (!names.length) throw new Error(`k3s.install.airgapImages: ${p} holds no image tarball (*.tar, *.tar.gz, *.tar.zst)`);
      return names.map((n) => join(p, n));
    });
    return Promise.all(files.map((f) => this.localFile(f, basename(f))));
  }

  private async localBinary(path: string, arch: string): Promise<Artifact> {
    const st = await stat(path).catch((e: NodeJS.ErrnoException) => {
      throw new Error(`k3s.install.path: cannot read ${path}: ${e.code === 'ENOENT' ? 'no such file or folder' : e.message}`);
    });
    if (!st.isDirectory()) return this.localFile(path, 'k3s');
    // A folder laid out like a release download: k3s, k3s-arm64, k3s-armhf.
    const name = releaseAssetNames(arch).binary;
    for (const candidate of [name, 'k3s']) {
      const f = join(path, candidate);
      if (await stat(f).then((s) => s.isFile(), () => false)) return this.localFile(f, 'k3s');
    }
    throw new Error(`k3s.install.path: ${path} holds no ${name} for ${arch} hosts; put the release's ${name} there`);
  }

  private async localFile(path: string, name: string): Promise<Artifact> {
    const st = await stat(path);
    // Keyed by size and mtime: a rebuilt binary at the same path is hashed again.
    const key = `local:${path}:${st.size}:${st.mtimeMs}`;
    const digest = await this.once(key, async () => sha256(await readFile(path)));
    return {
      name,
      sha256: digest,
      origin: path,
      load: async () => {
        const buf = await readFile(path);
        if (sha256(buf) !== digest) throw new Error(`${path} changed while k8s-ha was running; run apply again`);
        return buf;
      },
    };
  }

  private async releaseBinary(version: string, arch: string): Promise<Artifact> {
    const names = releaseAssetNames(arch);
    const dir = join(this.cacheDir, version);
    const base = `${this.releasesUrl}/${encodeURIComponent(version)}`;
    const sums = await this.once(`sums:${base}/${names.checksums}`, async () => {
      const cached = join(dir, names.checksums);
      const have = await readFile(cached, 'utf8').catch(() => null);
      // A release's checksums never change: a cached list is as good as a fresh one.
      const text = have ?? (await this.download(`${base}/${names.checksums}`)).toString('utf8');
      const parsed = parseChecksums(text);
      if (!parsed.get(names.binary)) throw new Error(`${base}/${names.checksums} lists no checksum for ${names.binary}`);
      if (have === null) await cacheWrite(dir, names.checksums, Buffer.from(text));
      return parsed;
    });
    const want = sums.get(names.binary)!;
    const url = `${base}/${names.binary}`;
    return {
      name: 'k3s',
      sha256: want,
      origin: url,
      load: () =>
        this.once(`bin:${url}`, async () => {
          const cached = join(dir, names.binary);
          const have = await readFile(cached).catch(() => null);
          if (have && sha256(have) === want) return have;
          const buf = await this.download(url);
          const got = sha256(buf);
          if (got !== want) {
            throw new Error(`${url}: sha256 ${got} does not match ${want} from ${names.checksums}; the download is corrupt or was tampered with: nothing was installed, run apply again`);
          }
          await cacheWrite(dir, names.binary, buf);
          return buf;
        }),
    };
  }

  private async download(url: string): Promise<Buffer> {
    let res: Response;
    try {
      res = await this.fetchFn(url, { redirect: 'follow' });
    } catch (e) {
      const cause = e instanceof Error && e.cause instanceof Error ? `: ${e.cause.message}` : '';
      throw new Error(`downloading ${url}: ${e instanceof Error ? e.message : String(e)}${cause}; without internet access use k3s.install.source: local with the binary (and air-gap images) downloaded elsewhere`);
    }
    if (!res.ok) {
      const hint = res.status === 404 ? ' (no such release: check k3s.version, e.g. v1.37.2+k3s1)' : '';
      throw new Error(`downloading ${url}: HTTP ${res.status} ${res.statusText}${hint}`);
    }
    return Buffer.from(await res.arrayBuffer());
  }
}

async function cacheWrite(dir: string, name: string, buf: Buffer): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${name}.${process.pid}.tmp`);
  await writeFile(tmp, buf, { mode: 0o644 });
  await rename(tmp, join(dir, name));
}

/** What is on the host now: the binary's and each image's sha256, null when absent. */
export interface InstalledArtifacts {
  binary: string | null;
  images: Map<string, string | null>;
}

/** The wanted artifacts for a host, or why they cannot be had (a preflight error). */
export type WantedArtifacts = { ok: true; binary: Artifact; images: Artifact[] } | { ok: false; error: string };

export async function wantedArtifacts(artifacts: K3sArtifacts, c: Cluster, arch: string): Promise<WantedArtifacts> {
  try {
    const [binary, images] = await Promise.all([artifacts.binary(c, arch), artifacts.images(c)]);
    return { ok: true, binary, images };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}

/**
 * Where the sha256 of each uploaded file is remembered on the host, with the
 * file's size, ctime and inode at the time. Hashing a 70-150 MB binary on
 * every host on every plan costs seconds; a file whose size, ctime and inode
 * are unchanged has not been rewritten (ctime cannot be set back by any
 * tool, unlike mtime), so its recorded hash still holds. Any other file is
 * hashed in full.
 */
export const SUMS_DIR = '/var/lib/k8s-ha/sha256';

function sumsFile(path: string): string {
  return `${SUMS_DIR}/${path.replace(/^\//, '').replace(/\//g, '_')}`;
}

/** One round trip: `PATH<TAB>SHA` per existing file (SHA from the record when still valid). */
export function hashProbe(paths: string[]): Command {
  const pairs = paths.flatMap((p) => [p, sumsFile(p)]);
  return sh`set -- ${pairs}; while [ $# -gt 0 ]; do f=$1; c=$2; shift 2; [ -f "$f" ] || continue; id=$(stat -c '%s %Z %i' "$f"); if [ -f "$c" ] && [ "$(cut -d' ' -f1-3 "$c")" = "$id" ]; then h=$(cut -d' ' -f4 "$c"); else h=$(sha256sum < "$f" | cut -d' ' -f1); fi; printf '%s\\t%s\\n' "$f" "$h"; done`;
}

/** After an upload: record the file's hash with its identity (see SUMS_DIR). */
export function recordHash(path: string, sha256: string): Command {
  return sh`mkdir -p ${SUMS_DIR} && printf '%s %s\\n' "$(stat -c '%s %Z %i' ${path})" ${sha256} > ${sumsFile(path)}`;
}

export async function observeInstalled(host: Host, want: WantedArtifacts): Promise<InstalledArtifacts> {
  const imageNames = want.ok ? want.images.map((i) => i.name) : [];
  const paths = [K3S_BINARY_PATH, ...imageNames.map((n) => `${K3S_IMAGES_DIR}/${n}`)];
  const r = await host.exec(hashProbe(paths), { timeoutMs: 300_000 });
  const got = new Map(
    r.stdout
      .split('\n')
      .filter((l) => l.includes('\t'))
      .map((l) => l.split('\t') as [string, string]),
  );
  return { binary: got.get(K3S_BINARY_PATH) || null, images: new Map(imageNames.map((n) => [n, got.get(`${K3S_IMAGES_DIR}/${n}`) || null])) };
}

async function upload(h: Host, path: string, a: Artifact, mode: number): Promise<void> {
  await h.writeFile(path, await a.load(), { mode });
  await h.exec(recordHash(path, a.sha256));
}

/**
 * Upload the binary and images whose hash differs. `binaryChanged` tells the
 * caller to restart `unit`; the restart is also recorded as owed on the host
 * before the upload, so an apply cut off in between restarts it on the re-run.
 */
export function installChanges(host: string, version: string | undefined, want: WantedArtifacts, have: InstalledArtifacts, unit: string): { changes: Change[]; binaryChanged: boolean } {
  if (!want.ok) return { changes: [], binaryChanged: false };
  const changes: Change[] = [];
  // Images first: k3s imports them at start, and the start follows the binary.
  for (const img of want.images) {
    if (have.images.get(img.name) === img.sha256) continue;
    const path = `${K3S_IMAGES_DIR}/${img.name}`;
    const before = have.images.get(img.name) ?? null;
    changes.push({
      action: before ? 'update' : 'create',
      target: { host, file: path },
      before: before && `sha256 ${before}`,
      after: `sha256 ${img.sha256}`,
      summary: `${before ? 'replace' : 'upload'} air-gap images ${path} (from ${img.origin})`,
      apply: (h) => upload(h, path, img, 0o644),
    });
  }
  const binaryChanged = have.binary !== want.binary.sha256;
  if (binaryChanged) {
    const v = version ? ` ${version}` : '';
    changes.push({
      action: have.binary ? 'update' : 'create',
      target: { host, file: K3S_BINARY_PATH },
      before: have.binary && `sha256 ${have.binary}`,
      after: `sha256 ${want.binary.sha256}${v}`,
      summary: `${have.binary ? 'replace' : 'install'} k3s${v} at ${K3S_BINARY_PATH} (sha256 ${want.binary.sha256.slice(0, 12)}…, from ${want.binary.origin})`,
      // Written beside and renamed: a running k3s keeps its old inode.
      apply: async (h) => {
        await markPending(h, unit, 'restart');
        await upload(h, K3S_BINARY_PATH, want.binary, 0o755);
      },
    });
  }
  return { changes, binaryChanged };
}
