// The lab on real machines: boots the seed topology, reaches every machine
// through k8s-ha's SSH transport, drills stop/start, freeze/thaw and
// cut/heal, and checks that `lab down` leaves the host as it found it.
// Needs root, systemd-container, debootstrap, iproute2, nftables; skipped
// (with the reason) otherwise.
import assert from 'node:assert/strict';
import { nspawnProcesses } from '../../lab/machine.js';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { labCommand } from '../../src/cli/lab.js';
import type { CliIO } from '../../src/cli/io.js';
import type { Host } from '../../src/transport/host.js';
import { sh } from '../../src/transport/quote.js';
import { ensureImage } from '../../lab/image.js';
import { labUp, openLab, type Lab } from '../../lab/index.js';
import { sshBanner } from '../../lab/ready.js';
import { diffSnapshots, snapshotHost, type HostSnapshot } from '../../lab/snapshot.js';
import { labSkipReason, testLabLock, withLab, TEST_LAB } from '../../lab/testing.js';
import type { Lock } from '../../lab/state.js';

const skip = await labSkipReason();

function io(): CliIO & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: (t) => void (out += t),
    stderr: (t) => void (err += t),
    env: process.env,
    cwd: process.cwd(),
    isTTY: false,
    out: () => out,
    err: () => err,
  };
}

/** Resolves with the first data the socket receives, or null after `ms` (the socket stays open). */
function firstData(sock: Socket, ms: number): Promise<string | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      sock.off('data', on);
      resolve(null);
    }, ms);
    const on = (d: Buffer): void => {
      clearTimeout(timer);
      resolve(d.toString('latin1'));
    };
    sock.once('data', on);
  });
}

/** The differences from `clean`, given a moment to vanish: the kernel frees a dead machine's network namespace a little later. */
async function settledDiff(clean: HostSnapshot): Promise<string[]> {
  let diff: string[] = [];
  for (let i = 0; i < 20; i++) {
    diff = diffSnapshots(clean, await snapshotHost());
    if (!diff.length) break;
    await sleep(250);
  }
  return diff;
}

async function run(host: Host, text: string): Promise<string> {
  return (await host.exec(sh`sh -c ${text}`)).stdout.trim();
}

describe('k8s-ha lab on this host', { skip: skip ?? false }, () => {
  let lab: Lab;
  let lock: Lock;
  let clean: HostSnapshot;

  before(async () => {
    // The image is built once (about 2 minutes) and cached outside the repository.
    await ensureImage((l) => process.stderr.write(`# ${l}\n`));
    lock = await testLabLock();
    if (await openLab(TEST_LAB)) await (await openLab(TEST_LAB))?.down();
    clean = await snapshotHost();
    lab = await labUp({ name: TEST_LAB, bare: { agent3: ['haproxy'] }, log: (l) => process.stderr.write(`# ${l}\n`) });
  });

  after(async () => {
    try {
      await (await openLab(TEST_LAB))?.down();
    } finally {
      await lock?.release();
    }
  });

  test('lab up boots the seed topology: infra, two servers, three agents, each on its own address', () => {
    assert.deepEqual(lab.machines.map((m) => m.name), ['infra', 'server1', 'server2', 'agent1', 'agent2', 'agent3']);
    assert.deepEqual(lab.machine('infra').roles, ['loadbalancer', 'datastore']);
    assert.equal(new Set(lab.machines.map((m) => m.address)).size, 6);
  });

  test('every machine answers through k8s-ha\'s SSH transport as root, with its own hostname and a running systemd', async () => {
    await Promise.all(
      lab.machines.map(async (m) => {
        const host = await lab.connect(m.name);
        try {
          assert.equal(await run(host, 'hostname'), m.name);
          assert.equal(await run(host, 'id -un'), 'root');
          assert.match(await run(host, 'systemctl is-system-running --wait || true'), /^(running|degraded)$/);
          assert.match(await run(host, 'ip -4 -o addr show dev host0'), new RegExp(`inet ${m.address.replace(/\./g, '\\.')}/`));
        } finally {
          await host.close();
        }
      }),
    );
  });

  test('machines have distinct SSH host keys, pinned in the lab\'s known_hosts', async () => {
    const store = lab.hostKeys();
    const keys = await Promise.all(lab.machines.map((m) => store.lookup(`[${m.address}]:22`)));
    assert.ok(keys.every(Boolean));
    assert.equal(new Set(keys).size, keys.length);
  });

  test('the daemons the phases manage are installed but not started', async () => {
    const script = 'for s in nginx haproxy keepalived mariadb; do printf "%s/%s " "$(systemctl is-enabled $s)" "$(systemctl is-active $s)"; done; ' +
      'for b in nginx haproxy keepalived mariadbd; do command -v $b; done | wc -l';
    const r = await lab.exec('infra', ['sh', '-c', script], { allowFailure: true });
    assert.equal(r.stdout.trim(), 'disabled/inactive disabled/inactive disabled/inactive disabled/inactive 4');
  });

  test('a machine made bare lacks the package, and apt-get installs it through the host', async () => {
    const missing = await lab.exec('agent3', ['dpkg-query', '-W', '-f=${Status}', 'haproxy'], { allowFailure: true });
    assert.notEqual(missing.stdout.trim(), 'install ok installed');
    const present = await lab.exec('agent1', ['dpkg-query', '-W', '-f=${Status}', 'haproxy']);
    assert.equal(present.stdout.trim(), 'install ok installed');
    const host = await lab.connect('agent3');
    try {
      // The image's package index may be days old: refresh it, as apply must.
      await host.exec(sh`apt-get update -q`, { timeoutMs: 300_000 });
      await host.exec(sh`env DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy`, { timeoutMs: 300_000 });
      assert.equal(await run(host, "dpkg-query -W -f='${Status}' haproxy"), 'install ok installed');
    } finally {
      await host.close();
    }
  });

  test('a stopped machine stops answering; started again it answers with its disk as it was', async () => {
    const m = lab.machine('agent2');
    await lab.exec('agent2', ['sh', '-c', 'echo kept > /root/marker && sync']);
    await lab.stop('agent2');
    assert.equal((await lab.status()).find((s) => s.name === 'agent2')?.running, false);
    assert.equal(await sshBanner(m.address, 22, 1_000), false);
    await lab.start('agent2');
    const host = await lab.connect('agent2');
    try {
      assert.equal(await run(host, 'cat /root/marker'), 'kept');
    } finally {
      await host.close();
    }
  });

  test('a hard stop kills the machine\'s init at once, and it boots again', async () => {
    const before = Date.now();
    await lab.stop('server1', { hard: true });
    assert.ok(Date.now() - before < 5_000);
    assert.equal(await sshBanner(lab.machine('server1').address, 22, 1_000), false);
    await lab.start('server1');
    const host = await lab.connect('server1');
    await host.close();
  });

  test('a frozen machine keeps TCP connections open but answers nothing until thawed', async () => {
    const m = lab.machine('agent1');
    const session = await lab.connect('agent1');
    await lab.freeze('agent1');
    let sock: Socket | undefined;
    try {
      // A new connection: the kernel completes the handshake, sshd says nothing.
      sock = connect({ host: m.address, port: 22 });
      let closed = false;
      sock.on('close', () => (closed = true));
      sock.on('error', () => (closed = true));
      const banner = firstData(sock, 1_500);
      // A command on the session opened before the freeze: no answer either.
      let answered = false;
      const pending = session.exec(sh`echo awake`, { timeoutMs: 60_000 }).then((r) => {
        answered = true;
        return r.stdout.trim();
      });
      assert.equal(await banner, null, 'a frozen sshd sent its banner');
      assert.equal(answered, false, 'a frozen machine ran a command');
      assert.equal(closed, false, 'freezing closed the connection');
      assert.equal((await lab.status()).find((s) => s.name === 'agent1')?.frozen, true);

      const late = firstData(sock, 10_000);
      await lab.thaw('agent1');
      assert.match((await late) ?? '', /^SSH-2\.0-/);
      assert.equal(await pending, 'awake');
    } finally {
      sock?.destroy();
      await lab.thaw('agent1');
      await session.close();
    }
  });

  test('a cut machine is unreachable but running, and reachable again after heal', async () => {
    const m = lab.machine('server2');
    await lab.cut('server2');
    try {
      assert.equal(await sshBanner(m.address, 22, 1_500), false);
      assert.equal((await lab.exec('server2', ['true'])).code, 0);
      assert.equal((await lab.status()).find((s) => s.name === 'server2')?.cut, true);
    } finally {
      await lab.heal('server2');
    }
    await lab.waitReady(['server2'], 20_000);
    const host = await lab.connect('server2');
    assert.equal(await run(host, 'hostname'), 'server2');
    await host.close();
  });

  test('a machine reaches the other machines by name and the host through its gateway', async () => {
    const r = await lab.exec('server1', ['sh', '-c', `ping -c1 -W2 agent1 >/dev/null && ping -c1 -W2 ${lab.gateway} >/dev/null && ip route show default`]);
    assert.match(r.stdout, new RegExp(`default via ${lab.gateway.replace(/\./g, '\\.')} dev host0`));
  });

  test('lab status and lab ssh work from the command line', async () => {
    const a = io();
    assert.equal(await labCommand(['status', '--name', TEST_LAB, '--json'], a), 0, a.err());
    const st = JSON.parse(a.out()) as { machines: { name: string; ssh: boolean }[] };
    assert.ok(st.machines.every((m) => m.ssh));
    const b = io();
    assert.equal(await labCommand(['ssh', 'server2', '--name', TEST_LAB, '--', 'sh', '-c', 'echo "$0"; exit 7', 'two words'], b), 7);
    assert.equal(b.out(), 'two words\n');
  });

  test('a second lab up of the same name is refused as already up (exit 2)', async () => {
    const c = io();
    assert.equal(await labCommand(['up', '--name', TEST_LAB], c), 2);
    assert.match(c.err(), /already up/);
  });

  test('lab down removes every machine, mount, link, rule, process and file the lab made', async () => {
    const d = io();
    const units = lab.machines.map((m) => `${TEST_LAB}-${m.name}`);
    assert.ok((await nspawnProcesses(units)).length > 0, 'the machines were not running');
    assert.equal(await labCommand(['down', '--name', TEST_LAB], d), 0, d.err());
    // At once, not after a settling wait: a `lab up` right now must not meet the old machines.
    assert.deepEqual(await nspawnProcesses(units), [], 'lab down returned while systemd-nspawn still ran');
    // Still under the test lock, so no other test's lab muddles the comparison.
    assert.deepEqual(await settledDiff(clean), []);
  });
});

describe('withLab', { skip: skip ?? false }, () => {
  test('withLab removes its lab even when the test inside fails, and a second load balancer brings a virtual IP', async () => {
    // Held around withLab (which takes it too), so no other test's lab muddles the comparison.
    const lock = await testLabLock();
    try {
      const clean = await snapshotHost();
      let seen: { vip: string | null; names: string[] } | undefined;
      await assert.rejects(
        withLab({ servers: 1, agents: 0, lb2: true }, async (l) => {
          seen = { vip: l.virtualIP, names: l.machines.map((m) => m.name) };
          throw new Error('the test inside failed');
        }),
        /the test inside failed/,
      );
      assert.deepEqual(seen?.names, ['infra', 'lb2', 'server1']);
      assert.ok(seen?.vip);
      assert.equal(await openLab(TEST_LAB), null);
      assert.deepEqual(await settledDiff(clean), []);
    } finally {
      await lock.release();
    }
  });
});
