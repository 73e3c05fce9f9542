import { createDecipheriv, createHash, pbkdf2Sync } from 'node:crypto';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { tokenPassphrase } from '../phases/k3s-token.js';

/**
 * Whether a token opens the bootstrap data in a kine dump, before any data
 * is replaced. k3s keeps its CAs and keys in the datastore under
 * `/bootstrap/<first 12 hex of sha256(passphrase)>`, encrypted with a key
 * derived from the token's secret part (pbkdf2-sha1, 4096 rounds, 8-byte
 * salt, AES-256-GCM; stored as `base64(salt):base64(nonce|ciphertext)`).
 * A server started with a token that cannot open it fails with "bootstrap
 * data already found and encrypted with different token" (FACTS).
 */

export const BOOTSTRAP_PREFIX = '/bootstrap/';

export function bootstrapKey(token: string): string {
  return BOOTSTRAP_PREFIX + createHash('sha256').update(tokenPassphrase(token)).digest('hex').slice(0, 12);
}

export function decryptBootstrap(token: string, stored: Buffer): Buffer {
  const text = stored.toString('utf8');
  const i = text.indexOf(':');
  if (i < 0) throw new Error('the bootstrap value is not salt:data');
  const salt = Buffer.from(text.slice(0, i), 'base64');
  const sealed = Buffer.from(text.slice(i + 1), 'base64');
  const key = pbkdf2Sync(tokenPassphrase(token), salt, 4096, 32, 'sha1');
  if (sealed.length < 12 + 16) throw new Error('the bootstrap value is too short');
  const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  return Buffer.concat([d.update(sealed.subarray(12, sealed.length - 16)), d.final()]);
}

/** One row of the kine table as the dump has it. */
export interface KineRow {
  id: number;
  name: string;
  deleted: number;
  value: Buffer;
}

/**
 * Parse the SQL value tuple that starts at `s[start] === '('`: numbers,
 * quoted strings (backslash escapes as mariadb-dump writes them), 0x hex
 * (--hex-blob), NULL. Returns the values and where the tuple ends, or null
 * when the text ends first.
 */
export function parseTuple(s: string, start: number): { values: (string | number | Buffer | null)[]; end: number } | null {
  const values: (string | number | Buffer | null)[] = [];
  let i = start + 1;
  for (;;) {
    const c = s[i];
    if (c === undefined) return null;
    if (c === "'") {
      let out = '';
      i++;
      for (;;) {
        const ch = s[i];
        if (ch === undefined) return null;
        if (ch === '\\') {
          const n = s[i + 1];
          if (n === undefined) return null;
          out += n === '0' ? '\0' : n === 'n' ? '\n' : n === 'r' ? '\r' : n === 't' ? '\t' : n === 'Z' ? '\x1a' : n;
          i += 2;
        } else if (ch === "'") {
          if (s[i + 1] === "'") {
            out += "'";
            i += 2;
          } else {
            i++;
            break;
          }
        } else {
          out += ch;
          i++;
        }
      }
      values.push(out);
    } else {
      let j = i;
      while (s[j] !== undefined && s[j] !== ',' && s[j] !== ')') j++;
      if (s[j] === undefined) return null;
      const tok = s.slice(i, j).trim();
      if (tok === 'NULL') values.push(null);
      else if (/^0x[0-9A-Fa-f]*$/.test(tok)) values.push(Buffer.from(tok.slice(2), 'hex'));
      else values.push(Number(tok));
      i = j;
    }
    if (s[i] === ',') i++;
    else if (s[i] === ')') return { values, end: i + 1 };
    else return null;
  }
}

/** kine's columns: id, name, created, deleted, create_revision, prev_revision, lease, value, old_value. */
function toRow(v: (string | number | Buffer | null)[]): KineRow | null {
  const [id, name, , deleted, , , , value] = v;
  if (typeof id !== 'number' || typeof name !== 'string') return null;
  const val = Buffer.isBuffer(value) ? value : typeof value === 'string' ? Buffer.from(value, 'latin1') : Buffer.alloc(0);
  return { id, name, deleted: typeof deleted === 'number' ? deleted : 0, value: val };
}

export interface DumpFacts {
  /** The newest live row of each /bootstrap/ key. */
  bootstrap: Map<string, KineRow>;
  /** The highest row id in the dump (kine's revision at the time of the dump). */
  maxId: number;
  rows: number;
}

/** Read a kine dump once: its bootstrap rows, highest id and row count. */
export async function scanDump(sql: Readable): Promise<DumpFacts> {
  const facts: DumpFacts = { bootstrap: new Map(), maxId: 0, rows: 0 };
  const lines = createInterface({ input: sql, crlfDelay: Infinity });
  // MariaDB 10.11's mariadb-dump writes `INSERT INTO \`kine\` VALUES` and then
  // one row per line, the statement's last ending in `;`; older dumps put
  // all rows on the INSERT line. Escapes keep every row on one line.
  let inKine = false;
  for await (const line of lines) {
    if (line.startsWith('INSERT INTO `kine`')) inKine = true;
    else if (line.startsWith('INSERT INTO ')) inKine = false;
    if (!inKine) continue;
    if (line.endsWith(';')) inKine = false;
    let i = line.startsWith('INSERT INTO `kine`') ? line.indexOf('(') : line.startsWith('(') ? 0 : -1;
    while (i >= 0) {
      const t = parseTuple(line, i);
      if (!t) break;
      const row = toRow(t.values);
      if (row) {
        facts.rows++;
        if (row.id > facts.maxId) facts.maxId = row.id;
        if (row.name.startsWith(BOOTSTRAP_PREFIX)) {
          const cur = facts.bootstrap.get(row.name);
          if (!cur || row.id > cur.id) facts.bootstrap.set(row.name, row);
        }
      }
      i = line.indexOf('(', t.end);
    }
  }
  return facts;
}

/** Why this token cannot restore this dump, or null when it opens the bootstrap data. */
export function tokenProblem(token: string, facts: DumpFacts): string | null {
  const live = [...facts.bootstrap.values()].filter((r) => r.deleted === 0);
  if (!live.length) return 'the dump holds no k3s bootstrap data (/bootstrap/...): it is not the datastore of a k3s cluster that has started';
  const key = bootstrapKey(token);
  const row = live.find((r) => r.name === key);
  if (!row) return `the dump's bootstrap data is stored under ${live.map((r) => r.name).join(', ')}, not under ${key} where this token's would be: the token belongs to another cluster`;
  try {
    decryptBootstrap(token, row.value);
    return null;
  } catch (e) {
    return `the token does not decrypt the dump's bootstrap data (${(e as Error).message})`;
  }
}
