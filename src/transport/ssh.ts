import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import ssh2, { type AuthMethod, type Client, type ClientChannel, type ServerHostKeyAlgorithm } from 'ssh2';
import {
  CommandError,
  CommandTimeoutError,
  ConnectionError,
  type ExecOptions,
  type ExecResult,
  type FileMeta,
  type Host,
  type WriteOptions,
} from './host.js';
import { fingerprint, hostKeyId, keyFromBlob, type HostKeyStore } from './hostkeys.js';
import type { Command } from './quote.js';
import { readFileVia, removeFileVia, statVia, writeFileVia, type RawResult } from './remote-files.js';
import { remoteCommand, sudoHint, SUDO_PROMPT, SUDO_READY, type Elevation } from './remote-command.js';
import { isSecret, maskSecrets, type Secret } from '../util/secret.js';

/** How to reach one host. */
export interface SshTarget {
  /** The host's name in the cluster file; every message starts with it. */
  name: string;
  address: string;
  /** Default: 22. */
  port?: number;
  /** Default: root. */
  user?: string;
  /** A private key (OpenSSH or PEM); `~` is expanded. Default: the agent and ~/.ssh/id_{ed25519,ecdsa,rsa}. */
  keyFile?: string;
  /** Use the keys in ssh-agent (SSH_AUTH_SOCK). Default: only when no keyFile is given. */
  agent?: boolean;
  /** Run commands as root through sudo. Default: true when user is not root. */
  sudo?: boolean;
  /** For sudo when the user is not NOPASSWD; sent on stdin only. Default: none (sudo -n). */
  sudoPassword?: Secret;
}

export interface SshOptions {
  /** Where host keys are pinned. */
  hostKeys: HostKeyStore;
  /** TCP connect, handshake and authentication together. Default: 20000. */
  connectTimeoutMs?: number;
  /** Default timeout of one command (ExecOptions.timeoutMs overrides). Default: 120000. */
  commandTimeoutMs?: number;
  /** Host names (SshTarget.name) whose changed host key is accepted and re-pinned. Default: none. */
  acceptChangedKeyFor?: ReadonlySet<string>;
  /** Told when a host's key is pinned for the first time (or re-pinned), so the CLI can show it. */
  onHostKeyRecorded?: (event: { host: string; id: string; fingerprint: string; replaced: boolean }) => void;
  /**
   * Session channels open at once on the connection. OpenSSH allows 10
   * (MaxSessions); when a server allows fewer, the limit drops to what it took.
   * Default: 8.
   */
  maxChannels?: number;
  /** For tests: the environment that SSH_AUTH_SOCK and the home directory come from. Default: process.env. */
  env?: NodeJS.ProcessEnv;
}

/** Connect to a host (pinning or checking its key) and return it ready for commands. */
export async function connectSsh(target: SshTarget, opts: SshOptions): Promise<SshHost> {
  const host = new SshHost(target, opts);
  await host.connect();
  return host;
}

// ssh2 is CommonJS; Node's ESM loader does not see all of its named exports.
const { Client: SshClient, utils } = ssh2;

// What ssh2 offers by default, used to put the pinned key's type first (as
// OpenSSH does): otherwise a host with several keys could answer with another
// one, which would look like a changed key.
const HOST_KEY_ALGORITHMS: ServerHostKeyAlgorithm[] = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
];

interface Pending {
  fail(reason: string, cause: Error | undefined): void;
}

/**
 * One SSH connection to one host, reused by every command of the run: each
 * command is a channel on it, at most `maxChannels` at once. A dropped
 * connection fails the commands in flight; the next call connects again.
 */
export class SshHost implements Host {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly user: string;
  readonly #target: SshTarget;
  readonly #opts: SshOptions;
  readonly #endpoint: string;
  #conn: Promise<Client> | undefined;
  #closed = false;
  readonly #pending = new Set<Pending>();
  readonly #slots: Slots;
  /** TCP connections opened so far: 1 for a whole run unless one was lost. */
  connections = 0;

  constructor(target: SshTarget, opts: SshOptions) {
    this.#target = target;
    this.#opts = opts;
    this.name = target.name;
    this.address = target.address;
    this.port = target.port ?? 22;
    this.user = target.user ?? 'root';
    this.#endpoint = `${this.address}:${this.port}`;
    this.#slots = new Slots(opts.maxChannels ?? 8);
  }

  /** Channels used at once: maxChannels, or less once the server refused one. */
  get maxChannels(): number {
    return this.#slots.limit;
  }

  /** Opens the connection now (it is otherwise opened by the first command). */
  async connect(): Promise<void> {
    await this.#client();
  }

  async exec(cmd: Command, opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.#run(cmd, opts);
    return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr };
  }

  readFile(path: string): Promise<Buffer | null> {
    return readFileVia(this.#runRaw, this.name, path);
  }

  stat(path: string): Promise<FileMeta | null> {
    return statVia(this.#runRaw, this.name, path);
  }

  writeFile(path: string, content: string | Buffer, opts?: WriteOptions): Promise<void> {
    return writeFileVia(this.#runRaw, this.name, path, content, opts);
  }

  removeFile(path: string): Promise<void> {
    return removeFileVia(this.#runRaw, path);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const conn = this.#conn;
    this.#conn = undefined;
    this.#failPending('the connection was closed by k8s-ha', undefined);
    if (!conn) return;
    const client = await conn.catch(() => undefined);
    if (!client) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        client.destroy();
        resolve();
      }, 2000);
      client.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      client.end();
    });
  }

  readonly #runRaw = (cmd: Command, opts?: ExecOptions): Promise<RawResult> => this.#run(cmd, opts ?? {});

  #elevation(sudo: boolean | undefined): Elevation {
    const wanted = (this.#target.sudo ?? this.user !== 'root') && this.user !== 'root' && sudo !== false;
    if (!wanted) return 'none';
    return this.#target.sudoPassword ? 'sudo-password' : 'sudo';
  }

  async #run(cmd: Command, opts: ExecOptions): Promise<RawResult> {
    const how = this.#elevation(opts.sudo);
    const timeoutMs = opts.timeoutMs ?? this.#opts.commandTimeoutMs ?? 120_000;
    const secrets: Secret[] = [...(opts.secrets ?? [])];
    if (this.#target.sudoPassword) secrets.push(this.#target.sudoPassword);
    if (isSecret(opts.stdin)) secrets.push(opts.stdin);
    const shown = maskSecrets(cmd.text, secrets);

    let result: RawResult;
    for (;;) {
      const client = await this.#client();
      await this.#slots.acquire();
      try {
        result = await this.#channel(client, shown, remoteCommand(cmd, how, timeoutMs), how, opts.stdin, timeoutMs, secrets);
        break;
      } catch (err) {
        // The server allows fewer sessions than we opened: use what it allows.
        if (err instanceof ChannelRefused && this.#slots.active > 1) {
          this.#slots.limit = this.#slots.active - 1;
          continue;
        }
        if (err instanceof ChannelRefused) {
          throw new ConnectionError(this.name, this.#endpoint, `running \`${shown}\``, `the server refused a session channel: ${err.message}`,
            'check MaxSessions in the host\'s sshd_config');
        }
        throw err;
      } finally {
        this.#slots.release();
      }
    }

    if (result.code !== 0 && !opts.allowFailure) {
      const hint = how === 'none' ? undefined : sudoHint(result.stderr, this.user);
      throw new CommandError(
        this.name,
        shown,
        result.code,
        maskSecrets(result.stderr, secrets),
        maskSecrets(result.stdout.toString('utf8'), secrets),
        hint,
      );
    }
    return result;
  }

  #channel(
    client: Client,
    shown: string,
    text: string,
    how: Elevation,
    stdin: ExecOptions['stdin'],
    timeoutMs: number,
    secrets: readonly Secret[],
  ): Promise<RawResult> {
    return new Promise<RawResult>((resolve, reject) => {
      let settled = false;
      let channel: ClientChannel | undefined;
      const pending: Pending = { fail: (reason, cause) => finish(() => reject(this.#lostError(shown, cause, reason))) };
      const finish = (settle: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#pending.delete(pending);
        settle();
      };
      this.#pending.add(pending);
      const timer = setTimeout(() => {
        // The host-side `timeout` kills the command itself; this only frees the channel.
        channel?.signal('KILL');
        channel?.close();
        finish(() => reject(new CommandTimeoutError(this.name, shown, timeoutMs, maskSecrets(stderr, secrets))));
      }, timeoutMs);

      const stdout: Buffer[] = [];
      let stderr = '';
      let beforeSudo = '';
      let sudoRunning = how !== 'sudo-password';
      let promptsAnswered = 0;
      let code: number | null | undefined;

      const sendStdin = (ch: ClientChannel): void => {
        if (stdin === undefined) ch.end();
        else ch.end(isSecret(stdin) ? stdin.reveal() : stdin);
      };

      client.exec(text, (err, ch) => {
        if (err) {
          finish(() => reject(/open failed|administratively prohibited|resource shortage/i.test(err.message)
            ? new ChannelRefused(err.message)
            : this.#lostError(shown, err, 'the connection was lost')));
          return;
        }
        channel = ch;
        if (settled) {
          ch.close();
          return;
        }
        ch.on('data', (d: Buffer) => stdout.push(d));
        ch.stderr.on('data', (d: Buffer) => {
          if (sudoRunning) {
            stderr += d.toString('utf8');
            return;
          }
          beforeSudo += d.toString('utf8');
          const ready = beforeSudo.indexOf(`${SUDO_READY}\n`);
          const prompts = (ready < 0 ? beforeSudo : beforeSudo.slice(0, ready)).split(SUDO_PROMPT).length - 1;
          if (prompts > promptsAnswered) {
            promptsAnswered = prompts;
            if (prompts > 1) {
              // A second prompt: the password was wrong. Asking again would only lock the account.
              ch.close();
              finish(() => reject(new CommandError(this.name, shown, null, 'sudo: incorrect password', '',
                sudoHint('incorrect password', this.user))));
              return;
            }
            ch.write(`${this.#target.sudoPassword?.reveal() ?? ''}\n`);
          }
          if (ready >= 0) {
            sudoRunning = true;
            stderr = beforeSudo.slice(ready + SUDO_READY.length + 1);
            sendStdin(ch);
          }
        });
        ch.on('exit', (status: number | null) => {
          code = typeof status === 'number' ? status : null;
        });
        ch.on('close', () => {
          if (code === undefined) {
            // No exit status: the connection went away under the command.
            finish(() => reject(this.#lostError(shown, undefined, 'the connection was lost')));
            return;
          }
          // sudo failed before the command ran: its own messages are the error.
          if (!sudoRunning) stderr = beforeSudo.split(SUDO_PROMPT).join('');
          finish(() => resolve({ code: code ?? null, stdout: Buffer.concat(stdout), stderr }));
        });
        if (sudoRunning) sendStdin(ch);
      });
    });
  }

  #client(): Promise<Client> {
    if (this.#closed) {
      return Promise.reject(new ConnectionError(this.name, this.#endpoint, 'running a command', 'the host was already closed', 'open a new connection'));
    }
    if (!this.#conn) {
      const conn = this.#open();
      this.#conn = conn;
      // A failed attempt is forgotten so that a later call tries again.
      conn.catch(() => {
        if (this.#conn === conn) this.#conn = undefined;
      });
    }
    return this.#conn;
  }

  async #open(): Promise<Client> {
    const id = hostKeyId(this.address, this.port);
    const [auth, pinned] = await Promise.all([this.#auth(), this.#opts.hostKeys.lookup(id)]);
    const pinnedType = pinned?.split(' ')[0];
    const preferred = pinnedType === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : pinnedType ? [pinnedType] : [];
    const algorithms = [
      ...HOST_KEY_ALGORITHMS.filter((a) => preferred.includes(a)),
      ...HOST_KEY_ALGORITHMS.filter((a) => !preferred.includes(a)),
    ];

    const client = new SshClient();
    let keyRefused: Error | undefined;
    let ready = false;
    return new Promise<Client>((resolve, reject) => {
      client.on('ready', () => {
        ready = true;
        this.connections++;
        resolve(client);
      });
      client.on('error', (err: Error & { level?: string; code?: string }) => {
        if (ready) {
          lastError = err;
          return;
        }
        reject(keyRefused ?? this.#connectError(err, auth.describe));
      });
      let lastError: Error | undefined;
      client.on('close', () => {
        if (!ready) {
          reject(keyRefused ?? new ConnectionError(this.name, this.#endpoint, 'connecting', 'the server closed the connection during the handshake',
            'look at sshd\'s log on the host (journalctl -u ssh); MaxStartups may be refusing connections'));
          return;
        }
        // Only this connection's loss matters; a newer one may already be in use.
        if (this.#conn && !this.#closed) {
          void this.#conn.then((c) => {
            if (c === client) this.#conn = undefined;
          }, () => undefined);
        }
        this.#failPending('the connection was lost', lastError);
      });
      client.connect({
        host: this.address,
        port: this.port,
        username: this.user,
        authHandler: auth.methods,
        readyTimeout: this.#opts.connectTimeoutMs ?? 20_000,
        // Notice a silently dead peer within ~30 s, so no command waits forever.
        keepaliveInterval: 10_000,
        keepaliveCountMax: 3,
        algorithms: { serverHostKey: algorithms },
        hostVerifier: (blob: Buffer, verify: (ok: boolean) => void) => {
          this.#checkHostKey(id, keyFromBlob(blob), pinned).then(verify, (err: Error) => {
            keyRefused = err;
            verify(false);
          });
        },
      });
    });
  }

  async #checkHostKey(id: string, offered: string, pinned: string | undefined): Promise<boolean> {
    const store = this.#opts.hostKeys;
    if (pinned === offered) return true;
    if (pinned === undefined || this.#opts.acceptChangedKeyFor?.has(this.name)) {
      await store.record(id, offered);
      this.#opts.onHostKeyRecorded?.({ host: this.name, id, fingerprint: fingerprint(offered), replaced: pinned !== undefined });
      return true;
    }
    const where = store.location ? `remove the line for ${id} from ${store.location}` : `remove the pinned key for ${id}`;
    throw new ConnectionError(
      this.name,
      this.#endpoint,
      'connecting',
      `the host key has changed: pinned ${fingerprint(pinned)}, offered ${fingerprint(offered)}. Refusing to connect: someone may be intercepting the connection`,
      `if the host was reinstalled or its key replaced on purpose, check the new fingerprint on the host ` +
        `(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then ${where}, or run again with --accept-new-host-key ${this.name}`,
    );
  }

  async #auth(): Promise<{ methods: AuthMethod[]; describe: string }> {
    const env = this.#opts.env ?? process.env;
    const home = env.HOME ?? homedir();
    const username = this.user;
    const methods: AuthMethod[] = [];
    const described: string[] = [];
    const sock = env.SSH_AUTH_SOCK;
    const { keyFile, agent } = this.#target;

    if (keyFile) {
      const path = keyFile.replace(/^~(?=$|\/)/, home);
      methods.push({ type: 'publickey', username, key: await this.#readKey(path) } as AuthMethod);
      described.push(`key file ${path}`);
    }
    if (agent || (!keyFile && agent !== false && sock)) {
      if (!sock) {
        throw new ConnectionError(this.name, this.#endpoint, 'connecting', 'agent authentication asked for, but SSH_AUTH_SOCK is not set',
          'start ssh-agent and ssh-add your key, or give the host a keyFile');
      }
      methods.push({ type: 'agent', username, agent: sock } as AuthMethod);
      described.push(`the keys in ssh-agent (${sock})`);
    }
    if (!keyFile && !agent) {
      for (const name of ['id_ed25519', 'id_ecdsa', 'id_rsa']) {
        const path = join(home, '.ssh', name);
        const key = await readFile(path).catch(() => undefined);
        if (!key || utils.parseKey(key) instanceof Error) continue;
        methods.push({ type: 'publickey', username, key } as AuthMethod);
        described.push(`key file ${path}`);
      }
    }
    if (!methods.length) {
      throw new ConnectionError(this.name, this.#endpoint, 'connecting', 'no SSH key to log in with',
        `give the host a keyFile, or load a key into ssh-agent (SSH_AUTH_SOCK); none of ~/.ssh/id_{ed25519,ecdsa,rsa} is usable`);
    }
    return { methods, describe: described.join(', then ') };
  }

  async #readKey(path: string): Promise<Buffer> {
    let key: Buffer;
    try {
      key = await readFile(path);
    } catch (err) {
      throw new ConnectionError(this.name, this.#endpoint, 'connecting', `cannot read key file ${path}: ${(err as Error).message}`,
        'check the host\'s keyFile', { cause: err });
    }
    const parsed = utils.parseKey(key);
    if (parsed instanceof Error) {
      const encrypted = /passphrase|encrypted/i.test(parsed.message);
      throw new ConnectionError(this.name, this.#endpoint, 'connecting', `cannot use key file ${path}: ${parsed.message}`,
        encrypted ? 'the key is protected by a passphrase: load it into ssh-agent (ssh-add) and use agent authentication'
          : 'keyFile must be a private key in OpenSSH or PEM format', { cause: parsed });
    }
    return key;
  }

  #connectError(err: Error & { level?: string; code?: string }, auth: string): ConnectionError {
    const { address, port, user } = this;
    let reason = err.message;
    let hint: string | undefined;
    if (err.level === 'client-authentication') {
      reason = 'authentication failed';
      hint = `the host refused user "${user}" with ${auth}: check that the matching public key is in ~${user}/.ssh/authorized_keys on the host, and the user name`;
    } else if (err.code === 'ECONNREFUSED') {
      reason = 'connection refused';
      hint = `is sshd running on ${address} and listening on port ${port}?`;
    } else if (err.level === 'client-timeout' || ['ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN'].includes(err.code ?? '')) {
      reason = err.level === 'client-timeout' ? 'timed out' : `${err.code}: ${err.message}`;
      hint = `is ${address} up and reachable from here, does a firewall let port ${port} through, and is sshd running?`;
    } else if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') {
      hint = `the name ${address} does not resolve: check the host's address`;
    } else if (err.code === 'ECONNRESET') {
      hint = `sshd closed the connection: look at its log on the host; MaxStartups or a firewall may be refusing it`;
    }
    return new ConnectionError(this.name, this.#endpoint, 'connecting', reason, hint, { cause: err });
  }

  #lostError(shown: string, cause: Error | undefined, reason: string): ConnectionError {
    return new ConnectionError(this.name, this.#endpoint, `running \`${shown}\``,
      `${reason}${cause ? ` (${cause.message})` : ''}`,
      'the command may or may not have run to the end; apply again once the host is reachable (it converges)', { cause });
  }

  #failPending(reason: string, cause: Error | undefined): void {
    for (const p of [...this.#pending]) p.fail(reason, cause);
  }
}

/** The server refused to open another session channel (MaxSessions). */
class ChannelRefused extends Error {}

/** A counting semaphore whose limit may be lowered while in use. */
class Slots {
  active = 0;
  readonly #waiting: (() => void)[] = [];
  constructor(public limit: number) {}

  acquire(): Promise<void> {
    if (this.active < this.limit) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiting.push(() => {
      this.active++;
      resolve();
    }));
  }

  release(): void {
    this.active--;
    while (this.active < this.limit && this.#waiting.length) this.#waiting.shift()?.();
  }
}
