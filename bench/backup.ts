import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import type { CliIO } from '../src/cli/io.js';
import { main } from '../src/cli/main.js';
import { runBackup } from '../src/backup/run.js';
import { labUp, type Lab } from '../lab/index.js';
import { onBenchLab } from './lab.js';
import { LAB_K3S } from '../lab/components.js';
import type { BenchResult } from './result.js';
import { ensureBuilt, shell } from './startup.js';

const NAME = 'benchbackup';
const SIZES = [1_000, 10_000, 100_000];
const round = (s: number): number => Math.round(s * 100) / 100;

/**
 * Backup and restore time against the number of kine rows, on the lab (the
 * seed topology with the lab's k3s on the real MariaDB): the rows are added
 * to the kine table under /bench/ (a prefix the API server does not read),
 * each ~600 bytes like a small ConfigMap, so the dump and the load carry
 * them as they would objects. Each size: `k8s-ha backup` in-process (with
 * the dump's own share), then as a whole process from the shell; `k8s-ha
 * restore --yes --no-verify` in-process (with the load's share) and from the
 * shell. A restore includes stopping and restarting every node.
 */
export async function benchBackup(): Promise<BenchResult[]> {
  ensureBuilt();
  const out: BenchResult[] = [];
  return onBenchLab(NAME, { labK3s: true }, async () => {
    const lab = await labUp({ name: NAME });
    const file = join(lab.dir, 'bench-backup.yaml');
    const doc = parse(readFileSync(lab.clusterFile, 'utf8')) as Record<string, Record<string, unknown>>;
    delete doc.metallb;
    doc.k3s = { ...doc.k3s, install: { source: 'local', path: LAB_K3S } };
    writeFileSync(file, stringify(doc));
    const cli = async (...argv: string[]) => {
      const code = await main([...argv, '-f', file], quietIO(lab.dir));
      if (code !== 0) throw new Error(`k8s-ha ${argv.join(' ')} exited ${code}`);
    };
    await cli('apply', '--yes', '--no-verify');
    const bin = `${JSON.stringify(process.execPath)} ${resolve(import.meta.dirname, '../bin/k8s-ha.js')}`;
    let have = 0;
    for (const n of SIZES) {
      await addRows(lab, have, n);
      have = n;
      const a = join(lab.dir, `in-${n}.tar`);
      rmSync(a, { force: true });
      const t = Date.now();
      const r = await runBackup(file, { out: a });
      const backupIn = Date.now() - t;
      const size = statSync(a).size;
      out.push({ name: `backup of ${n} kine rows, in-process`, value: round(backupIn / 1000), unit: 's', note: `dump streamed and spooled ${round(r.dumpMs / 1000)} s; archive ${(size / 1024 / 1024).toFixed(1)} MiB` });
      const b = join(lab.dir, `sh-${n}.tar`);
      rmSync(b, { force: true });
      const shB = shell(`${bin} backup -f ${file} -o ${b}`);
      out.push({ name: `backup of ${n} kine rows, whole process from the shell`, value: round(shB.wall / 1000), unit: 's', note: `CPU ${Math.round(shB.cpu)} ms` });

      const tr = Date.now();
      let loadMs = 0;
      const io = quietIO(lab.dir);
      io.stdout = (text) => {
        const m = /"loadMs":(\d+)/.exec(text);
        if (m) loadMs = Number(m[1]);
      };
      const code = await main(['restore', a, '-f', file, '--yes', '--no-verify', '--json'], io);
      if (code !== 0) throw new Error(`restore of ${n} rows exited ${code}`);
      out.push({ name: `restore of ${n} kine rows, in-process (stop all, load, start servers then agents)`, value: round((Date.now() - tr) / 1000), unit: 's', note: `load of the dump ${round(loadMs / 1000)} s` });
      const shR = shell(`${bin} restore ${b} -f ${file} --yes --no-verify`);
      out.push({ name: `restore of ${n} kine rows, whole process from the shell`, value: round(shR.wall / 1000), unit: 's', note: `CPU ${Math.round(shR.cpu)} ms` });
    }
    await lab.down();
    return out;
  });
}

/** Rows have ids the table hands out; values ~600 bytes as a small object's protobuf would be. */
async function addRows(lab: Lab, from: number, to: number): Promise<void> {
  const batch = 5000;
  for (let i = from; i < to; i += batch) {
    const n = Math.min(batch, to - i);
    const sql = `USE k3s;\nINSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease, value, old_value) SELECT CONCAT('/bench/cm-', ${i} + seq), 1, 0, 0, 0, 0, REPEAT('x', 600), NULL FROM seq_0_to_${n - 1};\n`;
    await lab.exec('infra', ['mariadb', '--batch'], { input: sql, timeoutMs: 300_000 });
  }
}

function quietIO(cwd: string): CliIO {
  return { stdout: () => undefined, stderr: (t) => void process.stderr.write(t), env: process.env, cwd, isTTY: false };
}
