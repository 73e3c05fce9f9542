/**
 * Runs `plan --json` of the seed example through an installed k8s-ha
 * package's command (its dist/cli/main.js, argv[2]) against the simulated
 * fleet of this clone: the package's code, the clone's in-memory machines.
 * Prints {code, stdout, stderr} as JSON. Used by test/package/pack.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { CliIO } from '../../src/cli/io.js';
import type { RunHooks } from '../../src/cli/commands/plan.js';
import { simulatedFleet } from './fleet.js';
import { offlineCluster } from './offline-example.js';

type Main = (argv: string[], io: CliIO, hooks: RunHooks) => Promise<number>;

const installed = process.argv[2];
if (!installed) throw new Error('usage: package-plan.ts PATH/TO/dist/cli/main.js');
const { main } = (await import(pathToFileURL(installed).href)) as { main: Main };
const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-package-'));
try {
  const { file, text } = offlineCluster(join(import.meta.dirname, '../../examples/seed.yaml'), dir);
  const fleet = simulatedFleet(text, { env: { HOME: dir } });
  let stdout = '';
  let stderr = '';
  const io: CliIO = { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t), env: { HOME: dir }, cwd: dir, isTTY: false };
  const code = await main(['plan', '--json', '-f', file], io, { open: { connect: fleet.connect } });
  process.stdout.write(JSON.stringify({ code, stdout, stderr }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
