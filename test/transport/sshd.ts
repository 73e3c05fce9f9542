/**
 * The real OpenSSH server (/usr/sbin/sshd) on 127.0.0.1, started for a test
 * run with throwaway keys: a temp host key and a temp authorized_keys, all
 * generated with ssh-keygen here and removed by stop(). Also two throwaway
 * sudo users: one NOPASSWD, one that must give a password.
 * Needs root, openssh-server and sudo (.ci/run installs them).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SSHD = '/usr/sbin/sshd';
// Per process, so that runs side by side (several checkouts on one machine)
// never change or delete each other's users and sudoers rule.
export const NOPW_USER = `k8shatest-${process.pid}-nopw`;
export const PW_USER = `k8shatest-${process.pid}-pw`;
const SUDOERS = `/etc/sudoers.d/k8s-ha-test-${process.pid}`;

/** Users and rules that a run which ended without stop() (killed) left behind: their pid runs no more. */
function removeLeftovers(): void {
  const leftover = (pid: string): boolean => pid !== String(process.pid) && !existsSync(`/proc/${pid}`);
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const m = /^(k8shatest-(\d+)-(?:no)?pw):/.exec(line);
    if (m && leftover(m[2]!)) execFileSync('userdel', [m[1]!], { stdio: 'ignore' });
  }
  for (const f of readdirSync('/etc/sudoers.d')) {
    const m = /^k8s-ha-test-(\d+)$/.exec(f);
    if (m && leftover(m[1]!)) rmSync(join('/etc/sudoers.d', f), { force: true });
  }
}

/** Why these tests cannot run here, or undefined when they can. */
export function sshdUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (to run sshd and create test users)';
  if (!existsSync(SSHD)) return `needs ${SSHD} (apt-get install openssh-server)`;
  if (!existsSync('/usr/bin/sudo')) return 'needs sudo (apt-get install sudo)';
  return undefined;
}

export interface TestSshd {
  port: number;
  dir: string;
  /** The private key whose public half is authorized for root and both test users. */
  clientKey: string;
  /** The sudo password of PW_USER. */
  password: string;
  /** The listening sshd's pid. */
  readonly pid: number;
  /** Restart on the same port, optionally with a freshly generated host key. */
  restart(opts?: { newHostKey?: boolean }): Promise<void>;
  /** Successful logins so far (sshd's own log): one per TCP connection. */
  logins(): number;
  /** Kill every per-connection sshd process (and its commands): a dropped connection. */
  killSessions(): void;
  /** Stop sshd and remove its files, the sudoers rule and the users it created. */
  stop(): Promise<void>;
}

export async function startSshd(opts: { maxSessions?: number } = {}): Promise<TestSshd> {
  removeLeftovers();
  const dir = mkdtempSync(join(tmpdir(), 'k8s-ha-sshd-'));
  // sshd reads authorized_keys as the logging-in user; the private keys stay 0600.
  chmodSync(dir, 0o755);
  const createdUsers: string[] = [];
  let child: ChildProcess | undefined;
  const stopAll = async (): Promise<void> => {
    if (child) await stopChild(child);
    child = undefined;
    rmSync(SUDOERS, { force: true });
    for (const u of createdUsers) execFileSync('userdel', [u], { stdio: 'ignore' });
    createdUsers.length = 0;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const clientKey = join(dir, 'client_ed25519');
    keygen(clientKey);
    newHostKey(dir);
    writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${clientKey}.pub`), { mode: 0o644 });

    const password = randomBytes(12).toString('base64url');
    for (const u of [NOPW_USER, PW_USER]) {
      if (!userExists(u)) {
        execFileSync('useradd', ['-M', '-d', '/', '-s', '/bin/sh', u]);
        createdUsers.push(u);
      }
    }
    // A set password also unlocks the account: sshd refuses a locked one.
    execFileSync('chpasswd', { input: `${PW_USER}:${password}\n${NOPW_USER}:${randomBytes(12).toString('base64url')}\n` });
    writeFileSync(SUDOERS, `${NOPW_USER} ALL=(ALL) NOPASSWD: ALL\n${PW_USER} ALL=(ALL) ALL\n`, { mode: 0o440 });
    execFileSync('visudo', ['-cf', SUDOERS], { stdio: 'ignore' });

    const port = await freePort();
    const config = join(dir, 'sshd_config');
    writeFileSync(
      config,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${join(dir, 'host_ed25519')}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        // The keys live in a temp dir under /tmp, which StrictModes would reject.
        'StrictModes no',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        // PAM's session modules (loginuid) fail in containers; keys are all we need.
        'UsePAM no',
        'PermitRootLogin prohibit-password',
        `AllowUsers root ${NOPW_USER} ${PW_USER}`,
        `MaxSessions ${opts.maxSessions ?? 10}`,
        'LogLevel VERBOSE',
        '',
      ].join('\n'),
    );
    mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege-separation directory
    const log = join(dir, 'sshd.log');
    const launch = async (): Promise<void> => {
      child = spawn(SSHD, ['-D', '-f', config, '-E', log], { stdio: 'ignore' });
      await waitForPort(port, child);
    };
    await launch();

    return {
      port,
      dir,
      clientKey,
      password,
      get pid() {
        return child?.pid ?? -1;
      },
      async restart(o = {}) {
        if (child) await stopChild(child);
        if (o.newHostKey) newHostKey(dir);
        await launch();
      },
      logins() {
        return existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('Accepted publickey')).length : 0;
      },
      killSessions() {
        if (child?.pid) killDescendants(child.pid);
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Every process's command line (what `ps` shows), NUL separators as spaces. */
export function allCommandLines(): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      out.push(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' '));
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

function keygen(path: string): void {
  rmSync(path, { force: true });
  rmSync(`${path}.pub`, { force: true });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'k8s-ha-test', '-f', path]);
}

function newHostKey(dir: string): void {
  keygen(join(dir, 'host_ed25519'));
}

function userExists(name: string): boolean {
  try {
    execFileSync('id', [name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, proc: ChildProcess): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`sshd exited with ${proc.exitCode} before listening on ${port}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`sshd did not listen on 127.0.0.1:${port} within 10 s`);
}

async function stopChild(proc: ChildProcess): Promise<void> {
  if (proc.pid) killDescendants(proc.pid);
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  await exited;
}

function children(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      // The stat line is "pid (comm) state ppid ..."; comm may hold spaces.
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      // Gone already.
    }
  }
  return out;
}

/**
 * SIGKILL a process's whole tree, parents first: a session's sshd must die
 * before its command does, or it could still report the command's exit
 * status and the "drop" would look like an ordinary failed command. The tree
 * is listed before anything is killed, since orphans get a new parent.
 */
function killDescendants(pid: number): void {
  const tree: number[] = [];
  const walk = (p: number): void => {
    for (const c of children(p)) {
      tree.push(c);
      walk(c);
    }
  };
  walk(pid);
  for (const c of tree) {
    try {
      process.kill(c, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
}
