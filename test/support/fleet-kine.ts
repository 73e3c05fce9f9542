import { createCipheriv, createHash, pbkdf2Sync } from 'node:crypto';
import { parseTuple } from '../../src/backup/bootstrap.js';

/**
 * The kine table in the simulated MariaDB, for backup and restore: rows with
 * ids (kine's revisions), the k3s bootstrap row encrypted with the token the
 * way k3s does it, `mariadb-dump --hex-blob` output and loading that output
 * back. Deterministic: salts and nonces come from the passphrase.
 */

export interface FakeKineRow {
  id: number;
  name: string;
  deleted: number;
  value: Buffer;
}

export interface FakeKineTable {
  rows: FakeKineRow[];
  /** The next id InnoDB hands out. */
  autoIncrement: number;
}

/** k3s's bootstrap encryption (pbkdf2-sha1 4096, AES-256-GCM), with a salt and nonce derived from the passphrase. */
export function encryptBootstrap(passphrase: string, plaintext: string): Buffer {
  const salt = createHash('sha256').update(`salt ${passphrase}`).digest().subarray(0, 8);
  const nonce = createHash('sha256').update(`nonce ${passphrase}`).digest().subarray(0, 12);
  const key = pbkdf2Sync(passphrase, salt, 4096, 32, 'sha1');
  const c = createCipheriv('aes-256-gcm', key, nonce);
  const sealed = Buffer.concat([nonce, c.update(plaintext, 'utf8'), c.final(), c.getAuthTag()]);
  return Buffer.from(`${salt.toString('base64')}:${sealed.toString('base64')}`);
}

export function bootstrapName(passphrase: string): string {
  return `/bootstrap/${createHash('sha256').update(passphrase).digest('hex').slice(0, 12)}`;
}

export function insertRow(t: FakeKineTable, name: string, value: string | Buffer, deleted = 0): FakeKineRow {
  const row = { id: t.autoIncrement, name, deleted, value: Buffer.from(value) };
  t.rows.push(row);
  t.autoIncrement++;
  return row;
}

const sqlStr = (s: string): string => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/** What `mariadb-dump --single-transaction --quick --hex-blob --skip-dump-date DB` prints for the kine table. */
export function renderDump(t: FakeKineTable): string {
  const lines = [
    '/*!40101 SET NAMES utf8mb4 */;',
    'DROP TABLE IF EXISTS `kine`;',
    'CREATE TABLE `kine` (`id` bigint(20) unsigned NOT NULL AUTO_INCREMENT, `name` varchar(630) DEFAULT NULL, `created` int(11) DEFAULT NULL, `deleted` int(11) DEFAULT NULL, ' +
      '`create_revision` bigint(20) unsigned DEFAULT NULL, `prev_revision` bigint(20) unsigned DEFAULT NULL, `lease` int(11) DEFAULT NULL, `value` mediumblob DEFAULT NULL, ' +
      `\`old_value\` mediumblob DEFAULT NULL, PRIMARY KEY (\`id\`)) ENGINE=InnoDB AUTO_INCREMENT=${t.autoIncrement} DEFAULT CHARSET=utf8mb4;`,
  ];
  // As MariaDB 10.11's mariadb-dump writes them: INSERT ... VALUES, then one row per line.
  for (let i = 0; i < t.rows.length; i += 100) {
    const chunk = t.rows.slice(i, i + 100).map((r) => `(${r.id},${sqlStr(r.name)},0,${r.deleted},${r.id},0,0,${r.value.length ? `0x${r.value.toString('hex').toUpperCase()}` : "''"},NULL)`);
    lines.push('INSERT INTO `kine` VALUES', `${chunk.join(',\n')};`);
  }
  return lines.join('\n') + '\n';
}

/** Load a dump as `mariadb DB < dump` would: the table is dropped and made again from it. */
export function loadDump(sql: string): FakeKineTable | null {
  const ai = /AUTO_INCREMENT=(\d+)/.exec(sql);
  if (!/CREATE TABLE `kine`/.test(sql)) return null;
  const t: FakeKineTable = { rows: [], autoIncrement: ai ? Number(ai[1]) : 1 };
  let inKine = false;
  for (const line of sql.split('\n')) {
    if (line.startsWith('INSERT INTO `kine`')) inKine = true;
    if (!inKine) continue;
    if (line.endsWith(';')) inKine = false;
    let i = line.indexOf('(');
    while (i >= 0) {
      const tup = parseTuple(line, i);
      if (!tup) throw new Error('simulated mariadb: ERROR 1064 (42000): syntax error in the dump');
      const [id, name, , deleted, , , , value] = tup.values;
      t.rows.push({ id: Number(id), name: String(name), deleted: Number(deleted), value: Buffer.isBuffer(value) ? value : Buffer.from(String(value ?? '')) });
      i = line.indexOf('(', tup.end);
    }
  }
  for (const r of t.rows) if (r.id >= t.autoIncrement) t.autoIncrement = r.id + 1;
  return t;
}
