import { readFile, stat } from 'node:fs/promises';
import { writePrivateFile } from '../../util/private-file.js';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { UserError } from '../../engine/errors.js';
import { fetchKubeconfigFromAny } from '../../kube/fetch.js';
import { mergeKubeconfig, parseKubeconfig, renderKubeconfig } from '../../kube/kubeconfig.js';
import { clusterFileArg, parse, shownPath } from '../args.js';
import { HELP } from '../help.js';
import { EXIT, type CliIO } from '../io.js';
import { openCluster, type RunHooks } from '../open.js';

/** Where --merge writes: the first file of $KUBECONFIG (as kubectl does for new entries), else ~/.kube/config. */
export function mergeTarget(env: NodeJS.ProcessEnv, cwd: string): string {
  const first = (env.KUBECONFIG ?? '').split(':').find((p) => p.trim() !== '');
  if (first) return isAbsolute(first) ? first : resolve(cwd, first);
  if (!env.HOME) throw new UserError('kubeconfig: HOME is not set, so ~/.kube/config is unknown; set KUBECONFIG or use -o FILE');
  return join(env.HOME, '.kube', 'config');
}

/** The file `-o` names; a directory gets NAME.kubeconfig inside it (as `cp FILE DIR` would). */
async function outputPath(given: string, cwd: string, name: string): Promise<string> {
  const p = resolve(cwd, given);
  const st = await stat(p).catch(() => null);
  return st?.isDirectory() ? join(p, `${name}.kubeconfig`) : p;
}

export async function kubeconfigCommand(argv: string[], io: CliIO, hooks: RunHooks = {}): Promise<number> {
  const { values, positionals } = parse('kubeconfig', argv, {
    file: { type: 'string', short: 'f' },
    output: { type: 'string', short: 'o' },
    merge: { type: 'boolean' },
    'accept-new-host-key': { type: 'string', multiple: true },
  }, true);
  if (values.help) return void io.stdout(HELP.kubeconfig!), EXIT.ok;
  if (values.output !== undefined && values.merge) throw new UserError('kubeconfig: -o and --merge exclude each other: write a file, or merge into your kubeconfig');
  const file = clusterFileArg(values.file, io.env, io.cwd, positionals, 'kubeconfig');
  const run = await openCluster(file, io, hooks, { readOnly: true, acceptNewHostKey: values['accept-new-host-key'] ?? [] });
  let fetched;
  try {
    fetched = await fetchKubeconfigFromAny(run.deployment, (n) => run.engine.host(n));
  } finally {
    // Opened read-only: the state file is left as it was.
    await run.close();
  }
  const name = run.deployment.spec.name;
  const shown = (p: string) => shownPath(io.cwd, p);
  if (values.merge) {
    const target = mergeTarget(io.env, io.cwd);
    const existingText = await readFile(target, 'utf8').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return '';
      throw new Error(`reading ${target}: ${e.message}`);
    });
    const existing = parseKubeconfig(existingText, target);
    const merged = mergeKubeconfig(existing, fetched.kubeconfig);
    await writePrivateFile(target, renderKubeconfig(merged));
    const others = existing.contexts.filter((c) => c.name !== name).length;
    io.stdout(`Merged cluster, user and context "${name}" (API ${run.deployment.spec.apiServerUrl}, read from ${fetched.from}) into ${shown(target)}; current context is now "${name}"${others ? `; ${others} other context${others === 1 ? '' : 's'} left as they were` : ''}.\n`);
    return EXIT.ok;
  }
  const out = values.output !== undefined ? await outputPath(values.output, io.cwd, name) : join(dirname(file), `${name}.kubeconfig`);
  await writePrivateFile(out, renderKubeconfig(fetched.kubeconfig));
  io.stdout(`Wrote the kubeconfig of "${name}" (API ${run.deployment.spec.apiServerUrl}, read from ${fetched.from}) to ${shown(out)} (mode 0600: it holds cluster-admin credentials).\nTry: kubectl --kubeconfig ${shown(out)} get nodes\n`);
  return EXIT.ok;
}
