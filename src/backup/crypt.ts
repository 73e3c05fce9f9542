import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Decrypter, Encrypter } from 'age-encryption';
import type { Secret } from '../util/secret.js';
import type { Encryption } from './manifest.js';

/**
 * Encryption of a backup's parts with age (age-encryption.org), through
 * `age-encryption` on npm: the TypeScript implementation by age's own author
 * (FiloSottile/typage), built on the audited noble crypto libraries, with
 * streaming so a large dump is never held whole. An encrypted part is a
 * standard age file: `age -d` decrypts it without k8s-ha.
 */

/** How to encrypt: a passphrase (scrypt) or age recipients (`age1...`). */
export type EncryptTo = { passphrase: Secret; workFactor?: number } | { recipients: string[] };

/** What may decrypt: a passphrase and/or identities (`AGE-SECRET-KEY-1...`). */
export interface DecryptWith {
  passphrase?: Secret;
  identities?: Secret[];
}

export function encryptionOf(to: EncryptTo | null): Encryption | null {
  if (!to) return null;
  return 'passphrase' in to ? { to: 'passphrase' } : { to: 'recipients', recipients: [...to.recipients] };
}

/** A bad recipient, as the user typed it. */
export class RecipientError extends Error {}

function encrypter(to: EncryptTo): Encrypter {
  const e = new Encrypter();
  if ('passphrase' in to) {
    e.setPassphrase(to.passphrase.reveal());
    if (to.workFactor) e.setScryptWorkFactor(to.workFactor);
  } else {
    for (const r of to.recipients) {
      try {
        e.addRecipient(r);
      } catch (err) {
        throw new RecipientError(`--recipient ${r}: not an age recipient (${(err as Error).message}); an age recipient starts with age1 (\`age-keygen -y KEYFILE\` prints it)`);
      }
    }
  }
  return e;
}

/** Check recipients before any host is contacted. */
export function checkEncryptTo(to: EncryptTo): void {
  encrypter(to);
}

/** The stream, encrypted. */
export async function encryptStream(src: Readable, to: EncryptTo): Promise<Readable> {
  const web = Readable.toWeb(src) as unknown as ReadableStream<Uint8Array>;
  const out = await encrypter(to).encrypt(web);
  return Readable.fromWeb(out as unknown as WebReadableStream<Uint8Array>);
}

export async function encryptBuffer(data: Buffer, to: EncryptTo): Promise<Buffer> {
  return Buffer.from(await encrypter(to).encrypt(new Uint8Array(data)));
}

/** The key given cannot open this part (or none was given). */
export class DecryptError extends Error {}

function decrypter(w: DecryptWith): Decrypter {
  const d = new Decrypter();
  if (w.passphrase) d.addPassphrase(w.passphrase.reveal());
  for (const id of w.identities ?? []) {
    try {
      d.addIdentity(id.reveal());
    } catch {
      throw new DecryptError('the identity file holds no age identity (a line starting AGE-SECRET-KEY-1)');
    }
  }
  return d;
}

function decryptFailure(what: string, e: unknown): DecryptError {
  const msg = e instanceof Error ? e.message : String(e);
  return new DecryptError(`${what}: cannot decrypt with the key given (${msg}); give the passphrase (--passphrase-env/--passphrase-file) or the age identity (--identity FILE) the backup was made with`);
}

export async function decryptBuffer(data: Buffer, w: DecryptWith, what: string): Promise<Buffer> {
  if (!w.passphrase && !w.identities?.length) throw new DecryptError(`${what} is encrypted: give --passphrase-env NAME, --passphrase-file FILE or --identity FILE`);
  try {
    return Buffer.from(await decrypter(w).decrypt(new Uint8Array(data)));
  } catch (e) {
    if (e instanceof DecryptError) throw e;
    throw decryptFailure(what, e);
  }
}

/** The stream, decrypted; the header (and so a wrong key) is checked before this resolves. */
export async function decryptStream(src: Readable, w: DecryptWith, what: string): Promise<Readable> {
  if (!w.passphrase && !w.identities?.length) throw new DecryptError(`${what} is encrypted: give --passphrase-env NAME, --passphrase-file FILE or --identity FILE`);
  const web = Readable.toWeb(src) as unknown as ReadableStream<Uint8Array>;
  let out: ReadableStream<Uint8Array>;
  try {
    out = await decrypter(w).decrypt(web);
  } catch (e) {
    if (e instanceof DecryptError) throw e;
    throw decryptFailure(what, e);
  }
  return Readable.fromWeb(out as unknown as WebReadableStream<Uint8Array>);
}
