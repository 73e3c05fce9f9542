import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { nspawnProcesses, waitMachinesGone } from '../../lab/machine.js';

/**
 * `lab down` returns only when every systemd-nspawn of the lab is gone. A
 * process named systemd-nspawn with the machine's `--machine=` argument
 * stands in for one that is still tearing down after its init was killed.
 */
test('waiting for a lab machine to be gone finds its lingering systemd-nspawn, kills it within the bound and returns only then', async () => {
  const unit = `k8s-ha-unit-${process.pid}`;
  const fake = spawn(process.execPath, ['-e', 'process.on("SIGTERM", () => {}); setInterval(() => {}, 1000)', '--', `--machine=${unit}`], { argv0: 'systemd-nspawn', stdio: 'ignore' });
  const exited = once(fake, 'exit');
  try {
    for (let i = 0; i < 100 && (await nspawnProcesses([unit])).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(await nspawnProcesses([unit]), [{ pid: fake.pid, unit }]);
    assert.deepEqual(await nspawnProcesses(['k8s-ha-other-machine']), []);
    const t0 = Date.now();
    await waitMachinesGone([unit], 1_000);
    assert.ok(Date.now() - t0 < 2_000, 'not bounded');
    assert.deepEqual(await nspawnProcesses([unit]), []);
    const [, signal] = await exited;
    assert.equal(signal, 'SIGKILL');
  } finally {
    fake.kill('SIGKILL');
  }
});
