/**
 * Loading a cluster file: YAML -> schema (with defaults) -> cross-field
 * checks -> resolved Cluster. Every stage adds to one list of diagnostics;
 * a Cluster is returned only when none of them is an error.
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { LineCounter, parseDocument } from 'yaml';
import { CHECK_GROUPS } from './checks.js';
import { resolveCluster, type Cluster } from './cluster.js';
import { localFileProblems, type LocalFileOptions } from './local-files.js';
import { attachPositions, error, hasErrors, sortDiagnostics, type Diagnostic } from './diagnostics.js';
import { ClusterFileSchema, type ClusterFile, type HostFile } from './schema.js';
import { schemaDiagnostics } from './schema-errors.js';

export type Env = Readonly<Record<string, string | undefined>>;

/** A cluster file is a few kilobytes; anything past this is a mistake or an attack. */
export const MAX_FILE_BYTES = 1024 * 1024;
/** Aliases expanded at most this many times (the yaml library's own default is 100 per document). */
const MAX_ALIAS_COUNT = 100;

export interface LoadResult {
  /** Present when there is no error (warnings allowed). */
  cluster?: Cluster;
  /** Errors first, then warnings, each in file order. */
  diagnostics: Diagnostic[];
}

/**
 * Parse and check a cluster file's text. Pure: no file is read; `fileName`
 * only places relative paths (resolved against its directory).
 */
export function parseCluster(text: string, fileName: string, env: Env, removal: Removal = {}): LoadResult {
  return analyse(text, fileName, env, () => [], removal);
}

/**
 * `k8s-ha node remove NAME` for one run: the named hosts are taken as if
 * they carried `remove: true`, so every check (the last server, a load
 * balancer host, ...) refuses exactly what it refuses in the file. A host no
 * longer in the file but recorded in the state file (`vanished`) is added
 * back with the top-level ssh settings, to be removed.
 */
export interface Removal {
  remove?: readonly string[];
  vanished?: readonly { name: string; address: string; roles: readonly string[] }[];
}

function markRemovals(file: ClusterFile, r: Removal): Diagnostic[] {
  if (!Array.isArray(file.hosts)) return [];
  for (const v of r.vanished ?? []) {
    if (file.hosts.some((h) => h.name === v.name)) continue;
    file.hosts.push({ name: v.name, address: v.address, roles: [...v.roles] as HostFile['roles'], remove: true });
  }
  const out: Diagnostic[] = [];
  for (const name of r.remove ?? []) {
    const h = file.hosts.find((x) => x.name === name);
    if (h) h.remove = true;
    else out.push(error('hosts', `no host named "${name}" in the cluster file or the state file`, `give the name of a host to remove: ${file.hosts.map((x) => x.name).join(', ')}`));
  }
  return out;
}

/** The pipeline; `extra` adds checks on the resolved cluster (loadClusterFile's file checks). */
function analyse(text: string, fileName: string, env: Env, extra: (c: Cluster, f: ClusterFile) => Diagnostic[], removal: Removal = {}): LoadResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const diagnostics: Diagnostic[] = [];

  if (doc.errors.length) {
    for (const e of doc.errors) {
      // prettyErrors would add positions but also a source excerpt to the message.
      const pos = lineCounter.linePos(e.pos[0]);
      diagnostics.push({
        severity: 'error',
        path: '',
        message: `YAML: ${e.message.split('\n')[0]}`,
        hint: yamlHint(e.code),
        line: pos.line,
        column: pos.col,
      });
    }
    return { diagnostics };
  }
  // The YAML library's warnings are the user's problems too. An unknown tag
  // (`!secret`, `!env`) would quietly become the plain text after it.
  for (const w of doc.warnings) {
    const pos = lineCounter.linePos(w.pos[0]);
    const tag = w.code === 'TAG_RESOLVE_FAILED';
    diagnostics.push({
      severity: tag ? 'error' : 'warning',
      path: '',
      message: `YAML: ${w.message.split('\n')[0]}`,
      hint: tag
        ? 'k8s-ha knows no YAML tags: write a secret as "generate", "${env:NAME}" or {file: PATH}, and drop the tag'
        : 'fix the YAML at this position',
      line: pos.line,
      column: pos.col,
    });
  }

  let raw: unknown;
  try {
    // Aliases are expanded here: a "billion laughs" file is refused, not expanded.
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    diagnostics.push({ ...error('', `YAML: ${(e as Error).message}`, 'write the values out instead of nesting aliases (*name) of aliases'), line: 1, column: 1 });
    return { diagnostics: sortDiagnostics(diagnostics) };
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    diagnostics.push({ ...error('', 'the file is not a mapping of cluster settings', 'start from `k8s-ha init` or examples/seed.yaml'), line: 1, column: 1 });
    return { diagnostics };
  }

  const file = Value.Default(ClusterFileSchema, Value.Clone(raw)) as ClusterFile;
  const schemaProblems = schemaDiagnostics(ClusterFileSchema, file);
  diagnostics.push(...schemaProblems);
  if (!schemaProblems.length) diagnostics.push(...markRemovals(file, removal));

  // With a sound file every check runs; otherwise only those whose sections passed.
  const sound = (key: keyof ClusterFile) => !schemaProblems.some((d) => d.path === key || d.path.startsWith(`${key}.`) || d.path.startsWith(`${key}[`) || d.path === '');
  for (const group of CHECK_GROUPS) {
    if (group.needs.every(sound)) diagnostics.push(...group.run(file));
  }

  let cluster: Cluster | undefined;
  if (schemaProblems.length === 0) {
    cluster = resolveCluster(file, { env, baseDir: dirname(resolvePath(fileName)) }, diagnostics);
    diagnostics.push(...extra(cluster, file));
  }

  attachPositions(diagnostics, doc, lineCounter);
  const sorted = sortDiagnostics(diagnostics);
  return hasErrors(sorted) || !cluster ? { diagnostics: sorted } : { cluster, diagnostics: sorted };
}

/**
 * Read and check a cluster file, then the local files it names (secrets, SSH
 * keys, the k3s binary and its version, a MetalLB manifest and its digest).
 */
export function loadClusterFile(path: string, env: Env, opts: LocalFileOptions & Removal = {}): LoadResult {
  let text: string;
  try {
    const size = statSync(path).size;
    if (size > MAX_FILE_BYTES) {
      return { diagnostics: [error('', `${path} is ${size} bytes, more than a cluster file can be (${MAX_FILE_BYTES})`, 'give the path of the cluster file itself')] };
    }
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message;
    return { diagnostics: [error('', `cannot read ${path}: ${reason}`, 'give the path of a cluster file, or write one with `k8s-ha init`')] };
  }
  return analyse(text, path, env, (c, f) => localFileProblems(f, c, opts), opts);
}

function yamlHint(code: string): string {
  switch (code) {
    case 'DUPLICATE_KEY':
      return 'remove or merge the repeated key';
    case 'BAD_INDENT':
    case 'MISSING_CHAR':
      return 'check the indentation: nested fields go two spaces further in than their key';
    case 'TAB_AS_INDENT':
      return 'indent with spaces, not tabs';
    default:
      return 'fix the YAML syntax at this position';
  }
}
