import { sh, type Command } from './quote.js';

/**
 * How a command gets root on the host:
 * - `none`: run as the login user (root already, or sudo turned off);
 * - `sudo`: `sudo -n`, which fails at once instead of asking for a password;
 * - `sudo-password`: `sudo -S`, the password answered on stdin, never on a command line.
 */
export type Elevation = 'none' | 'sudo' | 'sudo-password';

/**
 * Printed by sudo when it wants the password. A fixed, unusual text: the
 * transport writes the password only after seeing it, so a host where sudo
 * does not ask (NOPASSWD, cached credentials) never gets the password as the
 * command's own input.
 */
export const SUDO_PROMPT = '[k8s-ha: sudo password]';

/** Written to stderr by the command's shell once sudo let it run. */
export const SUDO_READY = 'k8s-ha: sudo ok';

/** Extra time the host-side `timeout` allows, so the transport's own timer fires first and reports. */
const HOST_GRACE_S = 2;

/**
 * The exact text sent over SSH for a command. The user's login shell (maybe
 * not POSIX) only runs `sudo`/`timeout`; the command itself runs in `sh -c`.
 * `timeout` kills the command (and its children) on the host even when the
 * channel is gone: closing an SSH channel does not stop a command without a tty.
 * LC_ALL=C keeps tools' messages in the English the parsers expect.
 */
export function remoteCommand(cmd: Command, how: Elevation, timeoutMs: number): string {
  const ready = how === 'sudo-password' ? `printf '%s\\n' '${SUDO_READY}' >&2; ` : '';
  const script = `${ready}LC_ALL=C; export LC_ALL; ${cmd.text}`;
  const seconds = Math.ceil(timeoutMs / 1000) + HOST_GRACE_S;
  const bounded = sh`timeout -k 5 ${seconds} sh -c ${script}`;
  switch (how) {
    case 'none':
      return bounded.text;
    case 'sudo':
      return sh`sudo -n -- ${bounded}`.text;
    case 'sudo-password':
      return sh`sudo -S -p ${SUDO_PROMPT} -- ${bounded}`.text;
  }
}

/** Known sudo refusals, with how to fix each. */
export function sudoHint(stderr: string, user: string): string | undefined {
  if (/sudo: (a terminal is|a password is) required/.test(stderr)) {
    return `sudo asks user "${user}" for a password: give the host a sudo password, or allow it NOPASSWD in /etc/sudoers.d`;
  }
  if (/is not in the sudoers file|is not allowed to run sudo/.test(stderr)) {
    return `user "${user}" may not use sudo on this host: add it to the sudo group (or /etc/sudoers.d), or connect as root`;
  }
  if (/incorrect password|Sorry, try again/.test(stderr)) {
    return `sudo did not accept the password for user "${user}": check the host's sudo password`;
  }
  if (/sudo: (command )?not found/.test(stderr)) {
    return `sudo is not installed on the host: install it, or connect as root`;
  }
  return undefined;
}
