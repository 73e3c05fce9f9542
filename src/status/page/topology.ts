import { HEALTH_WORD, TIERS, type Health, type PageElement, type PageModel } from './model.js';

/**
 * The topology as an SVG picture (pure, deterministic): one row per tier,
 * top to bottom in the order traffic flows, elements wrapped at `cols` per
 * row, edges from the bottom of one box to the top of the next. Two layouts
 * are drawn (wide and narrow) and CSS shows the one that fits the screen, so
 * text stays readable on a phone without script.
 */
export interface Layout {
  /** Prefix of element ids in this picture (two pictures share a page). */
  prefix: string;
  width: number;
  cols: number;
}

export const WIDE: Layout = { prefix: 'w', width: 760, cols: 4 };
export const NARROW: Layout = { prefix: 'n', width: 400, cols: 2 };

const BOX_H = 60;
const ROW_GAP = 30;
const TITLE_H = 20;
const MARGIN = 12;
const GAP = 12;

export const ICON: Record<Health, string> = { ok: '✓', warn: '!', bad: '✕', unknown: '?' };

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** An element's DOM id: stable and safe (`server:server2` -> `w-server-server2`). */
export function domId(prefix: string, id: string): string {
  return `${prefix}-${id.replace(/[^A-Za-z0-9_-]/g, '-')}`;
}

interface Box {
  el: PageElement;
  x: number;
  y: number;
  w: number;
}

export function topologySvg(m: PageModel, l: Layout): string {
  const boxes = new Map<string, Box>();
  const rows: string[] = [];
  let y = MARGIN;
  const w = Math.min(180, Math.floor((l.width - 2 * MARGIN - (l.cols - 1) * GAP) / l.cols));
  for (const { tier, title } of TIERS) {
    const els = m.elements.filter((e) => e.tier === tier);
    if (!els.length) continue;
    const note = m.notes[tier];
    rows.push(`<text class="tier" x="${MARGIN}" y="${y + 14}">${esc(title)}${note ? ` <tspan class="note">(${esc(note)})</tspan>` : ''}</text>`);
    y += TITLE_H;
    for (let i = 0; i < els.length; i += l.cols) {
      const row = els.slice(i, i + l.cols);
      const total = row.length * w + (row.length - 1) * GAP;
      let x = Math.round((l.width - total) / 2);
      for (const el of row) {
        boxes.set(el.id, { el, x, y, w });
        x += w + GAP;
      }
      y += BOX_H + (i + l.cols < els.length ? GAP : 0);
    }
    y += ROW_GAP;
  }
  const height = y - ROW_GAP + MARGIN;

  const lines: string[] = [];
  for (const e of m.edges) {
    const a = boxes.get(e.from);
    const b = boxes.get(e.to);
    // Only downward edges are drawn; the agents' join path is the tier's note.
    if (!a || !b || b.y <= a.y) continue;
    const x1 = a.x + a.w / 2;
    const y1 = a.y + BOX_H;
    const x2 = b.x + b.w / 2;
    const y2 = b.y;
    const my = (y1 + y2) / 2;
    lines.push(`<path class="edge h-${e.health}${e.standby ? ' standby' : ''}" d="M${x1} ${y1} C${x1} ${my} ${x2} ${my} ${x2} ${y2}"><title>${esc(e.reason)}</title></path>`);
  }

  const els: string[] = [];
  for (const { el, x, y: by, w: bw } of boxes.values()) {
    const say = `${el.label}: ${HEALTH_WORD[el.health]}. ${el.reason}`;
    const maxChars = Math.floor((bw - 34) / 8);
    els.push(
      `<g class="el h-${el.health}" id="${domId(l.prefix, el.id)}" data-id="${esc(el.id)}" tabindex="0" role="button" aria-label="${esc(say)}" transform="translate(${x} ${by})">` +
        `<title>${esc(say)}</title>` +
        `<rect width="${bw}" height="${BOX_H}" rx="8"/>` +
        `<text class="icon" x="${bw - 18}" y="22" aria-hidden="true">${ICON[el.health]}</text>` +
        `<text class="label" x="10" y="22">${esc(clip(el.label, maxChars))}</text>` +
        `<text class="sub" x="10" y="40">${esc(clip(el.sub, Math.floor((bw - 16) / 7)))}</text>` +
        `<text class="hw" x="10" y="54">${esc(HEALTH_WORD[el.health])}</text>` +
        `</g>`,
    );
  }
  return `<svg class="topo topo-${l.prefix}" viewBox="0 0 ${l.width} ${height}" width="100%" role="group" aria-label="Topology of ${esc(m.cluster)}: ${esc(summaryText(m))}">${rows.join('')}<g class="edges" aria-hidden="true">${lines.join('')}</g>${els.join('')}</svg>`;
}

function clip(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, Math.max(1, n - 1))}…`;
}

export function summaryText(m: PageModel): string {
  return m.healthy ? 'healthy: every host, upstream, the datastore and every node are up' : `degraded: ${m.degraded.length} problem${m.degraded.length === 1 ? '' : 's'}`;
}
