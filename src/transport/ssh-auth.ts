import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import ssh2, { type AgentAuthMethod, type PublicKeyAuthMethod } from 'ssh2';
import { ConnectionError } from './host.js';

const { utils } = ssh2;

/** Which host, for messages. */
export interface Endpoint {
  name: string;
  address: string;
  port: number;
  user: string;
}

export interface AuthChoice {
  /** Tried in order. */
  methods: (PublicKeyAuthMethod | AgentAuthMethod)[];
  /** What was offered, for the "authentication failed" hint. */
  describe: string;
}

/**
 * The keys to offer: the host's keyFile, the agent (asked for, or when no
 * keyFile is given and SSH_AUTH_SOCK is set), and with neither given the
 * usual ~/.ssh/id_* files, as `ssh` would. An unusable key fails here, before
 * any connection, with what to do about it.
 */
export async function authMethods(
  at: Endpoint,
  target: { keyFile?: string; agent?: boolean },
  env: NodeJS.ProcessEnv,
): Promise<AuthChoice> {
  const home = env.HOME ?? homedir();
  const username = at.user;
  const methods: AuthChoice['methods'] = [];
  const described: string[] = [];
  const sock = env.SSH_AUTH_SOCK;
  const { keyFile, agent } = target;

  if (keyFile) {
    const path = keyFile.replace(/^~(?=$|\/)/, home);
    methods.push({ type: 'publickey', username, key: await readKey(at, path) });
    described.push(`key file ${path}`);
  }
  if (agent || (!keyFile && agent !== false && sock)) {
    if (!sock) {
      throw failed(at, 'agent authentication asked for, but SSH_AUTH_SOCK is not set',
        'start ssh-agent and ssh-add your key, or give the host a keyFile');
    }
    methods.push({ type: 'agent', username, agent: sock });
    described.push(`the keys in ssh-agent (${sock})`);
  }
  if (!keyFile && !agent) {
    for (const name of ['id_ed25519', 'id_ecdsa', 'id_rsa']) {
      const path = join(home, '.ssh', name);
      const key = await readFile(path).catch(() => undefined);
      // A passphrase-protected default key is skipped: the agent holds it, if anything does.
      if (!key || utils.parseKey(key) instanceof Error) continue;
      methods.push({ type: 'publickey', username, key });
      described.push(`key file ${path}`);
    }
  }
  if (!methods.length) {
    throw failed(at, 'no SSH key to log in with',
      'give the host a keyFile, or load a key into ssh-agent (SSH_AUTH_SOCK); none of ~/.ssh/id_{ed25519,ecdsa,rsa} is usable');
  }
  return { methods, describe: described.join(', then ') };
}

async function readKey(at: Endpoint, path: string): Promise<Buffer> {
  let key: Buffer;
  try {
    key = await readFile(path);
  } catch (err) {
    throw failed(at, `cannot read key file ${path}: ${(err as Error).message}`, "check the host's keyFile", err);
  }
  const parsed = utils.parseKey(key);
  if (parsed instanceof Error) {
    const encrypted = /passphrase|encrypted/i.test(parsed.message);
    throw failed(at, `cannot use key file ${path}: ${parsed.message}`,
      encrypted
        ? 'the key is protected by a passphrase: load it into ssh-agent (ssh-add) and use agent authentication'
        : 'keyFile must be a private key in OpenSSH or PEM format',
      parsed);
  }
  return key;
}

/** ssh2's connection failure as `NAME (address:port): connecting: reason`, with a hint for the usual causes. */
export function connectError(at: Endpoint, err: Error & { level?: string; code?: string }, auth: string): ConnectionError {
  const { address, port, user } = at;
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
    hint = 'sshd closed the connection: look at its log on the host; MaxStartups or a firewall may be refusing it';
  }
  return failed(at, reason, hint, err);
}

function failed(at: Endpoint, reason: string, hint: string | undefined, cause?: unknown): ConnectionError {
  return new ConnectionError(at.name, `${at.address}:${at.port}`, 'connecting', reason, hint, { cause });
}
