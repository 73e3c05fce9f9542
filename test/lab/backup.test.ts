// Backup, restore and reset on real machines (the lab: systemd-nspawn Debian
// 12 with sshd, the real MariaDB and nginx, the lab's k3s: upstream kine and
// kube-apiserver on that MariaDB), through the CLI in-process and the real
// SSH transport, as a user runs them. One lab for every step.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { parse, stringify } from 'yaml';
import { openArchive, readSecretsPart } from '../../src/backup/archive.js';
import { ClusterRun } from '../../src/cluster/open.js';
import { StateFile } from '../../src/cluster/state.js';
import { Secret } from '../../src/util/secret.js';
import type { KubeClient, KubeObject } from '../../src/kube/client.js';
import { clientFor, fetchKubeconfigFromAny } from '../../src/kube/fetch.js';
import { labUp, type Lab } from '../../lab/index.js';
import { labSkipReason, waitFor, withLab } from '../../lab/testing.js';
import { runCli, type CliResult } from '../cli/helpers.js';
import { ProcessSampler, spawnCli, untilWhile } from '../support/process-sampler.js';

const REPO = resolve(import.meta.dirname, '../..');
const LAB_K3S = join(REPO, 'labk3s/bin/k3s');
const labSkip = await labSkipReason();

interface Cm extends KubeObject {
  data?: Record<string, string>;
}

/** The lab's cluster file with the lab's k3s from a local file and without MetalLB (its own tests). */
function clusterFile(lab: Lab, dir: string, extra: (doc: Record<string, Record<string, unknown>>) => void = () => {}): string {
  const doc = parse(readFileSync(lab.clusterFile, 'utf8')) as Record<string, Record<string, unknown>>;
  delete doc.metallb;
  doc.k3s = { ...doc.k3s, install: { source: 'local', path: LAB_K3S } };
  extra(doc);
  const file = join(dir, 'cluster.yaml');
  writeFileSync(file, stringify(doc));
  return file;
}

async function kube(lab: Lab, file: string): Promise<KubeClient> {
  const run = await ClusterRun.open(file, { connect: (h) => lab.connect(h.name), phases: [] });
  try {
    return clientFor((await fetchKubeconfigFromAny(run.deployment, (n) => run.engine.host(n))).kubeconfig, { timeoutMs: 15_000 });
  } finally {
    await run.engine.close();
  }
}

async function configMaps(k: KubeClient): Promise<{ rv: number; items: Map<string, string> }> {
  const l = await k.request<{ metadata: { resourceVersion: string }; items: Cm[] }>('GET', '/api/v1/namespaces/default/configmaps?labelSelector=k8s-ha-test%3Dbackup');
  return { rv: Number(l.metadata.resourceVersion), items: new Map(l.items.map((c) => [c.metadata.name, c.data?.v ?? ''])) };
}

/** Node name -> uid: the same uids after a restore onto fresh machines mean the nodes came back as themselves. */
async function nodeUids(k: KubeClient): Promise<Map<string, string>> {
  const l = await k.request<{ items: { metadata: { name: string; uid: string } }[] }>('GET', '/api/v1/nodes');
  return new Map(l.items.map((n) => [n.metadata.name, n.metadata.uid]));
}

/**
 * What k3s could leave on a machine, read inside it: files (with modes;
 * outside logs, caches, apt/dpkg and systemd's own state), every unit file
 * and loaded unit, listening sockets, the top cgroups, network interfaces,
 * and the iptables and nft rules.
 */
const MACHINE_SNAPSHOT = [
  "echo '# files'",
  'find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp -o -path /var/tmp -o -path /var/log -o -path /var/cache -o -path /var/lib/apt -o -path /var/lib/dpkg -o -path /var/lib/systemd -o -path /var/lib/dhcp -o -path /var/lib/private -o -path /etc/ssh \\) -prune -o -printf "%p %m\\n" | sort',
  "echo '# run'",
  'ls -d /run/k3s /run/flannel /run/netns 2>/dev/null || true',
  "echo '# unit files'",
  'systemctl list-unit-files --no-legend --no-pager | sort',
  "echo '# units'",
  "systemctl list-units --all --no-legend --no-pager --plain | awk '{print $1, $2, $3}' | grep -v -e '^session-' -e '^user' -e '^run-' | sort",
  "echo '# listening'",
  "ss -ltnuH | awk '{print $1, $5}' | sort -u",
  "echo '# cgroups'",
  "find /sys/fs/cgroup -maxdepth 3 -type d | grep -v -e session- -e user.slice -e init.scope | sort",
  "echo '# links'",
  "ip -o link | awk -F': ' '{print $2}' | sort",
  "echo '# iptables'",
  "(iptables-save 2>/dev/null; ip6tables-save 2>/dev/null) | grep -v -e '^#' -e '^:' -e '^[*]' -e '^COMMIT' | sort",
  "echo '# nft'",
  'nft list ruleset 2>/dev/null || true',
].join('; ');

async function machineSnapshot(lab: Lab, name: string): Promise<string[]> {
  const r = await lab.exec(name, ['sh', '-c', MACHINE_SNAPSHOT], { timeoutMs: 120_000 });
  return r.stdout.split('\n');
}

function snapshotDiff(before: string[], after: string[]): string[] {
  const b = new Set(before);
  const a = new Set(after);
  return [...after.filter((l) => !b.has(l)).map((l) => `+ ${l}`), ...before.filter((l) => !a.has(l)).map((l) => `- ${l}`)];
}

const cm = (name: string, v: string): Cm => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default', labels: { 'k8s-ha-test': 'backup' } }, data: { v } });

test('backup, restore and scheduled backups on the lab', { skip: labSkip ?? false }, async (t) => {
  await withLab({ skip: (r) => t.skip(r) }, async (first) => {
    let lab = first;
    const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-backup-lab-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = clusterFile(lab, dir);
    const outputs: CliResult[] = [];
    const cli = async (...argv: string[]) => {
      const r = await runCli([...argv, '-f', file], { cwd: dir, env: { PATH: process.env.PATH } });
      outputs.push(r);
      return r;
    };
    const nodes = lab.machines.filter((m) => m.roles.includes('server') || m.roles.includes('agent')).map((m) => m.name);
    const everyMachine = lab.machines.map((m) => m.name);
    const stateSecrets = () => Object.values((parse(readFileSync(StateFile.pathFor(file), 'utf8')) as { secrets: Record<string, string> }).secrets);
    /** The node passwords on the machines now (each k3s node made its own at its first start). */
    const machinePasswords = async () => new Map(await Promise.all(nodes.map(async (n) => [n, (await lab.exec(n, ['cat', '/etc/rancher/node/password'])).stdout.trim()] as const)));
    let before: KubeClient;
    let atBackup: Map<string, string>;
    let uidsAtBackup: Map<string, string>;
    let backupPasswords: Record<string, string> = {};
    let maxSeen = 0;
    // The bare machines, before k8s-ha touched them: a reset must bring them back to this.
    const bare = new Map<string, string[]>();
    for (const n of ['server2', 'agent3', 'infra']) bare.set(n, await machineSnapshot(lab, n));
    const barePackages = (await lab.exec('infra', ['sh', '-c', "dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' | awk '$1 == \"ii\" { print $2 }' | sort"])).stdout;

    await t.test('the cluster is applied and holds objects; backup writes a 0600 archive with every node password that --check passes; no secret in any process list meanwhile', async () => {
      const a = await cli('apply', '--yes', '--no-verify');
      assert.equal(a.code, 0, a.stderr + a.stdout);
      before = await kube(lab, file);
      await before.waitForReadyNodes(5, { timeoutMs: 120_000 });
      for (let i = 0; i < 20; i++) await before.create(cm(`cm-${i}`, `at-backup-${i}`));
      // Large objects too (600 KB each, incompressible): a dump that takes a while to load, for the cut-off restore below.
      for (let i = 0; i < 30; i++) await before.create(cm(`big-${i}`, randomBytes(450_000).toString('base64')));
      atBackup = (await configMaps(before)).items;
      uidsAtBackup = await nodeUids(before);
      const sampler = new ProcessSampler(lab, everyMachine);
      sampler.start();
      const t0 = Date.now();
      const b = await cli('backup', '-o', 'lab.tar');
      const ms = Date.now() - t0;
      await sampler.stop();
      assert.equal(b.code, 0, b.stderr + b.stdout);
      t.diagnostic(`backup of the lab cluster (50 ConfigMaps, 30 of them 600 KB): ${ms} ms (whole command, in-process); ${sampler.rounds} process-list rounds on ${everyMachine.length} machines and this host`);
      const check = await cli('backup', '--check', 'lab.tar');
      assert.equal(check.code, 0, check.stdout + check.stderr);
      const archive = await openArchive(join(dir, 'lab.tar'));
      const m = archive.manifest;
      // The version the servers report: the lab's k3s reports the release the lab's cluster file pins.
      assert.match(m.k3sVersion, /^v1\.\d+\.\d+\+k3s\d+$/);
      assert.equal(m.k3sVersion, (parse(readFileSync(file, 'utf8')) as { k3s: { version: string } }).k3s.version);
      // Each node's password, as the machine has it: what the datastore's node-password secrets hash.
      const sec = await readSecretsPart(archive, {});
      backupPasswords = sec.nodePasswords ?? {};
      assert.deepEqual(new Map(Object.entries(backupPasswords)), await machinePasswords());
      assert.equal(Object.keys(backupPasswords).length, 5);
      const leaked = sampler.leaked([...stateSecrets(), sec.serverToken, ...Object.values(backupPasswords)]);
      assert.deepEqual(leaked.length, 0, 'a secret was on a command line during the backup');
      // Nothing of the dump stays on the datastore host.
      const left = await lab.exec('infra', ['sh', '-c', 'find / -xdev -newer /etc/hostname -name "*.sql*" 2>/dev/null | grep -v ^/proc || true']);
      assert.equal(left.stdout.trim(), '');
    });

    await t.test('restore refuses a damaged archive before contacting a host (exit 2) and an apply holding the cluster (exit 1), each with its message, and changes nothing', async () => {
      for (let i = 0; i < 5; i++) await before.delete(cm(`cm-${i}`, ''));
      for (let i = 5; i < 10; i++) await before.request('PUT', `/api/v1/namespaces/default/configmaps/cm-${i}`, cm(`cm-${i}`, 'changed'));
      for (let i = 0; i < 5; i++) await before.create(cm(`later-${i}`, 'after the backup'));
      const changed = (await configMaps(before)).items;
      maxSeen = (await configMaps(before)).rv;
      assert.notDeepEqual(changed, atBackup);

      // Damaged: one byte of the dump flipped.
      const a = await openArchive(join(dir, 'lab.tar'));
      const buf = readFileSync(join(dir, 'lab.tar'));
      buf[a.entries.get('kine.sql.gz')!.offset + 100] ^= 0x01;
      writeFileSync(join(dir, 'damaged.tar'), buf, { mode: 0o600 });
      const damaged = await cli('restore', 'damaged.tar', '--yes', '--no-verify');
      assert.equal(damaged.code, 2, damaged.stdout + damaged.stderr);
      assert.match(damaged.stderr, /damaged\.tar does not match its manifest, so it is damaged or was altered; nothing was restored:\n {2}- kine\.sql\.gz: sha256 [0-9a-f]{64} does not match the manifest's/);
      assert.match(damaged.stderr, /fix: restore from another backup/);
      assert.equal(damaged.stdout, '', 'a refused restore showed a plan (it contacted the hosts)');

      // An apply that holds the cluster (one file to put back on agent3), stopped while it holds the lock.
      await lab.exec('agent3', ['rm', '-f', '/usr/local/bin/k3s-killall.sh']);
      const apply = spawnCli(['apply', '--yes', '--no-verify'], file, dir);
      await untilWhile(lab, 'infra', 'test -e /var/lib/k8s-ha/lock', apply);
      apply.child.kill('SIGSTOP');
      let locked: CliResult;
      try {
        locked = await cli('restore', 'lab.tar', '--yes', '--no-verify');
      } finally {
        apply.child.kill('SIGCONT');
      }
      const applied = await apply.done;
      assert.equal(applied.code, 0, applied.stdout + applied.stderr);
      assert.equal(locked.code, 1, locked.stdout + locked.stderr);
      assert.match(locked.stderr, new RegExp(`the cluster is locked by \\S+ \\(pid ${apply.child.pid}, \`k8s-ha apply\` since [^)]+\\)(; its last heartbeat was \\d+ s ago)?: another run is changing it now \\(lock /var/lib/k8s-ha/lock on infra\\)\\n {2}fix: wait for it to finish and run again`));
      assert.deepEqual((await configMaps(before)).items, changed, 'a refused restore changed the objects');
      const stopped = await lab.exec('server1', ['systemctl', 'is-active', 'k3s'], { allowFailure: true });
      assert.equal(stopped.stdout.trim(), 'active', 'a refused restore stopped k3s');
    });

    await t.test('a restore killed while the dump loads, run again, converges: every object as at backup time; the old kubeconfig works; a new watch sees revisions above every one seen before; no secret in any process list', async () => {
      const killed = spawnCli(['restore', 'lab.tar', '--yes', '--no-verify'], file, dir);
      await untilWhile(lab, 'infra', 'pgrep -f "^mariadb --batch --default-character-set=utf8mb4 k3s" >/dev/null', killed);
      killed.child.kill('SIGKILL');
      const k = await killed.done;
      assert.equal(k.signal, 'SIGKILL');
      const left = await lab.exec('infra', ['sh', '-c', 'sleep 1; echo "SELECT COUNT(*) FROM k3s.kine" | mariadb --batch --skip-column-names 2>&1; cat /var/lib/k8s-ha/kine-revision-floor']);
      t.diagnostic(`killed during the load: the kine table then held ${left.stdout.trim().split('\n').join(' rows; the revision floor written before the load: ')}`);
      assert.match(k.stdout, /Restore the kine database from the backup/);

      const sampler = new ProcessSampler(lab, everyMachine);
      sampler.start();
      const t0 = Date.now();
      const r = await cli('restore', 'lab.tar', '--yes', '--no-verify');
      const ms = Date.now() - t0;
      await sampler.stop();
      assert.equal(r.code, 0, r.stderr + r.stdout);
      // The killed run's lock: this host, its pid gone, so taken over (no --break-lock needed).
      assert.match(r.stdout + r.stderr, new RegExp(`taking over the cluster lock left by \\S+ \\(pid ${killed.child.pid}, \`k8s-ha restore\``));
      t.diagnostic(`restore of the lab cluster after the cut-off one: ${ms} ms (whole command, in-process)`);
      await waitFor('5 Ready nodes after the restore', 120_000, async () => ((await before.nodes().catch(() => [])).filter((n) => n.ready).length >= 5 ? true : null));
      const now = await configMaps(before);
      assert.deepEqual(now.items, atBackup);
      // A watch from the restored list's revision: the next write comes after every revision seen before.
      const watch = before.raw(`/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=${now.rv}&timeoutSeconds=6&labelSelector=k8s-ha-test%3Dbackup`);
      await new Promise((r2) => setTimeout(r2, 1000));
      const created = await before.create(cm('after-restore', 'new'));
      const events = (await watch).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; object: Cm });
      const added = events.find((e) => e.type === 'ADDED' && e.object.metadata.name === 'after-restore');
      assert.ok(added, `the watch did not see the new object: ${JSON.stringify(events.map((e) => e.type))}`);
      assert.ok(Number(created.metadata.resourceVersion) > maxSeen, `resourceVersion ${created.metadata.resourceVersion} is not above ${maxSeen}, one the cluster served before the restore`);
      assert.ok(Number(added.object.metadata.resourceVersion) > maxSeen);
      for (const s2 of ['server1', 'server2']) {
        const j = await lab.exec(s2, ['journalctl', '-u', 'k3s', '--no-pager', '-q', '--since', '-3min']);
        assert.doesNotMatch(j.stdout, /bootstrap data already found and encrypted with different token/);
      }
      const token = (await readSecretsPart(await openArchive(join(dir, 'lab.tar')), {})).serverToken;
      assert.deepEqual(sampler.leaked([...stateSecrets(), token, ...Object.values(backupPasswords)]), [], 'a secret was on a command line during the restore');
      t.diagnostic(`${sampler.rounds} process-list rounds during the restore`);
    });

    await t.test('a scheduled backup encrypted to an age recipient: the timer runs the service, rotation keeps N, no plaintext token anywhere on the datastore host, --check opens it with the identity and finds the token', async () => {
      // The identity stays here; only its public key (the recipient) goes to the cluster file.
      const identity = await generateIdentity();
      writeFileSync(join(dir, 'backup-key.txt'), `${identity}\n`, { mode: 0o600 });
      const recipient = await identityToRecipient(identity);
      writeFileSync(file, stringify({ ...(parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>), datastore: { ...(parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>).datastore, backup: { schedule: 'hourly', keep: 2, dir: '/var/backups/k8s-ha', recipients: [recipient] } } }));
      const a = await cli('apply', '--yes', '--no-verify');
      assert.equal(a.code, 0, a.stderr + a.stdout);
      const timer = await lab.exec('infra', ['systemctl', 'is-active', 'k8s-ha-backup.timer']);
      assert.equal(timer.stdout.trim(), 'active');
      for (let i = 0; i < 3; i++) {
        // What the timer starts when it fires; one second apart so each archive has its own stamp.
        await lab.exec('infra', ['systemctl', 'start', 'k8s-ha-backup.service'], { timeoutMs: 120_000 });
        await new Promise((r) => setTimeout(r, 1100));
      }
      const ls = await lab.exec('infra', ['sh', '-c', 'stat -c "%a %n" /var/backups/k8s-ha /var/backups/k8s-ha/*']);
      const lines = ls.stdout.trim().split('\n');
      assert.equal(lines[0], '700 /var/backups/k8s-ha');
      assert.equal(lines.length, 3, `rotation should keep 2: ${ls.stdout}`);
      const name = (parse(readFileSync(file, 'utf8')) as { name: string }).name;
      for (const l of lines.slice(1)) assert.match(l, new RegExp(`^600 /var/backups/k8s-ha/${name}-\\d{8}T\\d{6}Z\\.k8s-ha-backup\\.tar$`));
      const newest = lines.slice(1).map((l) => l.split(' ')[1]!).sort().pop()!;
      const b64 = await lab.exec('infra', ['base64', '-w0', newest]);
      writeFileSync(join(dir, 'scheduled.tar'), Buffer.from(b64.stdout, 'base64'), { mode: 0o600 });
      const archive = await openArchive(join(dir, 'scheduled.tar'));
      assert.deepEqual(archive.manifest.encryption, { to: 'recipients', recipients: [recipient] });
      assert.deepEqual(archive.manifest.parts.map((p) => p.name), ['kine.sql.gz.age', 'secrets.json.age']);
      await assert.rejects(readSecretsPart(archive, {}), /is encrypted/);
      const check = await cli('backup', '--check', 'scheduled.tar', '--identity', 'backup-key.txt');
      assert.equal(check.code, 0, check.stdout + check.stderr);
      const s = await readSecretsPart(archive, { identities: [new Secret(identity)] });
      const token = (parse(readFileSync(StateFile.pathFor(file), 'utf8')) as { secrets: Record<string, string> }).secrets.k3sToken!;
      assert.equal(s.serverToken, token);
      // A stolen datastore disk: the token is in no file there (configs, MariaDB's data, the archives).
      const found = await lab.exec('infra', ['sh', '-c', 'grep -rlF -f /dev/stdin /etc /var /usr/local /root /srv 2>/dev/null || true'], { input: `${token}\n`, timeoutMs: 120_000 });
      assert.equal(found.stdout.trim(), '', `the token is readable in ${found.stdout}`);
      const journal = await lab.exec('infra', ['journalctl', '-u', 'k8s-ha-backup', '--no-pager', '-q']);
      assert.ok(!journal.stdout.includes(token), 'the token is in the journal');
    });

    await t.test('reset --datastore leaves servers and agents as the bare machines were (files, units, ports, cgroups, interfaces, rules); apply then builds the cluster again', async () => {
      // infra (load balancer + datastore): the package k8s-ha installed there (age, for the encrypted
      // scheduled backups) is purged; the lab image's own nginx, MariaDB... were there before and stay.
      const infraRecord = await lab.exec('infra', ['sh', '-c', 'cat /var/lib/k8s-ha/installed-packages 2>/dev/null || echo none']);
      t.diagnostic(`infra: k8s-ha's record of the packages it installed, before the reset: ${infraRecord.stdout.trim().split('\n').join(' ')}`);
      assert.match(infraRecord.stdout, /^age$/m);
      const r = await cli('reset', '--datastore', '--loadbalancer', '--yes');
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /purge age(?: \S+)* \(k8s-ha installed them: they were not on infra before\)/);
      const nowPackages = (await lab.exec('infra', ['sh', '-c', "dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' | awk '$1 == \"ii\" { print $2 }' | sort"])).stdout;
      assert.equal(nowPackages, barePackages, 'infra does not have exactly the packages it had before k8s-ha');
      for (const [n, snap] of bare) {
        // Reached once (k3s's unit wants it), systemd keeps network-online.target and its
        // wait-online service active until the next boot: a state of systemd, nothing k3s left.
        const reached = /^(network-online\.target|systemd-networkd-wait-online\.service) loaded /;
        const d = snapshotDiff(snap.filter((l) => !reached.test(l)), (await machineSnapshot(lab, n)).filter((l) => !reached.test(l)));
        if (n === 'infra') {
          // Left on purpose: the archives (a reset never deletes backups), and MariaDB — the lab image's
          // own, not installed by k8s-ha — still enabled and running with its runtime files (reset does
          // not yet record a unit's state from before k8s-ha enabled it).
          const kept = /mariadb|^[+-] \/var\/lib\/mysql\/|^\+ \/var\/backups\/k8s-ha/;
          t.diagnostic(`infra after reset --datastore --loadbalancer, against the bare machine: ${d.length} lines, of them ${d.filter((l) => kept.test(l)).length} MariaDB's state and the archives`);
          assert.deepEqual(d.filter((l) => !kept.test(l)), [], `infra differs from the bare machine after reset:\n${d.join('\n')}`);
          continue;
        }
        assert.deepEqual(d, [], `${n} differs from the bare machine after reset:\n${d.join('\n')}`);
      }
      const db = await lab.exec('infra', ['sh', '-c', "echo \"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'k3s'\" | mariadb --batch --skip-column-names"]);
      assert.equal(db.stdout.trim(), '0');
      const again = await cli('apply', '--yes', '--no-verify');
      assert.equal(again.code, 0, again.stderr + again.stdout);
      const k = await kube(lab, file);
      await k.waitForReadyNodes(5, { timeoutMs: 120_000 });
      assert.equal((await configMaps(k)).items.size, 0, 'the new cluster holds the old objects');
    });

    await t.test('restore onto fresh machines (lab down, lab up: new machines, new host keys, accepted deliberately) with the same cluster file: a backup without node passwords lets the new machines join under the old names; the full backup brings each node back as itself', async () => {
      const addresses = lab.machines.map((m) => `${m.name} ${m.address}`);
      const { name, subnet } = lab;
      await lab.down();
      lab = await labUp({ name, subnet });
      assert.deepEqual(lab.machines.map((m) => `${m.name} ${m.address}`), addresses, 'the new lab has other addresses');
      const fresh = await lab.exec('server1', ['sh', '-c', 'ls /etc/rancher/node /var/lib/rancher 2>&1 || true']);
      assert.match(fresh.stdout, /No such file/, 'not a fresh machine');

      // The state file pins the old machines' host keys: refused, with the fingerprint to check and the way out.
      const refused = await cli('restore', 'scheduled.tar', '--yes', '--no-verify', '--identity', 'backup-key.txt');
      assert.equal(refused.code, 1, refused.stdout + refused.stderr);
      const offered = /infra \([^)]*\): connecting: the host key has changed: pinned (SHA256:\S+), offered (SHA256:\S+)\./.exec(refused.stderr);
      assert.ok(offered, refused.stderr);
      assert.match(refused.stderr, /or run again with --accept-new-host-key infra/);
      // Checked on the machine itself, as the hint says, before accepting it.
      const onHost = await lab.exec('infra', ['sh', '-c', 'for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf "$f"; done']);
      assert.ok(onHost.stdout.includes(offered[2]!), `infra's own key fingerprints ${onHost.stdout} do not include the offered ${offered[2]}`);
      const accept = everyMachine.flatMap((n) => ['--accept-new-host-key', n]);

      // The scheduled archive holds no node password (the datastore host cannot read the nodes).
      const key = readFileSync(join(dir, 'backup-key.txt'), 'utf8').trim();
      assert.equal((await readSecretsPart(await openArchive(join(dir, 'scheduled.tar')), { identities: [new Secret(key)] })).nodePasswords, undefined);
      const t0 = Date.now();
      const r1 = await cli('restore', 'scheduled.tar', '--yes', '--no-verify', '--identity', 'backup-key.txt', ...accept);
      assert.equal(r1.code, 0, r1.stderr + r1.stdout);
      t.diagnostic(`restore of the scheduled archive onto the fresh lab (load balancer, VIP, MariaDB, k3s installed): ${Date.now() - t0} ms (whole command, in-process)`);
      assert.match(r1.stdout, /remove the node-password secrets of server1, server2, agent1, agent2, agent3 \(the backup has no node password for them: they join as new machines\)/);
      let k = await kube(lab, file);
      await k.waitForReadyNodes(5, { timeoutMs: 180_000 });
      assert.deepEqual(await nodeUids(k), uidsAtBackup, 'the Node objects are not the backed-up ones');
      const newPasswords = await machinePasswords();
      for (const n of nodes) assert.notEqual(newPasswords.get(n), backupPasswords[n], `${n} got the old machine's password`);
      const scheduled = (await configMaps(k)).items;
      assert.equal(scheduled.get('after-restore'), 'new');
      scheduled.delete('after-restore');
      assert.deepEqual(scheduled, atBackup);

      // The full backup: every node's password put back (they differ now), so each node is the one backed up.
      const t1 = Date.now();
      const r2 = await cli('restore', 'lab.tar', '--yes', '--no-verify');
      assert.equal(r2.code, 0, r2.stderr + r2.stdout);
      t.diagnostic(`restore of the full backup onto the now running fresh lab: ${Date.now() - t1} ms (whole command, in-process)`);
      for (const n of nodes) assert.match(r2.stdout, new RegExp(`${n}:\\n {4}~ update /etc/rancher/node/password`));
      assert.doesNotMatch(r2.stdout, /remove the node-password secrets/);
      k = await kube(lab, file);
      await k.waitForReadyNodes(5, { timeoutMs: 180_000 });
      assert.deepEqual(await nodeUids(k), uidsAtBackup);
      assert.deepEqual(new Map(Object.entries(backupPasswords)), await machinePasswords());
      for (const n of nodes) {
        const mode = await lab.exec(n, ['stat', '-c', '%a', '/etc/rancher/node/password']);
        assert.equal(mode.stdout.trim(), '600');
      }
      assert.deepEqual((await configMaps(k)).items, atBackup);
      for (const o of [r1, r2]) for (const v of [...Object.values(backupPasswords), ...newPasswords.values()]) assert.ok(!(o.stdout + o.stderr).includes(v), 'a node password was printed');
    });

    await t.test('no secret in any output, and the archives are readable by their owner only', async () => {
      const secrets = Object.values((parse(readFileSync(StateFile.pathFor(file), 'utf8')) as { secrets: Record<string, string> }).secrets);
      for (const o of outputs) for (const v of secrets) assert.ok(!(o.stdout + o.stderr).includes(v), 'a secret was printed');
      for (const o of outputs) for (const v of Object.values(backupPasswords)) assert.ok(!(o.stdout + o.stderr).includes(v), 'a node password was printed');
    });
  });
});
