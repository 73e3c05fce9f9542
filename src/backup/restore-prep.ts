import { UserError } from '../engine/errors.js';
import type { Cluster, SecretRef } from '../spec/cluster.js';
import { readFile } from 'node:fs/promises';
import { tokenPassphrase } from '../phases/k3s-token.js';
import { Secret } from '../util/secret.js';
import { checkArchive, dumpSqlStream, openArchive, readSecretsPart, type OpenedArchive } from './archive.js';
import { scanDump, tokenProblem, type DumpFacts } from './bootstrap.js';
import { DecryptError, type DecryptWith } from './crypt.js';
import { ManifestError, type Manifest, type SecretsPart } from './manifest.js';
import { TarFormatError } from './tar.js';

/**
 * Everything `restore` checks on the machine running k8s-ha before it
 * contacts a host: the archive is whole (every sha256), it is this
 * cluster's, and the token it will put back opens the dump's bootstrap
 * data. Each refusal says how to get out of it.
 */

export interface RestoreSource {
  archive: OpenedArchive;
  manifest: Manifest;
  secrets: SecretsPart;
  facts: DumpFacts;
  key: DecryptWith;
  /** The token the servers will run with: the backup's (or the cluster file's own, when it names one). */
  token: Secret;
}

async function tokenFromRef(ref: SecretRef): Promise<Secret | null> {
  switch (ref.source) {
    case 'generate':
      return null;
    case 'env':
    case 'literal':
      return ref.value;
    case 'file':
      return new Secret((await readFile(ref.path, 'utf8')).trim());
  }
}

export async function prepareRestore(path: string, cluster: Cluster, key: DecryptWith): Promise<RestoreSource> {
  let archive: OpenedArchive;
  try {
    archive = await openArchive(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`restore: ${path}: no such file; \`k8s-ha backup --list\` shows the backups beside the cluster file`);
    if (e instanceof TarFormatError || e instanceof ManifestError) throw new UserError(`restore: ${e.message}`);
    throw e;
  }
  const m = archive.manifest;
  if (m.cluster !== cluster.name) {
    throw new UserError(
      `restore: ${path} is a backup of cluster "${m.cluster}", not of "${cluster.name}" (the cluster file's name): restoring it would put another cluster's data and token on these hosts`,
      [{ severity: 'error', path: 'name', message: `backup of "${m.cluster}"`, hint: `restore it with that cluster's file (name: ${m.cluster}), or pick a backup of ${cluster.name} (\`k8s-ha backup --list\`)` }],
    );
  }
  let problems: string[];
  try {
    problems = (await checkArchive(archive, key)).problems;
  } catch (e) {
    if (e instanceof DecryptError) throw new UserError(`restore: ${path}: ${e.message}`);
    throw e;
  }
  if (problems.length) {
    throw new UserError(
      `restore: ${path} does not match its manifest, so it is damaged or was altered; nothing was restored:\n${problems.map((p) => `  - ${p}`).join('\n')}\n  fix: restore from another backup (\`k8s-ha backup --list\`; \`k8s-ha backup --check FILE\` checks one)`,
    );
  }
  let secrets: SecretsPart;
  let facts: DumpFacts;
  try {
    secrets = await readSecretsPart(archive, key);
    facts = await scanDump(await dumpSqlStream(archive, key));
  } catch (e) {
    if (e instanceof DecryptError || e instanceof ManifestError) throw new UserError(`restore: ${path}: ${e.message}`);
    throw e;
  }
  const own = await tokenFromRef(cluster.k3s.token);
  const backupToken = new Secret(secrets.serverToken);
  if (own && tokenPassphrase(own.reveal()) !== tokenPassphrase(backupToken.reveal())) {
    throw new UserError(
      `restore: k3s.token in the cluster file is not the token of the backup: the restored datastore's bootstrap data is encrypted with the backup's token, so servers started with the cluster file's would fail ("bootstrap data already found and encrypted with different token")`,
      [{ severity: 'error', path: 'k3s.token', message: 'differs from the backup\'s token', hint: 'set k3s.token to "generate" (the restore then puts the backup\'s token in the state file), or to the token the backed-up cluster ran with' }],
    );
  }
  const token = own ?? backupToken;
  const why = tokenProblem(token.reveal(), facts);
  if (why) {
    throw new UserError(`restore: ${path}: ${why}; a cluster restored with it could not start. Nothing was restored.\n  fix: use a backup made by \`k8s-ha backup\` of this cluster (its token and dump belong together), or the token the cluster was built with`);
  }
  return { archive, manifest: m, secrets, facts, key, token };
}
