// labk3s/install.sh against k3s's install script's offline contract, on a
// lab machine: the variables another tool's installer sets, the files and
// helper scripts k3s's script writes itself, and an uninstall that leaves
// nothing behind. No k3s is started (no datastore here): the unit is
// written and enabled with INSTALL_K3S_SKIP_START.
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { LAB_K3S, REPO } from '../../lab/components.js';
import { labSkipReason, skipOrFail, withLab } from '../../lab/testing.js';

const labSkip = await labSkipReason();

test("labk3s/install.sh takes k3s's offline-path variables and writes its own helper scripts", { skip: labSkip ? `no lab: ${labSkip}` : skipOrFail(existsSync(LAB_K3S) ? null : `${LAB_K3S} is missing: build it with scripts/build-labk3s.sh`) }, async (t) => {
  await withLab({ servers: 1, agents: 0, skip: (r) => t.skip(r) }, async (lab) => {
    const root = join(lab.dir, 'machines', 'server1', 'root');
    await copyFile(join(REPO, 'labk3s/install.sh'), join(root, 'root/install.sh'));
    await copyFile(LAB_K3S, join(root, 'root/k3s'));
    const sh = (script: string, env: Record<string, string> = {}) =>
      lab.exec('server1', ['env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'sh', '-c', script], { allowFailure: true });

    const noToken = await sh('sh /root/install.sh', { K3S_URL: 'https://10.9.9.9:6443' });
    assert.equal(noToken.code, 1);
    assert.match(noToken.stderr, /Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined/);
    const http = await sh('sh /root/install.sh', { K3S_URL: 'http://10.9.9.9:6443', K3S_TOKEN: 'x' });
    assert.match(http.stderr, /Only https:\/\/ URLs are supported for K3S_URL/);
    const noBinary = await sh('sh /root/install.sh', { INSTALL_K3S_SKIP_DOWNLOAD: 'true' });
    assert.match(noBinary.stderr, /Executable k3s binary not found at \/usr\/local\/bin\/k3s/);

    await sh('install -m 755 /root/k3s /usr/local/bin/k3s');
    const wrong = await sh('sh /root/install.sh', { INSTALL_K3S_SKIP_DOWNLOAD: 'true', INSTALL_K3S_VERSION: 'v1.31.4+k3s1' });
    assert.match(wrong.stderr, /INSTALL_K3S_VERSION=v1\.31\.4\+k3s1, but \/usr\/local\/bin\/k3s is: k3s version v1\.37\.2\+k3s1 \(labk3s\)/);

    const env = { INSTALL_K3S_SKIP_DOWNLOAD: 'true', INSTALL_K3S_SKIP_START: 'true', K3S_URL: 'https://10.9.9.9:6443', K3S_TOKEN: 'sekrit-token', INSTALL_K3S_EXEC: '--node-label tier=web' };
    const agent = await sh("sh /root/install.sh --node-taint 'dedicated=x:NoSchedule'", env);
    assert.equal(agent.code, 0, agent.stderr);
    const files = await sh('ls /usr/local/bin; stat -c "%a %n" /etc/systemd/system/k3s-agent.service.env; systemctl is-enabled k3s-agent; sed -n "/^ExecStart=/,\\$p" /etc/systemd/system/k3s-agent.service');
    assert.match(files.stdout, /^k3s\nk3s-agent-uninstall\.sh\nk3s-killall\.sh\nkubectl\n/);
    assert.match(files.stdout, /^600 \/etc\/systemd\/system\/k3s-agent\.service\.env$/m);
    assert.match(files.stdout, /^enabled$/m);
    assert.match(files.stdout, /ExecStart=\/usr\/local\/bin\/k3s \\\n {4}agent \\\n\t'--node-label' \\\n\t'tier=web' \\\n\t'--node-taint' \\\n\t'dedicated=x:NoSchedule'\n/);
    // The token is in the 0600 env file only, never in the unit.
    assert.doesNotMatch((await sh('cat /etc/systemd/system/k3s-agent.service')).stdout, /sekrit/);
    assert.match((await sh('cat /etc/systemd/system/k3s-agent.service.env')).stdout, /^K3S_TOKEN="sekrit-token"$/m);

    // The killall script runs with nothing to kill, and the uninstall removes everything it made.
    assert.equal((await sh('/usr/local/bin/k3s-killall.sh >/dev/null 2>&1')).code, 0);
    const un = await sh('/usr/local/bin/k3s-agent-uninstall.sh >/dev/null 2>&1; echo "rc=$?"; ls -A /usr/local/bin; ls /etc/systemd/system | grep k3s; ls -d /etc/rancher/k3s /var/lib/rancher/k3s 2>&1 | grep -v "No such"; true');
    assert.equal(un.stdout.trim(), 'rc=0');
  });
});
