import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseDocument } from 'yaml';
import type { ClusterHost } from '../../src/spec/cluster.js';
import { simulatedFleet } from '../support/fleet.js';
import { offlineCluster, standInK3s } from '../support/offline-example.js';
import { runCli, tempDir } from './helpers.js';

/**
 * What `validate` refuses, `plan` and `apply` refuse the same way: exit 2,
 * the path, line and fix, and not one host contacted (counted at the
 * connection the simulated fleet hands out).
 */

const SEED = join(import.meta.dirname, '../../examples/seed.yaml');

for (const [what, edit, path] of [
  ['an empty datastore password file', (dir: string, doc: ReturnType<typeof parseDocument>) => {
    writeFileSync(join(dir, 'db-pass'), '');
    doc.setIn(['datastore', 'password'], doc.createNode({ file: 'db-pass' }));
  }, /datastore\.password\.file: secret file .*db-pass is empty/],
  ['a local k3s binary of another version', (dir: string) => {
    writeFileSync(join(dir, 'k3s'), standInK3s('v1.29.0+k3s1'), { mode: 0o755 });
  }, /k3s\.install\.path: .*k3s is k3s v1\.29\.0\+k3s1, but k3s\.version is v1\.\d+\.\d+\+k3s1/],
  ['an SSH connect timeout of 0', (_dir: string, doc: ReturnType<typeof parseDocument>) => {
    doc.setIn(['ssh', 'connectTimeout'], '0s');
  }, /ssh\.connectTimeout: 0s: an SSH connect timeout must be from 100ms to 5m/],
] as const) {
  test(`plan and apply with ${what} exit 2 with the path and a fix, before any host is contacted`, async (t) => {
    const dir = tempDir(t);
    const { file, text } = offlineCluster(SEED, dir);
    const fleet = simulatedFleet(text, { env: { HOME: dir } });
    const doc = parseDocument(text);
    edit(dir, doc);
    writeFileSync(file, String(doc));
    let contacted = 0;
    const connect = (h: ClusterHost) => ((contacted += 1), fleet.connect(h));
    for (const cmd of ['validate', 'plan', 'apply']) {
      const r = await runCli([cmd, '-f', file, ...(cmd === 'apply' ? ['--yes'] : [])], { cwd: dir, hooks: { open: { connect } } });
      assert.equal(r.code, 2, `${cmd}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, path, cmd);
      assert.match(r.stderr, /cluster\.yaml:\d+:\d+/, `${cmd} names the line`);
      assert.match(r.stderr, /fix: /, cmd);
      assert.doesNotMatch(r.stdout, /No changes/, cmd);
    }
    assert.equal(contacted, 0, 'no host was contacted');
  });
}
