import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PassThrough, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { decryptBuffer, decryptStream, encryptStream, type DecryptWith, type EncryptTo } from './crypt.js';
import { MANIFEST_NAME, ManifestError, PART, parseManifest, partFor, renderManifest, type Manifest, type ManifestPart, type SecretsPart } from './manifest.js';
import { TarWriter, entryBuffer, entryStream, tarIndex, type TarEntry } from './tar.js';

/**
 * Writing and reading backup archives: a plain tar holding manifest.json and
 * the parts, each part age-encrypted on request. Parts are spooled to a local
 * temporary file (mode 0600, beside the archive) while they are hashed, so
 * the manifest, written first, can carry every checksum.
 */

/** A part spooled to a local file, ready to go into the archive. */
export interface Spooled {
  file: string;
  part: ManifestPart;
}

function hasher(): { t: Transform; digest(): string; size(): number } {
  const h = createHash('sha256');
  let n = 0;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      n += chunk.length;
      cb(null, chunk);
    },
  });
  return { t, digest: () => h.digest('hex'), size: () => n };
}

/** Spool `src` (the part's content) to `tmpFile`, encrypted when `to` is given. */
export async function spoolPart(src: Readable, name: string, tmpFile: string, to: EncryptTo | null): Promise<Spooled> {
  const plain = hasher();
  const stored = hasher();
  const out = createWriteStream(tmpFile, { mode: 0o600, flags: 'wx' });
  try {
    if (to) {
      const tee = new PassThrough();
      const enc = encryptStream(tee, to);
      await Promise.all([pipeline(src, plain.t, tee), enc.then((e) => pipeline(e, stored.t, out))]);
    } else {
      await pipeline(src, plain.t, stored.t, out);
    }
  } catch (e) {
    out.destroy();
    await rm(tmpFile, { force: true });
    throw e;
  }
  const plainSha = plain.digest();
  const storedSha = stored.digest();
  return {
    file: tmpFile,
    part: { name: to ? `${name}.age` : name, sha256: storedSha, size: stored.size(), ...(to ? { plainSha256: plainSha } : {}) },
  };
}

/**
 * Write the archive: manifest first, then the parts, to a temporary name
 * (mode 0600) renamed into place, so a cut-off backup never looks complete.
 * The spooled files are removed.
 */
export async function writeArchive(path: string, manifest: Omit<Manifest, 'parts'>, parts: Spooled[]): Promise<Manifest> {
  const full: Manifest = { ...manifest, parts: parts.map((p) => p.part) };
  const tmp = join(dirname(path), `.${Date.now()}-${process.pid}.k8s-ha-backup.tmp`);
  const out = createWriteStream(tmp, { mode: 0o600, flags: 'wx' });
  const done = new Promise<void>((resolve, reject) => {
    out.once('finish', resolve);
    out.once('error', reject);
  });
  try {
    const tar = new TarWriter(out, Math.floor(Date.parse(manifest.createdAt) / 1000));
    await tar.add(MANIFEST_NAME, Buffer.from(renderManifest(full)));
    for (const p of parts) {
      await tar.addStream(p.part.name, p.part.size, createReadStream(p.file));
    }
    await tar.end();
    out.end();
    await done;
    await chmod(tmp, 0o600);
    await rename(tmp, path);
  } catch (e) {
    out.destroy();
    await rm(tmp, { force: true });
    throw e;
  } finally {
    await Promise.all(parts.map((p) => rm(p.file, { force: true })));
  }
  return full;
}

export interface OpenedArchive {
  path: string;
  manifest: Manifest;
  entries: Map<string, TarEntry>;
  /** File mode and size, for --list. */
  mode: number;
  size: number;
}

export async function openArchive(path: string): Promise<OpenedArchive> {
  const st = await stat(path);
  const entries = new Map((await tarIndex(path)).map((e) => [e.name, e]));
  const m = entries.get(MANIFEST_NAME);
  if (!m) throw new ManifestError(`${path}: no manifest.json in the archive: not a k8s-ha backup`);
  const manifest = parseManifest((await entryBuffer(path, m)).toString('utf8'), path);
  return { path, manifest, entries, mode: st.mode & 0o777, size: st.size };
}

export interface CheckResult {
  /** Each problem found, as a sentence; empty when the archive is sound. */
  problems: string[];
  /** Whether the decrypted content was checked too (a key was given, or nothing is encrypted). */
  contentChecked: boolean;
}

async function sha256OfStream(src: Readable): Promise<{ sha: string; size: number }> {
  const h = hasher();
  const sink = new PassThrough();
  sink.resume();
  await pipeline(src, h.t, sink);
  return { sha: h.digest(), size: h.size() };
}

/** Every part present with its size and sha256; with the key, the decrypted content's sha256 too. */
export async function checkArchive(a: OpenedArchive, key?: DecryptWith): Promise<CheckResult> {
  const problems: string[] = [];
  for (const role of Object.keys(PART) as (keyof typeof PART)[]) {
    if (!partFor(a.manifest, role)) problems.push(`the manifest lists no ${PART[role]} part`);
  }
  const listed = new Set(a.manifest.parts.map((p) => p.name));
  for (const name of a.entries.keys()) if (name !== MANIFEST_NAME && !listed.has(name)) problems.push(`${name} is in the archive but not in the manifest`);
  const encrypted = a.manifest.parts.some((p) => p.plainSha256);
  const canDecrypt = !!(key?.passphrase || key?.identities?.length);
  for (const p of a.manifest.parts) {
    const e = a.entries.get(p.name);
    if (!e) {
      problems.push(`${p.name} is listed in the manifest but missing from the archive`);
      continue;
    }
    if (e.size !== p.size) problems.push(`${p.name} is ${e.size} bytes, the manifest says ${p.size}`);
    const got = await sha256OfStream(entryStream(a.path, e));
    if (got.sha !== p.sha256) {
      problems.push(`${p.name}: sha256 ${got.sha} does not match the manifest's ${p.sha256}`);
      continue;
    }
    if (p.plainSha256 && canDecrypt) {
      const plain = await sha256OfStream(await decryptStream(entryStream(a.path, e), key!, p.name));
      if (plain.sha !== p.plainSha256) problems.push(`${p.name}: decrypted content's sha256 ${plain.sha} does not match the manifest's ${p.plainSha256}`);
    }
  }
  return { problems, contentChecked: !encrypted || canDecrypt };
}

function entryOf(a: OpenedArchive, role: keyof typeof PART): { part: ManifestPart; entry: TarEntry } {
  const part = partFor(a.manifest, role);
  const entry = part && a.entries.get(part.name);
  if (!part || !entry) throw new ManifestError(`${a.path}: no ${PART[role]} part`);
  return { part, entry };
}

export async function readSecretsPart(a: OpenedArchive, key: DecryptWith): Promise<SecretsPart> {
  const { part, entry } = entryOf(a, 'secrets');
  const raw = await entryBuffer(a.path, entry);
  const plain = part.plainSha256 ? await decryptBuffer(raw, key, part.name) : raw;
  const s = JSON.parse(plain.toString('utf8')) as Partial<SecretsPart>;
  if (typeof s.serverToken !== 'string' || !s.serverToken) throw new ManifestError(`${a.path}: ${part.name} holds no server token`);
  const nodePasswords: Record<string, string> = {};
  for (const [node, pw] of Object.entries(s.nodePasswords ?? {})) {
    if (typeof pw !== 'string' || !pw.trim()) throw new ManifestError(`${a.path}: ${part.name} holds a node password for ${node} that is not a text`);
    nodePasswords[node] = pw.trim();
  }
  return { serverToken: s.serverToken, ...(s.agentToken ? { agentToken: s.agentToken } : {}), state: s.state ?? {}, ...(Object.keys(nodePasswords).length ? { nodePasswords } : {}) };
}

/** The dump as SQL text, decrypted and decompressed as it is read. */
export async function dumpSqlStream(a: OpenedArchive, key: DecryptWith): Promise<Readable> {
  const { part, entry } = entryOf(a, 'dump');
  const raw = entryStream(a.path, entry);
  const gz = part.plainSha256 ? await decryptStream(raw, key, part.name) : raw;
  const gunzip = createGunzip();
  gz.once('error', (e) => gunzip.destroy(e));
  return gz.pipe(gunzip);
}
