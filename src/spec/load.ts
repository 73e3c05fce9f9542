/**
 * Loading a cluster file: YAML -> schema (with defaults) -> cross-field
 * checks -> resolved Cluster. Every stage adds to one list of diagnostics;
 * a Cluster is returned only when none of them is an error.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { LineCounter, parseDocument } from 'yaml';
import { CHECK_GROUPS } from './checks.js';
import { resolveCluster, type Cluster, type SecretRef } from './cluster.js';
import { attachPositions, error, hasErrors, sortDiagnostics, type Diagnostic } from './diagnostics.js';
import { ClusterFileSchema, type ClusterFile } from './schema.js';
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
export function parseCluster(text: string, fileName: string, env: Env): LoadResult {
  return analyse(text, fileName, env, () => []);
}

/** The pipeline; `extra` adds checks on the resolved cluster (loadClusterFile's file checks). */
function analyse(text: string, fileName: string, env: Env, extra: (c: Cluster) => Diagnostic[]): LoadResult {
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

  // With a sound file every check runs; otherwise only those whose sections passed.
  const sound = (key: keyof ClusterFile) => !schemaProblems.some((d) => d.path === key || d.path.startsWith(`${key}.`) || d.path.startsWith(`${key}[`) || d.path === '');
  for (const group of CHECK_GROUPS) {
    if (group.needs.every(sound)) diagnostics.push(...group.run(file));
  }

  let cluster: Cluster | undefined;
  if (schemaProblems.length === 0) {
    cluster = resolveCluster(file, { env, baseDir: dirname(resolvePath(fileName)) }, diagnostics);
    diagnostics.push(...extra(cluster));
  }

  attachPositions(diagnostics, doc, lineCounter);
  const sorted = sortDiagnostics(diagnostics);
  return hasErrors(sorted) || !cluster ? { diagnostics: sorted } : { cluster, diagnostics: sorted };
}

/**
 * Read and check a cluster file, then check that the local files it names
 * (secrets, the k3s binary, a MetalLB manifest) exist.
 */
export function loadClusterFile(path: string, env: Env): LoadResult {
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
  return analyse(text, path, env, missingLocalFiles);
}

/** Local files the cluster refers to that do not exist. */
function missingLocalFiles(c: Cluster): Diagnostic[] {
  const out: Diagnostic[] = [];
  const check = (p: string | undefined, path: string, what: string) => {
    if (p !== undefined && !existsSync(p)) out.push(error(path, `${what} ${p} does not exist`, `create it, or correct the path (relative paths start at the cluster file's directory)`));
  };
  const ref = (r: SecretRef | undefined, path: string) => (r?.source === 'file' ? check(r.path, `${path}.file`, 'secret file') : undefined);
  ref(c.datastore.password, 'datastore.password');
  ref(c.k3s.token, 'k3s.token');
  ref(c.k3s.agentToken, 'k3s.agentToken');
  check(c.k3s.install.path, 'k3s.install.path', 'k3s binary');
  check(c.k3s.install.airgapImages, 'k3s.install.airgapImages', 'air-gap images');
  check(c.metallb?.manifest?.file, 'metallb.manifest.file', 'MetalLB manifest');
  return out;
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
