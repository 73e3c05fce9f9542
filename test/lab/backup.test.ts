// Backup, restore and reset on real machines (the lab: systemd-nspawn Debian
// 12 with sshd, the real MariaDB and nginx, the lab's k3s: upstream kine and
// kube-apiserver on that MariaDB), through the CLI in-process and the real
// SSH transport, as a user runs them. One lab for every step.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { parse, stringify } from 'yaml';
import { openArchive, readSecretsPart } from '../../src/backup/archive.js';
import { ClusterRun } from '../../src/cluster/open.js';
import { StateFile } from '../../src/cluster/state.js';
import type { KubeClient, KubeObject } from '../../src/kube/client.js';
import { clientFor, fetchKubeconfigFromAny } from '../../src/kube/fetch.js';
import type { Lab } from '../../lab/index.js';
import { labSkipReason, waitFor, withLab } from '../../lab/testing.js';
import { runCli, type CliResult } from '../cli/helpers.js';

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
  await withLab({ skip: (r) => t.skip(r) }, async (lab) => {
    const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-backup-lab-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = clusterFile(lab, dir);
    const outputs: CliResult[] = [];
    const cli = async (...argv: string[]) => {
      const r = await runCli([...argv, '-f', file], { cwd: dir, env: { PATH: process.env.PATH } });
      outputs.push(r);
      return r;
    };
    const agents = lab.machines.filter((m) => m.roles.includes('agent')).map((m) => m.name);
    let before: KubeClient;
    let atBackup: Map<string, string>;
    let maxSeen = 0;
    // The bare machines, before k8s-ha touched them: a reset must bring them back to this.
    const bare = new Map<string, string[]>();
    for (const n of ['server2', 'agent3']) bare.set(n, await machineSnapshot(lab, n));

    await t.test('the cluster is applied and holds objects; backup writes a 0600 archive that --check passes', async () => {
      const a = await cli('apply', '--yes', '--no-verify');
      assert.equal(a.code, 0, a.stderr + a.stdout);
      before = await kube(lab, file);
      await before.waitForReadyNodes(5, { timeoutMs: 120_000 });
      for (let i = 0; i < 20; i++) await before.create(cm(`cm-${i}`, `at-backup-${i}`));
      atBackup = (await configMaps(before)).items;
      const t0 = Date.now();
      const b = await cli('backup', '-o', 'lab.tar');
      assert.equal(b.code, 0, b.stderr + b.stdout);
      t.diagnostic(`backup of the lab cluster: ${Date.now() - t0} ms (whole command, in-process)`);
      const check = await cli('backup', '--check', 'lab.tar');
      assert.equal(check.code, 0, check.stdout + check.stderr);
      const m = (await openArchive(join(dir, 'lab.tar'))).manifest;
      // The version the servers report: the lab's k3s reports the release the lab's cluster file pins.
      assert.match(m.k3sVersion, /^v1\.\d+\.\d+\+k3s\d+$/);
      assert.equal(m.k3sVersion, (parse(readFileSync(file, 'utf8')) as { k3s: { version: string } }).k3s.version);
      // Nothing of the dump stays on the datastore host.
      const left = await lab.exec('infra', ['sh', '-c', 'find / -xdev -newer /etc/hostname -name "*.sql*" 2>/dev/null | grep -v ^/proc || true']);
      assert.equal(left.stdout.trim(), '');
    });

    await t.test('after changes, restore puts every object back as at backup time; the old kubeconfig works; a new watch sees revisions above every one seen before', async () => {
      for (let i = 0; i < 5; i++) await before.delete(cm(`cm-${i}`, ''));
      for (let i = 5; i < 10; i++) await before.request('PUT', `/api/v1/namespaces/default/configmaps/cm-${i}`, cm(`cm-${i}`, 'changed'));
      for (let i = 0; i < 5; i++) await before.create(cm(`later-${i}`, 'after the backup'));
      maxSeen = (await configMaps(before)).rv;
      assert.notDeepEqual((await configMaps(before)).items, atBackup);

      const t0 = Date.now();
      const r = await cli('restore', 'lab.tar', '--yes', '--no-verify');
      assert.equal(r.code, 0, r.stderr + r.stdout);
      t.diagnostic(`restore of the lab cluster: ${Date.now() - t0} ms (whole command, in-process)`);
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
      for (const s of ['server1', 'server2']) {
        const j = await lab.exec(s, ['journalctl', '-u', 'k3s', '--no-pager', '-q', '--since', '-3min']);
        assert.doesNotMatch(j.stdout, /bootstrap data already found and encrypted with different token/);
      }
    });

    await t.test('a scheduled backup: the timer runs the service, rotation keeps N, the archive holds the token and passes --check', async () => {
      writeFileSync(file, stringify({ ...(parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>), datastore: { ...(parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>).datastore, backup: { schedule: 'hourly', keep: 2, dir: '/var/backups/k8s-ha' } } }));
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
      const check = await cli('backup', '--check', 'scheduled.tar');
      assert.equal(check.code, 0, check.stdout + check.stderr);
      const s = await readSecretsPart(await openArchive(join(dir, 'scheduled.tar')), {});
      const token = (parse(readFileSync(StateFile.pathFor(file), 'utf8')) as { secrets: Record<string, string> }).secrets.k3sToken!;
      assert.equal(s.serverToken, token);
      const journal = await lab.exec('infra', ['journalctl', '-u', 'k8s-ha-backup', '--no-pager', '-q']);
      assert.ok(!journal.stdout.includes(token), 'the token is in the journal');
    });

    await t.test('reset --datastore leaves servers and agents as the bare machines were (files, units, ports, cgroups, interfaces, rules); apply then builds the cluster again', async () => {
      const r = await cli('reset', '--datastore', '--loadbalancer', '--yes');
      assert.equal(r.code, 0, r.stderr + r.stdout);
      for (const [n, snap] of bare) {
        // Reached once (k3s's unit wants it), systemd keeps network-online.target and its
        // wait-online service active until the next boot: a state of systemd, nothing k3s left.
        const reached = /^(network-online\.target|systemd-networkd-wait-online\.service) loaded /;
        const d = snapshotDiff(snap.filter((l) => !reached.test(l)), (await machineSnapshot(lab, n)).filter((l) => !reached.test(l)));
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

    await t.test('no secret in any output, and the archives are readable by their owner only', async () => {
      const secrets = Object.values((parse(readFileSync(StateFile.pathFor(file), 'utf8')) as { secrets: Record<string, string> }).secrets);
      for (const o of outputs) for (const v of secrets) assert.ok(!(o.stdout + o.stderr).includes(v), 'a secret was printed');
      void agents;
    });
  });
});
