import { open, type FileHandle } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { Readable, type Writable } from 'node:stream';

/**
 * The few parts of POSIX ustar a backup archive needs: regular files only,
 * written one after another, and an index of where each one's bytes lie so a
 * part can be streamed out without reading the others. `tar tf` and
 * `tar xf` read these archives, and GNU tar's archives (what the scheduled
 * backup on the datastore host writes) read back here.
 */

const BLOCK = 512;

export interface TarEntry {
  name: string;
  size: number;
  /** Byte offset of the entry's content in the archive. */
  offset: number;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

/** One ustar header for a regular file of `size` bytes (mode 0600, owner 0, mtime given). */
export function tarHeader(name: string, size: number, mtimeSec: number): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar: the name ${name} is longer than 100 bytes`);
  const h = Buffer.alloc(BLOCK, 0);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(0o600, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(mtimeSec, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii'); // the checksum counts its own field as spaces
  h.write('0', 156, 'ascii');
  h.write('ustar\u000000', 257, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  return h;
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest, 0);
}

function write(out: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    out.write(chunk, (e) => (e ? reject(e) : resolve()));
  });
}

/** Appends entries to a stream; `end()` writes the two zero blocks that close a tar. */
export class TarWriter {
  constructor(
    private readonly out: Writable,
    private readonly mtimeSec: number,
  ) {}

  async add(name: string, content: Buffer): Promise<void> {
    await write(this.out, tarHeader(name, content.length, this.mtimeSec));
    await write(this.out, content);
    await write(this.out, padding(content.length));
  }

  /** An entry whose content comes from a stream of a known size (a part spooled to a local file). */
  async addStream(name: string, size: number, src: NodeJS.ReadableStream): Promise<void> {
    await write(this.out, tarHeader(name, size, this.mtimeSec));
    let n = 0;
    for await (const chunk of src) {
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      n += b.length;
      await write(this.out, b);
    }
    if (n !== size) throw new Error(`tar: ${name} was ${n} bytes, not the ${size} announced`);
    await write(this.out, padding(size));
  }

  async end(): Promise<void> {
    await write(this.out, Buffer.alloc(BLOCK * 2, 0));
  }
}

function field(h: Buffer, start: number, len: number): string {
  const raw = h.subarray(start, start + len);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul < 0 ? len : nul).toString('utf8');
}

function parseSize(h: Buffer): number {
  // GNU tar's base-256 form for sizes over 8 GiB: first byte 0x80.
  if ((h[124]! & 0x80) !== 0) {
    let n = 0;
    for (let i = 125; i < 136; i++) n = n * 256 + h[i]!;
    return n;
  }
  return parseInt(field(h, 124, 12).trim() || '0', 8);
}

/** Not a tar, or a damaged one. */
export class TarFormatError extends Error {}

/** Every regular file in the archive with where its content lies. Reads headers only. */
export async function tarIndex(path: string): Promise<TarEntry[]> {
  const fh: FileHandle = await open(path, 'r');
  try {
    const { size: total } = await fh.stat();
    const out: TarEntry[] = [];
    const h = Buffer.alloc(BLOCK);
    let pos = 0;
    let longName: string | null = null;
    while (pos + BLOCK <= total) {
      const { bytesRead } = await fh.read(h, 0, BLOCK, pos);
      if (bytesRead < BLOCK) break;
      if (h.every((b) => b === 0)) break;
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
      const want = parseInt(field(h, 148, 8).trim(), 8);
      if (sum !== want) throw new TarFormatError(`${path}: not a tar archive, or damaged at byte ${pos} (header checksum ${want}, computed ${sum})`);
      const size = parseSize(h);
      const type = String.fromCharCode(h[156]!);
      const prefix = field(h, 345, 155);
      const base = field(h, 0, 100);
      const offset = pos + BLOCK;
      if (offset + size > total) throw new TarFormatError(`${path}: truncated: ${base} needs ${size} bytes at ${offset}, the file has ${total}`);
      if (type === 'L') {
        const buf = Buffer.alloc(size);
        await fh.read(buf, 0, size, offset);
        longName = buf.toString('utf8').replace(/\0+$/, '');
      } else if (type === '0' || type === '\0') {
        const name = (longName ?? (prefix ? `${prefix}/${base}` : base)).replace(/^\.\//, '');
        out.push({ name, size, offset });
        longName = null;
      } else {
        longName = null;
      }
      pos = offset + size + padding(size).length;
    }
    return out;
  } finally {
    await fh.close();
  }
}

/** The entry's bytes as a stream (the archive file is opened for this read only). */
export function entryStream(path: string, e: TarEntry): Readable {
  // createReadStream's end is inclusive, so an empty entry is a stream of nothing.
  return e.size === 0 ? Readable.from([]) : createReadStream(path, { start: e.offset, end: e.offset + e.size - 1 });
}

export async function entryBuffer(path: string, e: TarEntry): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(e.size);
    await fh.read(buf, 0, e.size, e.offset);
    return buf;
  } finally {
    await fh.close();
  }
}
