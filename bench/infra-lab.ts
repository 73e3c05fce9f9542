import { request } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lab } from '../lab/index.js';

/**
 * Shared by test/lab/infra.test.ts and bench/infra.ts: a stand-in for the
 * k3s API on a lab machine, and clients that open a NEW connection per
 * request (what a failing LB path costs is counted per connection attempt).
 * Traffic goes only to lab machine addresses.
 */

export const FAKE_API_UNIT = 'k8s-ha-fake-api';

// /ping answers `pong` like k3s (FACTS); every other path names the machine,
// so a client can tell which server the load balancer picked. The handshake
// runs in the handler thread (do_handshake_on_connect=False): a client that
// never finishes it cannot block the accept loop.
const FAKE_API_PY = `
import http.server, socket, ssl
NAME = socket.gethostname().encode()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'
    def do_GET(self):
        if self.path == '/bulk':
            # 32 MiB for throughput runs.
            self.send_response(200)
            self.send_header('Content-Length', str(32 << 20))
            self.end_headers()
            chunk = bytes(1 << 20)
            for _ in range(32):
                self.wfile.write(chunk)
            return
        body = b'pong' if self.path == '/ping' else NAME
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    def finish_request(self, request, client_address):
        request.do_handshake()
        super().finish_request(request, client_address)
srv = S(('0.0.0.0', 6443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain('/root/fake-api.pem', '/root/fake-api.key')
srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
srv.serve_forever()
`;

/** Starts (or restarts) the fake API on 6443 of `name` as a transient systemd unit. */
export async function startFakeApi(lab: Lab, name: string): Promise<void> {
  await lab.exec(name, ['sh', '-c', 'umask 077; cat > /root/fake-api.py'], { input: FAKE_API_PY });
  const script = [
    `[ -s /root/fake-api.pem ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /root/fake-api.key -out /root/fake-api.pem -days 30 -subj /CN=${name} 2>/dev/null`,
    `systemctl stop ${FAKE_API_UNIT} 2>/dev/null; systemctl reset-failed ${FAKE_API_UNIT} 2>/dev/null`,
    `systemd-run --quiet --unit=${FAKE_API_UNIT} --property=LimitNOFILE=65536 python3 /root/fake-api.py`,
    // Ready when it accepts on 6443.
    'for i in $(seq 100); do python3 -c "import socket; socket.create_connection((\'127.0.0.1\', 6443), 0.2)" 2>/dev/null && exit 0; sleep 0.1; done; exit 1',
  ].join('\n');
  await lab.exec(name, ['sh', '-c', script]);
}

export async function stopFakeApi(lab: Lab, name: string): Promise<void> {
  await lab.exec(name, ['sh', '-c', `systemctl stop ${FAKE_API_UNIT}; systemctl reset-failed ${FAKE_API_UNIT} 2>/dev/null; true`]);
}

export interface Attempt {
  /** ms since the sampler started. */
  at: number;
  ok: boolean;
  /** The machine that answered. */
  server?: string;
  ms: number;
  error?: string;
}

/** One GET over a new TLS connection (no keep-alive, no verification: the stand-in's cert is self-signed). */
export function probe(address: string, port = 6443, timeoutMs = 5_000, path = '/who'): Promise<Omit<Attempt, 'at'>> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: Omit<Attempt, 'at' | 'ms'>) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ ...r, ms: performance.now() - t0 });
    };
    const req = request({ host: address, port, path, method: 'GET', rejectUnauthorized: false, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => finish(res.statusCode === 200 ? { ok: true, server: body.trim() } : { ok: false, error: `HTTP ${res.statusCode}` }));
      res.on('error', (e) => finish({ ok: false, error: e.message }));
    });
    const timer = setTimeout(() => {
      finish({ ok: false, error: `no answer within ${timeoutMs} ms` });
      req.destroy();
    }, timeoutMs);
    req.on('error', (e) => finish({ ok: false, error: e.message }));
    req.end();
  });
}

/**
 * A new connection every `everyMs` for `durationMs` (not waiting for the
 * previous one: a hung connection does not slow the sampling), with
 * `onStart` run once at `failAtMs`. Resolves when every attempt finished.
 */
export async function sample(
  address: string,
  opts: { everyMs: number; durationMs: number; timeoutMs: number; failAtMs?: number; onFail?: () => Promise<void>; port?: number },
): Promise<Attempt[]> {
  const t0 = performance.now();
  const pending: Promise<Attempt>[] = [];
  let failed: Promise<void> | null = null;
  for (let i = 0; ; i++) {
    const due = i * opts.everyMs;
    if (due >= opts.durationMs) break;
    const wait = due - (performance.now() - t0);
    if (wait > 0) await sleep(wait);
    if (!failed && opts.onFail && due >= (opts.failAtMs ?? 0)) failed = opts.onFail();
    const at = performance.now() - t0;
    pending.push(probe(address, opts.port, opts.timeoutMs).then((r) => ({ ...r, at })));
  }
  const out = await Promise.all(pending);
  await failed;
  return out;
}

/** Failed attempts, and the outage: from the first failed attempt's start to the end of the last failed one (0 when none failed). */
export function outage(attempts: Attempt[]): { failed: number; total: number; outageS: number } {
  const bad = attempts.filter((a) => !a.ok);
  if (!bad.length) return { failed: 0, total: attempts.length, outageS: 0 };
  const start = Math.min(...bad.map((a) => a.at));
  const end = Math.max(...bad.map((a) => a.at + a.ms));
  return { failed: bad.length, total: attempts.length, outageS: Math.round((end - start) / 10) / 100 };
}

/** Polls `probe` until it succeeds; the ms it took, or null at the deadline. */
export async function untilServed(address: string, deadlineMs: number, everyMs = 100, timeoutMs = 1_000): Promise<number | null> {
  const t0 = performance.now();
  while (performance.now() - t0 < deadlineMs) {
    const r = await probe(address, 6443, timeoutMs);
    if (r.ok) return performance.now() - t0;
    await sleep(everyMs);
  }
  return null;
}

/** Downloads /bulk (32 MiB) over one new connection; MB/s, or null on failure. */
export function bulk(address: string, port = 6443, timeoutMs = 60_000): Promise<number | null> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = request({ host: address, port, path: '/bulk', method: 'GET', rejectUnauthorized: false, agent: false, timeout: timeoutMs }, (res) => {
      let n = 0;
      res.on('data', (d: Buffer) => (n += d.length));
      res.on('end', () => resolve(n === 32 << 20 ? n / 1e6 / ((performance.now() - t0) / 1000) : null));
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(null));
    req.end();
  });
}
