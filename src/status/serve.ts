import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from '../engine/errors.js';
import { statusToJSON, type StatusSnapshot } from './model.js';
import { PAGE_CSS, PAGE_JS } from './page/assets.js';
import { pageModel, type PageContext, type PageModel } from './page/model.js';
import { liveParts, renderDocument, type CollectorState, type PageView } from './page/render.js';
import { changes, Timeline } from './page/timeline.js';

/**
 * `k8s-ha status --serve`: one HTTP server in the CLI process that runs the
 * status collector in a loop and serves the page, its two assets, a
 * server-sent event stream of rendered updates and the same JSON as
 * `status --json`. Read-only (GET and HEAD only), loopback unless asked,
 * bounded everywhere: open pages, a slow reader's buffer, each collection.
 */
export interface ServeOptions {
  /** One collection; may hang or throw: the loop bounds it by timeoutMs. */
  collect: (signal: AbortSignal) => Promise<StatusSnapshot>;
  context?: PageContext;
  /** Address and port to bind; port 0 picks a free one. */
  host: string;
  port: number;
  /** Bind an address other than loopback. Default false: refused. */
  allowRemote?: boolean;
  /** Time from the start of one collection to the start of the next. Default 2000. */
  refreshMs?: number;
  /** A collection that takes longer marks the page stale. Default 10000. */
  timeoutMs?: number;
  /** Open event streams (tabs) at once; one more is refused with 503. Default 32. */
  maxClients?: number;
  /** Heartbeat on each stream (keeps proxies from cutting it, lets the page see the server is alive). Default 10000. */
  pingMs?: number;
  now?: () => Date;
  /** Told of each finished round (tests, the benchmark). */
  onRound?: (r: { model: PageModel | null; collector: CollectorState; ms: number }) => void;
}

const MAX_BUFFERED = 1 << 20;

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.')) || h === '::ffff:127.0.0.1';
}

/** `127.0.0.1:8440`, `[::1]:8440`, `0.0.0.0:80`, or a port alone (loopback). */
export function parseListen(value: string, flag = '--serve'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value) ?? (/^\d+$/.test(value) ? [value, undefined, '127.0.0.1', value] : null);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || !Number.isInteger(port) || port < 0 || port > 65535 || (host !== 'localhost' && !isIP(host))) {
    throw new UserError(`status: ${flag} takes ADDRESS:PORT (e.g. 127.0.0.1:8440, [::1]:8440) or a port, not "${value}"`);
  }
  return { host, port };
}

/** Refuses a non-loopback address unless allowed (checked before any host is contacted). */
export function checkListen(host: string, port: number, allowRemote: boolean): void {
  if (!isLoopback(host) && !allowRemote) {
    throw new UserError(`status: --serve ${host}:${port} is not a loopback address; the page shows the cluster's topology (hosts, addresses, versions) to anyone who reaches it, with no login. Add --allow-remote to serve it there anyway, or use 127.0.0.1:${port} and an SSH tunnel`);
  }
}

export class StatusServer {
  readonly #o: Required<Pick<ServeOptions, 'refreshMs' | 'timeoutMs' | 'maxClients' | 'pingMs'>> & ServeOptions;
  readonly #server: Server;
  readonly #clients = new Set<ServerResponse>();
  readonly #timeline = new Timeline();
  #model: PageModel | null = null;
  #lastVipHolder: string | null = null;
  #snapshot: StatusSnapshot | null = null;
  #collector: CollectorState;
  #payload = '';
  #closed = false;
  #loop: Promise<void> = Promise.resolve();
  #wake = new AbortController();
  #ping: NodeJS.Timeout | undefined;
  /** Rounds given up on that are still running: at most two are left behind. */
  #abandoned = 0;
  rounds = 0;

  private constructor(o: ServeOptions) {
    this.#o = { refreshMs: 2000, timeoutMs: 10_000, maxClients: 32, pingMs: 10_000, ...o };
    this.#collector = { state: 'starting', refreshMs: this.#o.refreshMs, timeoutMs: this.#o.timeoutMs };
    this.#server = createServer((req, res) => this.#handle(req, res));
    // Bounds plain requests too, not only event streams.
    this.#server.maxConnections = this.#o.maxClients + 16;
    this.#server.requestTimeout = 10_000;
    this.#render();
  }

  /** Binds (refusing a non-loopback address without allowRemote) and starts collecting. */
  static async start(o: ServeOptions): Promise<StatusServer> {
    checkListen(o.host, o.port, o.allowRemote === true);
    const s = new StatusServer(o);
    await new Promise<void>((resolve, reject) => {
      s.#server.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'EADDRINUSE' ? new UserError(`status: ${o.host}:${o.port} is already in use; pick another port with --serve ADDRESS:PORT`) : e));
      s.#server.listen(o.port, o.host, () => resolve());
    });
    s.#loop = s.#run();
    s.#ping = setInterval(() => s.#broadcast('event: ping\ndata: \n\n'), s.#o.pingMs);
    return s;
  }

  get url(): string {
    const a = this.#server.address() as AddressInfo;
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/`;
  }

  get clients(): number {
    return this.#clients.size;
  }

  get collector(): CollectorState {
    return this.#collector;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#wake.abort();
    clearInterval(this.#ping);
    for (const c of this.#clients) c.destroy();
    this.#clients.clear();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await this.#loop;
  }

  async #run(): Promise<void> {
    let pending: { round: Promise<StatusSnapshot>; ac: AbortController } | null = null;
    let waits = 0;
    while (!this.#closed) {
      const t0 = Date.now();
      // A round that overran is waited for again instead of starting another: a hung collector never piles up.
      const ac: AbortController = pending?.ac ?? new AbortController();
      const round: Promise<StatusSnapshot> = pending?.round ?? this.#o.collect(ac.signal);
      pending = null;
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        round.then((snap) => ({ snap }), (e: unknown) => ({ error: e instanceof Error ? e.message : String(e) })),
        new Promise<{ timeout: true }>((resolve) => (timer = setTimeout(() => resolve({ timeout: true }), this.#o.timeoutMs))),
      ]);
      clearTimeout(timer);
      if (this.#closed) break;
      this.rounds++;
      const at = (this.#o.now ?? (() => new Date()))().toISOString();
      if ('snap' in outcome) {
        waits = 0;
        const model = pageModel(outcome.snap, this.#o.context);
        this.#timeline.add(...changes(this.#model, model, this.#lastVipHolder));
        this.#lastVipHolder = model.vipHolder ?? this.#lastVipHolder;
        if (this.#collector.state === 'stale') this.#timeline.add({ at: model.at, subject: 'collector', health: 'ok', text: 'the collector answers again' });
        this.#model = model;
        this.#snapshot = outcome.snap;
        this.#collector = { state: 'fresh', refreshMs: this.#o.refreshMs, timeoutMs: this.#o.timeoutMs };
      } else {
        const why = 'timeout' in outcome ? `The collector has not finished within ${this.#o.timeoutMs / 1000} s.` : `The collector failed: ${outcome.error}`;
        if ('timeout' in outcome) {
          // Waited for again (no second collection piles onto a slow one); given up after three
          // windows, unless two given-up rounds still run.
          if (++waits < 3 || this.#abandoned >= 2) pending = { round, ac };
          else {
            waits = 0;
            ac.abort();
            this.#abandoned++;
            void round.catch(() => undefined).finally(() => this.#abandoned--);
          }
        } else waits = 0;
        if (this.#collector.state !== 'stale') this.#timeline.add({ at, subject: 'collector', health: 'unknown', text: `data stale: ${why}` });
        this.#collector = { state: 'stale', why, since: this.#collector.state === 'stale' ? this.#collector.since : at, refreshMs: this.#o.refreshMs, timeoutMs: this.#o.timeoutMs };
      }
      this.#render();
      this.#broadcast(this.#payload);
      this.#o.onRound?.({ model: this.#model, collector: this.#collector, ms: Date.now() - t0 });
      // The next round starts refreshMs after this one did (at once when a round overran).
      const rest = Math.max(0, this.#o.refreshMs - (Date.now() - t0));
      if (rest > 0) await sleep(rest, undefined, { signal: this.#wake.signal }).catch(() => undefined);
    }
  }

  #view(): PageView {
    return { model: this.#model, timeline: this.#timeline.entries, collector: this.#collector };
  }

  #render(): void {
    this.#payload = `event: status\ndata: ${JSON.stringify(liveParts(this.#view()))}\n\n`;
  }

  #broadcast(chunk: string): void {
    for (const c of this.#clients) this.#send(c, chunk);
  }

  #send(c: ServerResponse, chunk: string): void {
    if (c.destroyed || c.writableEnded) return void this.#clients.delete(c);
    // A reader that stopped reading is cut off rather than buffered for without end.
    if (c.writableLength > MAX_BUFFERED) {
      this.#clients.delete(c);
      c.destroy();
      return;
    }
    c.write(chunk);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const common = {
      'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-store',
    };
    // DNS rebinding: a page served on loopback answers only to loopback names.
    const hostHeader = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (!this.#o.allowRemote && !isLoopback(hostHeader)) {
      res.writeHead(421, { ...common, 'content-type': 'text/plain; charset=utf-8' }).end(`this page answers on loopback names only (Host: ${hostHeader || 'none'}); open ${this.url}\n`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...common, allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('read-only: GET and HEAD only\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    const body = (type: string, text: string, code = 200, extra: Record<string, string> = {}) => {
      res.writeHead(code, { ...common, ...extra, 'content-type': type, 'content-length': Buffer.byteLength(text) });
      res.end(req.method === 'HEAD' ? undefined : text);
    };
    switch (path) {
      case '/':
      case '/index.html':
        return body('text/html; charset=utf-8', renderDocument(this.#view(), { cssPath: '/assets/page.css', jsPath: '/assets/page.js', eventsPath: '/events', jsonPath: '/status.json', quietMs: 2 * this.#o.pingMs + this.#o.timeoutMs }));
      case '/assets/page.css':
        return body('text/css; charset=utf-8', PAGE_CSS);
      case '/assets/page.js':
        return body('text/javascript; charset=utf-8', PAGE_JS);
      case '/status.json':
        if (!this.#snapshot) return body('application/json', JSON.stringify({ error: 'no snapshot yet', collector: this.#collector }) + '\n', 503, { 'retry-after': '2' });
        return body('application/json', JSON.stringify(statusToJSON(this.#snapshot), null, 2) + '\n', 200, { 'x-k8s-ha-collector': this.#collector.state });
      case '/events':
        return this.#stream(req, res, common);
      default:
        return body('text/plain; charset=utf-8', 'not found: this server has /, /events and /status.json\n', 404);
    }
  }

  #stream(req: IncomingMessage, res: ServerResponse, common: Record<string, string>): void {
    if (this.#clients.size >= this.#o.maxClients) {
      res.writeHead(503, { ...common, 'retry-after': '10', 'content-type': 'text/plain; charset=utf-8' }).end(`too many open status pages (${this.#o.maxClients}); close one and reload\n`);
      return;
    }
    res.writeHead(200, { ...common, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    if (req.method === 'HEAD') return void res.end();
    this.#clients.add(res);
    const gone = () => this.#clients.delete(res);
    res.on('close', gone);
    res.on('error', gone);
    req.socket.setNoDelay(true);
    this.#send(res, `retry: 2000\n\n${this.#payload}`);
  }
}
