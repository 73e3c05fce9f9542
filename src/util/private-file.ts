import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Write a file that holds credentials (the state file, a kubeconfig): its
 * directory created 0700 when missing, the content written to a temporary
 * name beside it with mode 0600 from the first byte, then renamed into
 * place, so there is never half a file nor one others can read. On any
 * failure (the target is a directory, the disk is full, the rename is
 * refused) the temporary file is removed before the error goes on: no copy
 * of the credentials is left behind.
 */
export async function writePrivateFile(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.k8s-ha-${process.pid}-${Date.now()}.tmp`;
  try {
    await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
