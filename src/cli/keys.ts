import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { UserError } from '../engine/errors.js';
import { Secret } from '../util/secret.js';
import { checkEncryptTo, RecipientError, type DecryptWith, type EncryptTo } from '../backup/crypt.js';

/**
 * The backup commands' key flags. A passphrase comes from an environment
 * variable or a file, never from the command line (it would show in `ps`).
 */
export const keyFlags = {
  'passphrase-env': { type: 'string' },
  'passphrase-file': { type: 'string' },
  recipient: { type: 'string', multiple: true },
  identity: { type: 'string', multiple: true },
} as const;

export interface KeyValues {
  'passphrase-env'?: string;
  'passphrase-file'?: string;
  recipient?: string[];
  identity?: string[];
}

async function passphrase(cmd: string, v: KeyValues, env: NodeJS.ProcessEnv, cwd: string): Promise<Secret | undefined> {
  if (v['passphrase-env'] !== undefined && v['passphrase-file'] !== undefined) {
    throw new UserError(`${cmd}: --passphrase-env and --passphrase-file exclude each other: give the passphrase one way`);
  }
  if (v['passphrase-env'] !== undefined) {
    const val = env[v['passphrase-env']];
    if (!val) throw new UserError(`${cmd}: --passphrase-env ${v['passphrase-env']}: that environment variable is not set or empty; export it first`);
    return new Secret(val);
  }
  if (v['passphrase-file'] !== undefined) {
    const p = resolve(cwd, v['passphrase-file']);
    const text = await readFile(p, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new UserError(`${cmd}: --passphrase-file ${p}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    });
    const val = text.replace(/\r?\n$/, '');
    if (!val) throw new UserError(`${cmd}: --passphrase-file ${p} is empty`);
    return new Secret(val);
  }
  return undefined;
}

/** How `backup` encrypts: null when no key flag is given. */
export async function encryptToFromFlags(v: KeyValues, env: NodeJS.ProcessEnv, cwd: string): Promise<EncryptTo | null> {
  if (v.identity?.length) throw new UserError('backup: --identity is for reading a backup (restore, --check); to encrypt to a key, give its public side with --recipient age1...');
  const pass = await passphrase('backup', v, env, cwd);
  const recipients = v.recipient ?? [];
  if (pass && recipients.length) throw new UserError('backup: a passphrase and --recipient exclude each other (age encrypts to one or the other)');
  if (pass) return { passphrase: pass };
  if (!recipients.length) return null;
  const to: EncryptTo = { recipients };
  try {
    checkEncryptTo(to);
  } catch (e) {
    if (e instanceof RecipientError) throw new UserError(`backup: ${e.message}`);
    throw e;
  }
  return to;
}

/** What may decrypt an archive (restore, --check). */
export async function decryptWithFromFlags(cmd: string, v: KeyValues, env: NodeJS.ProcessEnv, cwd: string): Promise<DecryptWith> {
  if (v.recipient?.length) throw new UserError(`${cmd}: --recipient is for making a backup; to read one, give the private key with --identity FILE`);
  const pass = await passphrase(cmd, v, env, cwd);
  const identities: Secret[] = [];
  for (const f of v.identity ?? []) {
    const p = resolve(cwd, f);
    const text = await readFile(p, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new UserError(`${cmd}: --identity ${p}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    });
    const keys = text.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('AGE-SECRET-KEY-'));
    if (!keys.length) throw new UserError(`${cmd}: --identity ${p} holds no age identity (a line starting AGE-SECRET-KEY-1; \`age-keygen -o FILE\` makes one)`);
    identities.push(...keys.map((k) => new Secret(k)));
  }
  return { ...(pass ? { passphrase: pass } : {}), identities };
}
