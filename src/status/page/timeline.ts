import { HEALTH_WORD, type Health, type PageModel } from './model.js';

/**
 * The changes the page saw between two snapshots (pure): an element's
 * health, an upstream as one load balancer sees it, the VIP's holder, an
 * element appearing or going. Compared by stable ids, so reason texts that
 * vary between rounds (a timeout's milliseconds) never make an entry.
 */
export interface TimelineEntry {
  /** ISO time of the snapshot that showed the change. */
  at: string;
  /** The element or edge it is about (`server:server2`, `lb:lb1>server:server2`, `vip`, `collector`). */
  subject: string;
  health: Health;
  text: string;
}

/**
 * `lastVipHolder`: who held the VIP last, also across snapshots where nobody
 * did (a failover often passes through one), so the entry says "moved".
 */
export function changes(prev: PageModel | null, next: PageModel, lastVipHolder: string | null = prev?.vipHolder ?? null): TimelineEntry[] {
  if (!prev) return [];
  const at = next.at;
  const out: TimelineEntry[] = [];
  const before = new Map(prev.elements.map((e) => [e.id, e]));
  const after = new Map(next.elements.map((e) => [e.id, e]));

  if (prev.vipHolder !== next.vipHolder) {
    const vip = after.get('vip') ?? before.get('vip');
    const addr = vip?.label ?? 'virtual IP';
    const from = prev.vipHolder ?? lastVipHolder;
    const text = !next.vipHolder
      ? `virtual IP ${addr} lost by ${prev.vipHolder ?? 'its holder'}: ${vip?.reason ?? ''}`
      : from && from !== next.vipHolder
        ? `virtual IP ${addr} moved ${from} → ${next.vipHolder}`
        : `virtual IP ${addr} held by ${next.vipHolder} again`;
    out.push({ at, subject: 'vip', health: next.vipHolder ? 'ok' : 'bad', text });
  }

  if (prev.dbWriter !== next.dbWriter && (prev.dbWriter || next.dbWriter)) {
    const text = prev.dbWriter && next.dbWriter ? `datastore writer moved ${prev.dbWriter} → ${next.dbWriter}` : next.dbWriter ? `datastore writer: ${next.dbWriter}` : `no single datastore writer (was ${prev.dbWriter})`;
    out.push({ at, subject: 'writer', health: next.dbWriter ? 'ok' : 'bad', text });
  }

  for (const e of next.elements) {
    const p = before.get(e.id);
    if (e.id === 'vip') continue;
    if (!p) {
      out.push({ at, subject: e.id, health: e.health, text: `${describe(e.tier, e.label)} appeared (${HEALTH_WORD[e.health]})` });
      continue;
    }
    if (p.health === e.health) continue;
    const text = e.health === 'ok' ? `${describe(e.tier, e.label)} healthy again` : `${describe(e.tier, e.label)} ${HEALTH_WORD[e.health]}: ${e.reason}`;
    out.push({ at, subject: e.id, health: e.health, text });
  }
  for (const p of prev.elements) if (!after.has(p.id)) out.push({ at, subject: p.id, health: 'unknown', text: `${describe(p.tier, p.label)} no longer in the snapshot` });

  // Upstreams per load balancer: "lb1: upstream server2 down", and back.
  const edgeKey = (f: string, t: string) => `${f}>${t}`;
  const prevEdges = new Map(prev.edges.filter((x) => x.from.startsWith('lb:')).map((x) => [edgeKey(x.from, x.to), x]));
  for (const x of next.edges) {
    if (!x.from.startsWith('lb:')) continue;
    const p = prevEdges.get(edgeKey(x.from, x.to));
    // An upstream that became unknown (its LB stopped) is told by the LB's own entry.
    if (!p || p.health === x.health || x.health === 'unknown' || (p.health === 'unknown' && x.health === 'ok')) continue;
    const lb = x.from.slice(3);
    const server = x.to.replace(/^server:/, '');
    out.push({ at, subject: edgeKey(x.from, x.to), health: x.health, text: x.health === 'ok' ? `${lb}: upstream ${server} up again` : `${lb}: upstream ${server} ${HEALTH_WORD[x.health]}${x.detail ? ` (${x.detail})` : ''}` });
  }
  return out;
}

function describe(tier: string, label: string): string {
  switch (tier) {
    case 'lb':
      return `load balancer ${label}`;
    case 'server':
      return `server ${label}`;
    case 'agent':
      return `node ${label}`;
    case 'datastore':
      return `datastore ${label}`;
    case 'clients':
      return 'the API';
    default:
      return label;
  }
}

/** A bounded log: the newest `max` entries, newest last. */
export class Timeline {
  readonly #entries: TimelineEntry[] = [];
  constructor(readonly max = 200) {}

  add(...entries: TimelineEntry[]): void {
    this.#entries.push(...entries);
    if (this.#entries.length > this.max) this.#entries.splice(0, this.#entries.length - this.max);
  }

  get entries(): readonly TimelineEntry[] {
    return this.#entries;
  }
}
