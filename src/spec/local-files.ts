/**
 * The local files a cluster file names, checked when it is loaded, before any
 * host is contacted: secret files, SSH keys, the k3s binary for an air-gapped
 * install and the MetalLB manifest. Each problem points at the field naming
 * the file. This is the only part of loading that reads more than the cluster
 * file itself (and runs the k3s binary's `--version`).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, readdirSync, statSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import type { Cluster, SecretRef } from './cluster.js';
import { CONTROL } from './checks-values.js';
import { error, type Diagnostic } from './diagnostics.js';
import type { ClusterFile } from './schema.js';

export interface LocalFileOptions {
  /** Check SSH key files (default true; false when hosts are not reached over SSH, as in tests). */
  sshKeys?: boolean;
}

const RELATIVE = "relative paths start at the cluster file's directory";

/** stat, or the reason it failed in words. */
function statOf(p: string): Stats | string {
  try {
    return statSync(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'cannot be read (permission denied)' : (e as Error).message;
  }
}

/** The file's bytes, or the reason it cannot be read. */
function read(p: string, limit?: number): Buffer | string {
  try {
    if (limit === undefined) return readFileSync(p);
    const fd = openSync(p, 'r');
    try {
      const buf = Buffer.alloc(limit);
      return buf.subarray(0, readSync(fd, buf, 0, limit, 0));
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'EACCES' ? 'cannot be read (permission denied)' : (e as Error).message;
  }
}

/** A regular, readable file at `p`, or a diagnostic at `path`. */
function regularFile(p: string, path: string, what: string, out: Diagnostic[]): boolean {
  const st = statOf(p);
  if (typeof st === 'string') {
    out.push(error(path, `${what} ${p} ${st}`, `create it, or correct the path (${RELATIVE})`));
    return false;
  }
  if (st.isDirectory()) {
    out.push(error(path, `${what} ${p} is a directory`, `name the file itself (${RELATIVE})`));
    return false;
  }
  return true;
}

function secretFile(r: SecretRef | undefined, path: string, out: Diagnostic[]): void {
  if (r?.source !== 'file') return;
  const at = `${path}.file`;
  if (!regularFile(r.path, at, 'secret file', out)) return;
  const body = read(r.path);
  if (typeof body === 'string') return void out.push(error(at, `secret file ${r.path} ${body}`, 'make it readable by the user running k8s-ha (and no one else: chmod 600)'));
  // run.ts reads the value trimmed; what is left must be one line.
  const text = body.toString('utf8').trim();
  if (text === '') out.push(error(at, `secret file ${r.path} is empty`, 'write the secret into it, or use "generate" to have one made and kept in the state file'));
  else if (CONTROL.test(text)) out.push(error(at, `secret file ${r.path} holds more than one line (or a control character)`, 'keep only the secret in it, on one line'));
}

/** Key files by the field that names them: a host's own, else the top-level one. */
function keyFiles(f: ClusterFile, c: Cluster): { path: string; file: string }[] {
  const out: { path: string; file: string }[] = [];
  const seen = new Set<string>();
  c.hosts.forEach((h, i) => {
    const file = h.ssh.keyFile;
    if (file === undefined || seen.has(file)) return;
    seen.add(file);
    out.push({ path: f.hosts[i]?.ssh?.keyFile !== undefined ? `hosts[${i}].ssh.keyFile` : 'ssh.keyFile', file });
  });
  return out;
}

function keyFile(k: { path: string; file: string }, out: Diagnostic[]): void {
  if (k.file.startsWith('~')) {
    return void out.push(error(k.path, `key file ${k.file}: HOME is not set, so ~ cannot be expanded`, 'write the absolute path of the key, or set HOME'));
  }
  if (!regularFile(k.file, k.path, 'key file', out)) return;
  const head = read(k.file, 4096);
  if (typeof head === 'string') return void out.push(error(k.path, `key file ${k.file} ${head}`, 'make it readable by the user running k8s-ha (chmod 600)'));
  // OpenSSH ("-----BEGIN OPENSSH PRIVATE KEY-----") and PEM keys say so in
  // their first line; a .pub file or a certificate does not.
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(head.toString('latin1'))) {
    out.push(error(k.path, `key file ${k.file} is not a private key${k.file.endsWith('.pub') ? ' (it is the public half)' : ''}`, 'name the private key file (for example ~/.ssh/id_ed25519, not id_ed25519.pub)'));
  }
}

/** ELF e_machine values of the architectures k3s ships, against Node's names for this machine. */
const ELF_MACHINE: Record<number, string> = { 62: 'x64', 183: 'arm64', 40: 'arm' };

/** The binaries an install.path names: the file, or a release-like folder's k3s, k3s-arm64, k3s-armhf. */
function k3sBinaries(p: string, path: string, out: Diagnostic[]): string[] {
  const st = statOf(p);
  if (typeof st === 'string') return void out.push(error(path, `k3s binary ${p} ${st}`, `give the path of the k3s binary (${RELATIVE})`)), [];
  if (!st.isDirectory()) return [p];
  const names = readdirSync(p).filter((n) => ['k3s', 'k3s-arm64', 'k3s-armhf'].includes(n));
  if (!names.length) out.push(error(path, `folder ${p} holds no k3s, k3s-arm64 or k3s-armhf`, 'name the k3s binary, or a folder laid out like a release download'));
  return names.sort().map((n) => join(p, n));
}

/**
 * The binary is an executable (ELF, or a script) of this machine or another
 * architecture; one this machine can run is asked for its version, which must be the one
 * the file pins. A build that is not a k3s release (the lab's stand-in says
 * v1.37.2+labk3s) is held to the Kubernetes release only.
 */
function k3sBinary(bin: string, path: string, pinned: string | undefined, out: Diagnostic[]): void {
  const head = read(bin, 20);
  if (typeof head === 'string') return void out.push(error(path, `k3s binary ${bin} ${head}`, 'make it readable by the user running k8s-ha'));
  // A script (a wrapper, or a test's stand-in) is run like a program.
  const script = head.subarray(0, 2).toString('latin1') === '#!';
  if (!script && (head.length < 20 || head.readUInt32BE(0) !== 0x7f454c46)) {
    return void out.push(error(path, `${bin} is not a program (no ELF header): not a k3s binary`, 'name the k3s binary of the release (not install.sh or an archive)'));
  }
  if (!script) {
    const arch = ELF_MACHINE[head.readUInt16LE(18)];
    if (arch === undefined) return void out.push(error(path, `${bin} is a program for an architecture k3s does not ship`, 'use the k3s binary for amd64, arm64 or armhf'));
    if (arch !== process.arch) return; // built for the hosts, not for this machine: cannot be asked here
  }
  if (((statSync(bin).mode) & 0o111) === 0) {
    return void out.push(error(path, `${bin} is not executable, so its version cannot be read`, `chmod +x ${bin} (k8s-ha runs \`${bin} --version\` to check it is ${pinned ?? 'the k3s release'} you pinned)`));
  }
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 5_000, stdio: ['ignore', 'pipe', 'pipe'] });
  const got = /k3s version (v\S+)/.exec(r.stdout ?? '')?.[1];
  if (r.error || r.status !== 0 || !got) {
    const why = r.error ? r.error.message : r.status === null ? `stopped by ${r.signal}` : got ? `exit ${r.status}` : 'it printed no "k3s version ..." line';
    return void out.push(error(path, `${bin} --version did not answer like k3s (${why})`, 'name the k3s binary of the release'));
  }
  if (pinned === undefined) return;
  const release = /\+k3s[0-9]+$/.test(got);
  const same = release ? got === pinned : got.split('+')[0] === pinned.split('+')[0];
  if (!same) out.push(error(path, `${bin} is k3s ${got}, but k3s.version is ${pinned}`, `use the ${pinned} binary, or set k3s.version: ${release ? got : `${got.split('+')[0]}+k3s1`}`));
}

function metallbManifest(c: Cluster, out: Diagnostic[]): void {
  const m = c.metallb?.manifest;
  if (!m?.file) return;
  const path = 'metallb.manifest.file';
  if (!regularFile(m.file, path, 'MetalLB manifest', out) || m.sha256 === undefined) return;
  const body = read(m.file);
  if (typeof body === 'string') return void out.push(error(path, `MetalLB manifest ${m.file} ${body}`, 'make it readable by the user running k8s-ha'));
  const got = createHash('sha256').update(body).digest('hex');
  if (got !== m.sha256) {
    out.push(error('metallb.manifest.sha256', `${m.file} has sha256 ${got}, not ${m.sha256}`, `check the file (it is not the one you meant), or set sha256: ${got} if you trust it`));
  }
}

/** Every problem with the local files the cluster names. */
export function localFileProblems(f: ClusterFile, c: Cluster, opts: LocalFileOptions = {}): Diagnostic[] {
  const out: Diagnostic[] = [];
  secretFile(c.datastore.password, 'datastore.password', out);
  secretFile(c.k3s.token, 'k3s.token', out);
  secretFile(c.k3s.agentToken, 'k3s.agentToken', out);
  if (opts.sshKeys !== false) for (const k of keyFiles(f, c)) keyFile(k, out);
  const inst = c.k3s.install;
  if (inst.source === 'local' && inst.path !== undefined) {
    for (const bin of k3sBinaries(inst.path, 'k3s.install.path', out)) k3sBinary(bin, 'k3s.install.path', c.k3s.version, out);
  }
  if (inst.airgapImages !== undefined) {
    const st = statOf(inst.airgapImages);
    if (typeof st === 'string') out.push(error('k3s.install.airgapImages', `air-gap images ${inst.airgapImages} ${st}`, `give the images tarball or a folder of them (${RELATIVE})`));
  }
  metallbManifest(c, out);
  return out;
}
