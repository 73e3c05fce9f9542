import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectSsh } from '../src/transport/ssh.js';
import type { HostKeyStore } from '../src/transport/hostkeys.js';
import type { Host } from '../src/transport/host.js';

/** Resolves true when `address:port` sends an SSH banner within `timeoutMs`. */
export function sshBanner(address: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: address, port });
    let buf = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.startsWith('SSH-')) done(true);
    });
    sock.on('error', () => done(false));
    sock.on('close', () => done(false));
  });
}

export interface ReadyTarget {
  name: string;
  address: string;
  keyFile: string;
}

/**
 * Waits until k8s-ha's own SSH transport logs in to the machine and runs a
 * command. A cheap banner probe comes first: before the machine's network is
 * up, a full SSH attempt would wait out ARP (seconds) each time.
 */
export async function waitSsh(t: ReadyTarget, hostKeys: HostKeyStore, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no SSH banner yet';
  while (Date.now() < deadline) {
    if (await sshBanner(t.address, 22, Math.min(500, Math.max(50, deadline - Date.now())))) {
      let host: Host | undefined;
      try {
        host = await connectSsh({ name: t.name, address: t.address, user: 'root', keyFile: t.keyFile, agent: false }, { hostKeys, connectTimeoutMs: 5_000 });
        return;
      } catch (e) {
        last = (e as Error).message;
      } finally {
        await host?.close();
      }
    }
    await sleep(50);
  }
  throw new Error(`${t.name}: not answering on SSH (${t.address}:22) after ${timeoutMs} ms: ${last}. Its console log is in the lab folder (machines/${t.name}/console.log).`);
}
