import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { UserError } from '../../engine/errors.js';
import { loadCluster } from '../../cluster/open.js';
import { checkArchiveFile, describeArchive, listArchives, runBackup, type ListedArchive } from '../../backup/run.js';
import { DecryptError } from '../../backup/crypt.js';
import { ManifestError } from '../../backup/manifest.js';
import { TarFormatError } from '../../backup/tar.js';
import { clusterFileArg, parse, shownPath } from '../args.js';
import { HELP } from '../help.js';
import { EXIT, type CliIO } from '../io.js';
import { jsonEvents, plainEvents, terminalEvents } from '../output/progress.js';
import { decryptWithFromFlags, encryptToFromFlags, keyFlags } from '../keys.js';
import type { RunHooks } from './plan.js';

function ago(iso: string, now: Date): string {
  const s = Math.max(0, Math.round((now.getTime() - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  if (s < 172800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

function mib(n: number): string {
  return n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function listLine(a: ListedArchive, cwd: string, now: Date): string {
  const p = shownPath(cwd, a.path);
  if (!a.manifest) return `${p}\n  unreadable: ${a.error}\n`;
  const m = a.manifest;
  const loose = a.mode !== undefined && (a.mode & 0o077) !== 0 ? `  WARNING: mode 0${a.mode.toString(8)}, readable by others: chmod 600 ${p}\n` : '';
  return (
    `${p}\n  cluster ${m.cluster}, ${m.createdAt} (${ago(m.createdAt, now)}), ${m.source}, k3s ${m.k3sVersion}, kine revision ${m.kineRevision}, ` +
    `${a.size !== undefined ? mib(a.size) : '?'}, ${m.encryption ? `encrypted to ${m.encryption.to === 'passphrase' ? 'a passphrase' : m.encryption.recipients.join(', ')}` : 'not encrypted'}\n${loose}`
  );
}

export async function backupCommand(argv: string[], io: CliIO, hooks: RunHooks = {}): Promise<number> {
  const { values, positionals } = parse(
    'backup',
    argv,
    {
      file: { type: 'string', short: 'f' },
      output: { type: 'string', short: 'o' },
      list: { type: 'boolean' },
      check: { type: 'string' },
      json: { type: 'boolean' },
      'accept-new-host-key': { type: 'string', multiple: true },
      ...keyFlags,
    },
    true,
  );
  if (values.help) return void io.stdout(HELP.backup!), EXIT.ok;
  const now = new Date();

  if (values.list) {
    // Without touching the cluster: the folder of the cluster file unless paths are given.
    const targets = positionals.length ? positionals.map((p) => resolve(io.cwd, p)) : [dirname(clusterFileArg(values.file, io.env, io.cwd))];
    const found: ListedArchive[] = [];
    for (const t of targets) {
      const st = await stat(t).catch(() => null);
      if (!st) throw new UserError(`backup --list: ${t}: no such file or folder`);
      found.push(...(st.isDirectory() ? await listArchives(t) : [await describeArchive(t)]));
    }
    if (values.json) io.stdout(JSON.stringify(found.map((a) => ({ path: a.path, manifest: a.manifest, error: a.error, mode: a.mode, size: a.size })), null, 2) + '\n');
    else if (!found.length) io.stdout(`No backups in ${targets.map((t) => shownPath(io.cwd, t)).join(', ')}.\n`);
    else io.stdout(found.map((a) => listLine(a, io.cwd, now)).join(''));
    return found.some((a) => a.error) ? EXIT.failed : EXIT.ok;
  }

  if (values.check !== undefined) {
    if (positionals.length) throw new UserError(`backup --check: unexpected argument ${positionals[0]}; check one archive: backup --check FILE`);
    const path = resolve(io.cwd, values.check);
    const key = await decryptWithFromFlags('backup --check', values, io.env, io.cwd);
    let checked;
    try {
      checked = await checkArchiveFile(path, key);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`backup --check: ${path}: no such file`);
      if (e instanceof TarFormatError || e instanceof ManifestError) {
        io.stderr(`error: ${e.message}\n`);
        return EXIT.failed;
      }
      if (e instanceof DecryptError) {
        io.stderr(`error: ${path}: ${e.message}\n`);
        return EXIT.failed;
      }
      throw e;
    }
    const { archive, result } = checked;
    if (values.json) {
      io.stdout(JSON.stringify({ path, ok: result.problems.length === 0, contentChecked: result.contentChecked, problems: result.problems, manifest: archive.manifest }, null, 2) + '\n');
    } else {
      io.stdout(listLine({ path, manifest: archive.manifest, mode: archive.mode, size: archive.size }, io.cwd, now));
      if (result.problems.length) io.stdout(result.problems.map((p) => `  FAILED: ${p}\n`).join('') + `  The archive is damaged or was altered: do not restore from it.\n`);
      else io.stdout(`  ok: every part's sha256 matches the manifest${result.contentChecked ? '' : ' (encrypted content not checked: give the key to check it too)'}\n`);
    }
    return result.problems.length ? EXIT.failed : EXIT.ok;
  }

  if (positionals.length) throw new UserError(`backup: unexpected argument ${positionals[0]}; see \`k8s-ha backup --help\``);
  const file = clusterFileArg(values.file, io.env, io.cwd);
  const to = await encryptToFromFlags(values, io.env, io.cwd);
  loadCluster(file, io.env); // a bad file is exit 2 before any host is contacted
  const out = values.output !== undefined ? resolve(io.cwd, values.output) : undefined;
  if (out && (await stat(out).catch(() => null))) throw new UserError(`backup: ${out} already exists; k8s-ha never overwrites a backup: choose another -o`);
  const events = values.json ? jsonEvents(io.stderr) : io.isTTY ? terminalEvents(io.stdout) : plainEvents(io.stdout, false);
  const r = await runBackup(file, {
    ...(out ? { out } : {}),
    to,
    open: { env: io.env, secrets: io.secrets, acceptHostKeyFor: new Set(values['accept-new-host-key'] ?? []), events, signal: hooks.signal, ...hooks.open },
  });
  for (const w of r.warnings) io.stderr(`warning: ${w}\n`);
  if (values.json) {
    io.stdout(JSON.stringify({ path: r.path, manifest: r.manifest, dumpMs: r.dumpMs, totalMs: r.totalMs }) + '\n');
  } else {
    const dump = r.manifest.parts.find((p) => p.name.startsWith('kine.sql.gz'));
    io.stdout(
      `Backed up ${r.manifest.cluster} (kine revision ${r.manifest.kineRevision}, dump ${dump ? mib(dump.size) : '?'}) to ${shownPath(io.cwd, r.path)} (mode 0600) in ${(r.totalMs / 1000).toFixed(1)} s.\n` +
        (r.manifest.encryption ? '' : 'It holds the cluster token and the datastore password unencrypted: keep it private, or use --passphrase-file / --recipient.\n'),
    );
  }
  return EXIT.ok;
}
