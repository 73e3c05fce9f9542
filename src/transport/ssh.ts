import ssh2, { type Client, type ServerHostKeyAlgorithm } from 'ssh2';
import {
  CommandError,
  ConnectionError,
  type ExecOptions,
  type ExecResult,
  type FileMeta,
  type Host,
  type WriteOptions,
} from './host.js';
import { fingerprint, hostKeyId, keyFromBlob, type HostKeyStore } from './hostkeys.js';
import { Semaphore } from './pool.js';
import type { Command } from './quote.js';
import { readFileVia, removeFileVia, statVia, writeFileVia, type RawResult } from './remote-files.js';
import { authMethods, connectError, type Endpoint } from './ssh-auth.js';
import { remoteCommand, sudoHint, type Elevation } from './remote-command.js';
import { ChannelRefused, runOnChannel } from './ssh-channel.js';
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
const { Client: SshClient } = ssh2;

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

/** A command in flight, failed from outside when its connection goes away. */
interface Pending {
  client: Client;
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
  /** The connection #conn resolved to, once it is up. */
  #current: Client | undefined;
  #closed = false;
  readonly #pending = new Set<Pending>();
  readonly #slots: Semaphore;
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
    this.#slots = new Semaphore(opts.maxChannels ?? 8);
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
    this.#current = undefined;
    this.#failPending(undefined, 'the connection was closed by k8s-ha', undefined);
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
        result = await runOnChannel(client, {
          host: this.name,
          user: this.user,
          shown,
          text: remoteCommand(cmd, how, timeoutMs),
          how,
          stdin: opts.stdin,
          stdout: opts.stdout,
          sudoPassword: this.#target.sudoPassword,
          timeoutMs,
          secrets,
          lost: (cause) => this.#lostError(shown, cause, 'the connection was lost'),
          track: (fail) => {
            const p: Pending = { client, fail: (reason, cause) => fail(this.#lostError(shown, cause, reason)) };
            this.#pending.add(p);
            return () => this.#pending.delete(p);
          },
        });
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
    const [auth, pinned] = await Promise.all([
      authMethods(this.#where(), this.#target, this.#opts.env ?? process.env),
      this.#opts.hostKeys.lookup(id),
    ]);
    const pinnedType = pinned?.split(' ')[0];
    const preferred = pinnedType === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : pinnedType ? [pinnedType] : [];
    const algorithms = [
      ...HOST_KEY_ALGORITHMS.filter((a) => preferred.includes(a)),
      ...HOST_KEY_ALGORITHMS.filter((a) => !preferred.includes(a)),
    ];

    const client = new SshClient();
    // The host-key check's own error, more useful than ssh2's "verification failed".
    let keyRefused: Error | undefined;
    // Why an established connection went down, for the commands it takes with it.
    let lastError: Error | undefined;
    let ready = false;
    return new Promise<Client>((resolve, reject) => {
      client.on('ready', () => {
        ready = true;
        this.connections++;
        if (!this.#closed) this.#current = client;
        resolve(client);
      });
      client.on('error', (err: Error & { level?: string; code?: string }) => {
        if (ready) lastError = err;
        else reject(keyRefused ?? connectError(this.#where(), err, auth.describe));
      });
      client.on('close', () => {
        if (!ready) {
          reject(keyRefused ?? new ConnectionError(this.name, this.#endpoint, 'connecting', 'the server closed the connection during the handshake',
            'look at sshd\'s log on the host (journalctl -u ssh); MaxStartups may be refusing connections'));
          return;
        }
        // Forget this connection (not a newer one) so the next command reconnects.
        if (this.#current === client) {
          this.#current = undefined;
          this.#conn = undefined;
        }
        this.#failPending(client, 'the connection was lost', lastError);
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
      try {
        await store.record(id, offered);
      } catch (err) {
        throw new ConnectionError(this.name, this.#endpoint, 'connecting',
          `cannot pin the host key${store.location ? ` in ${store.location}` : ''}: ${(err as Error).message}`,
          'make the state file writable: k8s-ha refuses to talk to a host whose key it cannot remember', { cause: err });
      }
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
      { hostKeyChanged: true },
    );
  }

  #where(): Endpoint {
    return { name: this.name, address: this.address, port: this.port, user: this.user };
  }

  #lostError(shown: string, cause: Error | undefined, reason: string): ConnectionError {
    return new ConnectionError(this.name, this.#endpoint, `running \`${shown}\``,
      `${reason}${cause ? ` (${cause.message})` : ''}`,
      'the command may or may not have run to the end; apply again once the host is reachable (it converges)', { cause });
  }

  #failPending(client: Client | undefined, reason: string, cause: Error | undefined): void {
    for (const p of [...this.#pending]) if (!client || p.client === client) p.fail(reason, cause);
  }
}
