// Stand-in Galera data nodes on loopback, and the client side that talks to
// them through a real load balancer (test/unit/haproxy-writer-hold,
// nginx-writer-hold, haproxy-vip-release): a node is a TCP listener that
// greets with its name (MySQL's handshake is server-first, so the greeting
// says which node a connection reached) and an HTTP check that answers 200
// or 503 like k8s-ha-galera-check.
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface StandinNodeOptions {
  name: string;
  /** Default 127.0.0.1. */
  address?: string;
  port: number;
  checkPort: number;
  /**
   * 'keep' (default): greet and keep the session open, as MariaDB keeps a
   * kine connection between statements; 'close': greet and close it.
   */
  session?: 'keep' | 'close';
  /** The check's body, healthy or not. Default: empty. */
  checkBody?: (healthy: boolean) => string;
}

export class StandinNode {
  /** What the check answers: 200 when true, 503 when false. */
  healthy = true;
  /** Every session the node accepted, in order, with when it closed (performance.now()). */
  readonly sessions: { closedAt: number | null }[] = [];
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly checkPort: number;
  readonly #session: 'keep' | 'close';
  readonly #checkBody: (healthy: boolean) => string;
  readonly #open = new Set<Socket>();
  #tcp: Server | null = null;
  #http: HttpServer | null = null;

  constructor(o: StandinNodeOptions) {
    this.name = o.name;
    this.address = o.address ?? '127.0.0.1';
    this.port = o.port;
    this.checkPort = o.checkPort;
    this.#session = o.session ?? 'keep';
    this.#checkBody = o.checkBody ?? (() => '');
  }

  async start(): Promise<void> {
    this.#tcp = createServer((s) => {
      const rec: { closedAt: number | null } = { closedAt: null };
      this.sessions.push(rec);
      s.on('error', () => undefined);
      s.on('close', () => {
        rec.closedAt = performance.now();
        this.#open.delete(s);
      });
      if (this.#session === 'close') {
        s.end(`${this.name}\n`);
        return;
      }
      this.#open.add(s);
      s.write(`${this.name}\n`);
    });
    this.#http = createHttpServer((_req, res) => {
      res.writeHead(this.healthy ? 200 : 503);
      res.end(this.#checkBody(this.healthy));
    });
    await new Promise<void>((r) => this.#tcp!.listen(this.port, this.address, r));
    await new Promise<void>((r) => this.#http!.listen(this.checkPort, this.address, r));
  }

  /** Like a killed mariadbd: its sessions are cut, the node and its check refuse connections. */
  async kill(): Promise<void> {
    const tcp = this.#tcp;
    const http = this.#http;
    this.#tcp = this.#http = null;
    for (const s of this.#open) s.destroy();
    http?.closeAllConnections();
    await Promise.all([tcp && new Promise((r) => tcp.close(r)), http && new Promise((r) => http.close(r))]);
  }
}

async function freePort(host: string): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const p = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

/** `n` ports free on `host` (default 127.0.0.1; 0.0.0.0 for a port free on every loopback address). */
export function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  return Promise.all(Array.from({ length: n }, () => freePort(host)));
}

/**
 * One connection to 127.0.0.1:`port`: the name of the node that greeted it,
 * 'refused' when the load balancer closes it without one, or 'timeout' (3 s).
 */
export function connectOnce(port: number): Promise<string> {
  return new Promise((resolve) => {
    const c = createConnection({ host: '127.0.0.1', port });
    let buf = '';
    const done = (v: string) => {
      c.destroy();
      resolve(v);
    };
    c.setTimeout(3000, () => done('timeout'));
    c.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\n')) done(buf.trim());
    });
    c.on('end', () => done(buf.trim() || 'refused'));
    c.on('error', () => done('refused'));
  });
}

/** One connection of a probe: when it started (`from`) and was answered (`at`), ms after the probe began, and the answer. */
export interface ProbeResult {
  from: number;
  at: number;
  got: string;
}

/** Connect every 20 ms until `ms` after `during` has run, recording each connection. */
export async function probe(port: number, ms: number, during?: () => Promise<void> | void): Promise<ProbeResult[]> {
  const out: ProbeResult[] = [];
  const t0 = performance.now();
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      const from = performance.now() - t0;
      const got = await connectOnce(port);
      out.push({ from, at: performance.now() - t0, got });
      await sleep(20);
    }
  })();
  if (during) await during();
  await sleep(ms);
  stop = true;
  await loop;
  return out;
}

/** A session to 127.0.0.1:`port` kept open. */
export interface OpenSession {
  socket: Socket;
  /** The name of the node that greeted it. */
  greeting: string;
  /** When it closed (performance.now()). */
  closedAt: Promise<number>;
}

/** Open a session and wait for its greeting; rejects when none comes within `timeoutMs` (default 5000). */
export function openSession(port: number, timeoutMs = 5000): Promise<OpenSession> {
  return new Promise((resolve, reject) => {
    const c = createConnection({ host: '127.0.0.1', port });
    const closedAt = new Promise<number>((r) => c.on('close', () => r(performance.now())));
    c.on('error', () => undefined);
    const timer = setTimeout(() => reject(new Error(`no greeting through the load balancer on port ${port} within ${timeoutMs} ms`)), timeoutMs);
    c.once('data', (d) => {
      clearTimeout(timer);
      resolve({ socket: c, greeting: d.toString().trim(), closedAt });
    });
  });
}
