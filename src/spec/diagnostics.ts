/**
 * Problems found in a cluster file. Every stage (YAML parsing, the schema,
 * the cross-field checks) adds to one list, so a user sees every problem of a
 * file at once. Each one names a dotted path (hosts[2].address) and, where the
 * YAML source is known, a line and column.
 */
import { isMap, isScalar, isSeq, LineCounter, type Document, type Node } from 'yaml';

export type Severity = 'error' | 'warning';

export interface Diagnostic {
  severity: Severity;
  /** Dotted path into the file, e.g. `hosts[2].address`; '' for the whole file. */
  path: string;
  /** What is wrong, as a sentence fragment without a trailing period. */
  message: string;
  /** How to fix it. */
  hint?: string;
  /** 1-based position in the YAML source, when known. */
  line?: number;
  column?: number;
}

/** One step of a path: a map key or a list index. */
export type PathSegment = string | number;

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** ['hosts', 2, 'address'] -> 'hosts[2].address'; odd keys are quoted: labels["a.b/c"]. */
export function formatPath(segments: readonly PathSegment[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (PLAIN_KEY.test(s)) out += out === '' ? s : `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

/** The inverse of formatPath. */
export function parsePath(path: string): PathSegment[] {
  const out: PathSegment[] = [];
  const re = /([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/g;
  for (const m of path.matchAll(re)) {
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push(Number(m[2]));
    else if (m[3] !== undefined) out.push(JSON.parse(m[3]) as string);
  }
  return out;
}

/** A JSON pointer (/hosts/2/address, as TypeBox reports) as path segments. */
export function pointerToSegments(pointer: string): PathSegment[] {
  if (pointer === '' || pointer === '/') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((p) => (/^(0|[1-9][0-9]*)$/.test(p) ? Number(p) : p));
}

export function error(path: string, message: string, hint: string): Diagnostic {
  return { severity: 'error', path, message, hint };
}

export function warning(path: string, message: string, hint: string): Diagnostic {
  return { severity: 'warning', path, message, hint };
}

export function hasErrors(list: readonly Diagnostic[]): boolean {
  return list.some((d) => d.severity === 'error');
}

/**
 * Source offset of the deepest node on `segments`. With `atKey`, the offset of
 * the last step's key rather than its value (an unknown field is best shown
 * at its name). A path that leaves the document stops at the last node found,
 * which is where a missing field would have to be added.
 */
export function locate(doc: Document, segments: readonly PathSegment[], atKey = false): number | undefined {
  let node: Node | null | undefined = doc.contents as Node | null;
  let offset = node?.range?.[0];
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    const last = i === segments.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg));
      if (!pair) break;
      const key = pair.key as Node | null;
      if (last && atKey && key?.range) return key.range[0];
      node = pair.value as Node | null;
      // A key with no value (`ssh:`) has no node of its own: point at the key.
      offset = node?.range?.[0] ?? key?.range?.[0] ?? offset;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as Node | undefined;
      if (!item) break;
      node = item;
      offset = item.range?.[0] ?? offset;
    } else {
      break;
    }
  }
  return offset;
}

/** Fill in line and column for diagnostics that have none, from their paths. */
export function attachPositions(list: Diagnostic[], doc: Document, lineCounter: LineCounter): void {
  for (const d of list) {
    if (d.line !== undefined) continue;
    const offset = locate(doc, parsePath(d.path), d.message.startsWith('unknown field'));
    if (offset === undefined) continue;
    const pos = lineCounter.linePos(offset);
    d.line = pos.line;
    d.column = pos.col;
  }
}

/**
 * One line per problem, errors first, in file order:
 * `seed.yaml:14:14 error hosts[2].address: "192.168.0.1x" is not an IPv4 address or host name — fix: ...`
 */
export function formatDiagnostics(list: readonly Diagnostic[], fileName: string): string {
  return sortDiagnostics(list)
    .map((d) => {
      const where = d.line !== undefined ? `${fileName}:${d.line}:${d.column ?? 1}` : fileName;
      const path = d.path === '' ? '' : ` ${d.path}:`;
      const hint = d.hint ? ` — fix: ${d.hint}` : '';
      return `${where} ${d.severity}${path} ${d.message}${hint}`;
    })
    .join('\n');
}

/** Errors before warnings, then by position, then by path; stable otherwise. */
export function sortDiagnostics(list: readonly Diagnostic[]): Diagnostic[] {
  const rank = (d: Diagnostic) => (d.severity === 'error' ? 0 : 1);
  return [...list].sort(
    (a, b) =>
      rank(a) - rank(b) ||
      (a.line ?? Number.MAX_SAFE_INTEGER) - (b.line ?? Number.MAX_SAFE_INTEGER) ||
      (a.column ?? 0) - (b.column ?? 0) ||
      a.path.localeCompare(b.path),
  );
}
