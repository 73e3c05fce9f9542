import type { Client, ClientChannel } from 'ssh2';
import { Readable, type Writable } from 'node:stream';
import { CommandError, CommandTimeoutError, type ExecOptions } from './host.js';
import type { RawResult } from './remote-files.js';
import { sudoHint, SUDO_PROMPT, SUDO_READY, type Elevation } from './remote-command.js';
import { isSecret, maskSecrets, type Secret } from '../util/secret.js';

/** The server refused to open another session channel (MaxSessions). */
export class ChannelRefused extends Error {}

export interface ChannelRun {
  /** For errors: the host's name, the login user, the command as shown (masked). */
  host: string;
  user: string;
  shown: string;
  /** The full text sent (remoteCommand). */
  text: string;
  how: Elevation;
  stdin: ExecOptions['stdin'];
  /** Where stdout goes as it arrives (ExecOptions.stdout); default: collected. */
  stdout?: Writable;
  sudoPassword: Secret | undefined;
  timeoutMs: number;
  secrets: readonly Secret[];
  /** The error for a connection lost under the command. */
  lost(cause: Error | undefined): Error;
  /** Lets the connection fail this command from outside (when it drops); returns the unregister function. */
  track(fail: (err: Error) => void): () => void;
}

/**
 * Run one command on its own channel. With `sudo-password` the password is
 * written only once sudo prints our prompt, and the command's stdin only once
 * the command reports that it runs: so the password never becomes the
 * command's input (sudo asks nothing under NOPASSWD or with cached
 * credentials), and a wrong password is never retried.
 */
export function runOnChannel(client: Client, r: ChannelRun): Promise<RawResult> {
  return new Promise<RawResult>((resolve, reject) => {
    let settled = false;
    let channel: ClientChannel | undefined;
    const stdout: Buffer[] = [];
    let stderr = '';
    let beforeSudo = '';
    let sudoRunning = r.how !== 'sudo-password';
    let promptsAnswered = 0;
    let code: number | null | undefined;

    const finish = (settle: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      untrack();
      settle();
    };
    const untrack = r.track((err) => finish(() => reject(err)));
    const timer = setTimeout(() => {
      // The host-side `timeout` kills the command itself; this only frees the channel.
      channel?.signal('KILL');
      channel?.close();
      finish(() => reject(new CommandTimeoutError(r.host, r.shown, r.timeoutMs, maskSecrets(stderr, r.secrets))));
    }, r.timeoutMs);

    const sendStdin = (ch: ClientChannel): void => {
      if (r.stdin === undefined) ch.end();
      else if (r.stdin instanceof Readable) {
        const src = r.stdin;
        // A source that fails (a corrupt archive) must not leave the command
        // waiting for more input: close the channel, which fails the command.
        src.once('error', (e: Error) => {
          ch.close();
          finish(() => reject(new CommandError(r.host, r.shown, null, `reading the input: ${e.message}`)));
        });
        src.pipe(ch);
      } else ch.end(isSecret(r.stdin) ? r.stdin.reveal() : r.stdin);
    };

    const onSudoStderr = (ch: ClientChannel, text: string): void => {
      beforeSudo += text;
      const ready = beforeSudo.indexOf(`${SUDO_READY}\n`);
      const prompts = (ready < 0 ? beforeSudo : beforeSudo.slice(0, ready)).split(SUDO_PROMPT).length - 1;
      if (prompts > promptsAnswered) {
        promptsAnswered = prompts;
        if (prompts > 1) {
          // A second prompt: the password was wrong. Answering again could lock the account.
          ch.close();
          finish(() => reject(new CommandError(r.host, r.shown, 1, 'sudo: incorrect password', '', sudoHint('incorrect password', r.user))));
          return;
        }
        ch.write(`${r.sudoPassword?.reveal() ?? ''}\n`);
      }
      if (ready >= 0) {
        sudoRunning = true;
        stderr = beforeSudo.slice(ready + SUDO_READY.length + 1);
        sendStdin(ch);
      }
    };

    client.exec(r.text, (err, ch) => {
      if (err) {
        const refused = /open failed|administratively prohibited|resource shortage/i.test(err.message);
        finish(() => reject(refused ? new ChannelRefused(err.message) : r.lost(err)));
        return;
      }
      channel = ch;
      if (settled) {
        ch.close();
        return;
      }
      const sink = r.stdout;
      if (sink) {
        ch.on('data', (d: Buffer) => {
          // Backpressure: a slow disk holds the remote command instead of our memory.
          if (!sink.write(d)) {
            ch.pause();
            sink.once('drain', () => ch.resume());
          }
        });
      } else ch.on('data', (d: Buffer) => stdout.push(d));
      ch.stderr.on('data', (d: Buffer) => {
        if (sudoRunning) stderr += d.toString('utf8');
        else onSudoStderr(ch, d.toString('utf8'));
      });
      ch.on('exit', (status: number | null) => {
        code = typeof status === 'number' ? status : null;
      });
      ch.on('close', () => {
        // No exit status: the connection went away under the command.
        if (code === undefined) {
          finish(() => reject(r.lost(undefined)));
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
