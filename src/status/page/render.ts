import { HEALTH_WORD, TIERS, healthOf, plain, titleOf, type Health, type PageModel } from './model.js';
import type { TimelineEntry } from './timeline.js';
import { ICON, NARROW, WIDE, domId, esc, summaryText, topologySvg } from './topology.js';

/**
 * The status page's HTML (pure): the whole document for the first load, and
 * the same parts as fragments for each live update, so the page without
 * script and the page with it show the same thing.
 */
export interface CollectorState {
  /** `starting`: no snapshot yet; `stale`: the last round failed or overran its time. */
  state: 'starting' | 'fresh' | 'stale';
  /** Why stale (or starting): "no answer within 8 s", the collector's error. */
  why?: string;
  /** ISO time since when the data is stale. */
  since?: string;
  refreshMs: number;
  timeoutMs: number;
}

export interface PageView {
  model: PageModel | null;
  timeline: readonly TimelineEntry[];
  collector: CollectorState;
}

/** What one live update carries; the client puts each part in place. */
export interface LiveParts {
  title: string;
  health: Health | 'stale';
  summary: string;
  banner: string;
  /** Everything below the header: the picture, problems, timeline, components, pools, versions, other sections. */
  main: string;
}

export function liveParts(v: PageView): LiveParts {
  const m = v.model;
  const stale = v.collector.state !== 'fresh';
  const health: Health | 'stale' = stale ? 'stale' : m ? healthOf(m) : 'unknown';
  const summary = m ? `${m.cluster}: ${summaryText(m)}${stale ? ' (stale)' : ''}` : 'waiting for the first snapshot';
  return {
    title: `${m ? (m.healthy ? '✓' : '✕') : '…'} ${m?.cluster ?? 'k8s-ha'} status`,
    health,
    summary,
    banner: banner(v),
    main: m ? mainHtml(m, v.timeline) : `<p class="empty">Collecting the first snapshot…</p>${timelineSection(v.timeline)}`,
  };
}

function banner(v: PageView): string {
  const c = v.collector;
  if (c.state === 'fresh') return '';
  const since = c.since ? ` since <time datetime="${esc(c.since)}">${esc(hms(c.since))}</time>` : '';
  const head = c.state === 'starting' ? 'Waiting for the first snapshot' : `Stale${since}: the picture below is the last snapshot that arrived`;
  return `<p class="stale-banner" role="alert"><strong>${head}.</strong> ${esc(c.why ?? '')} <span class="muted">(refresh every ${c.refreshMs / 1000} s, collector timeout ${c.timeoutMs / 1000} s)</span></p>`;
}

function timelineSection(entries: readonly TimelineEntry[]): string {
  return `<section id="timeline-section" aria-labelledby="h-timeline"><h2 id="h-timeline">Timeline</h2><div id="timeline">${timelineHtml(entries)}</div></section>`;
}

function mainHtml(m: PageModel, timeline: readonly TimelineEntry[]): string {
  const parts: string[] = [];
  parts.push(`<p class="meta">API <code>${esc(m.apiServerUrl)}</code> · snapshot <time datetime="${esc(m.at)}">${esc(hms(m.at))}</time> · collected in ${(m.ms / 1000).toFixed(1)} s</p>`);
  parts.push(`<figure class="topology"><figcaption class="sr-only">The cluster's topology; each box is coloured by health. Select a box for its details.</figcaption>${topologySvg(m, WIDE)}${topologySvg(m, NARROW)}</figure>`);
  // Beside the picture on a wide screen, below it on a narrow one.
  parts.push(`<div class="sidebar"><div id="detail" class="detail" aria-live="polite"></div>${degradedHtml(m)}${timelineSection(timeline)}</div>`);
  parts.push(componentsHtml(m));
  parts.push(poolsHtml(m));
  if (m.versions.length) parts.push(`<section aria-labelledby="h-versions"><h2 id="h-versions">Versions</h2><dl class="kv">${m.versions.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl></section>`);
  for (const x of m.extra) parts.push(`<section aria-labelledby="h-x-${esc(x.key)}" class="extra"><h2 id="h-x-${esc(x.key)}">${esc(x.title)}</h2>${valueHtml(x.value, 0)}</section>`);
  return parts.join('\n');
}

function degradedHtml(m: PageModel): string {
  if (m.healthy) return '<section id="problems" aria-labelledby="h-problems"><h2 id="h-problems">Problems</h2><p class="h-ok">✓ None: every host, upstream, the datastore and every node are up.</p></section>';
  return `<section id="problems" aria-labelledby="h-problems"><h2 id="h-problems">Problems (${m.degraded.length})</h2><ul class="problems">${m.degraded.map((d) => `<li class="h-bad">${esc(d)}</li>`).join('')}</ul></section>`;
}

function componentsHtml(m: PageModel): string {
  const groups = TIERS.map(({ tier, title }) => ({ title, els: m.elements.filter((e) => e.tier === tier) })).filter((g) => g.els.length);
  return (
    `<section aria-labelledby="h-components"><h2 id="h-components">Components</h2>` +
    groups
      .map(
        (g) =>
          `<h3>${esc(g.title)}</h3><ul class="components">` +
          g.els
            .map(
              (e) =>
                `<li id="${domId('c', e.id)}" data-id="${esc(e.id)}" class="comp h-${e.health}"><span class="badge" aria-hidden="true">${ICON[e.health]}</span> <strong>${esc(e.label)}</strong> <span class="hw">${HEALTH_WORD[e.health]}</span>` +
                `<div class="reason">${esc(e.reason)}</div>` +
                `<dl class="kv">${e.facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl></li>`,
            )
            .join('') +
          '</ul>',
      )
      .join('') +
    '</section>'
  );
}

function poolsHtml(m: PageModel): string {
  if (!m.pools.length && !m.pending.length) return '';
  const pools = m.pools
    .map(
      (p) =>
        `<li class="pool h-${p.health}"><strong>${esc(p.name)}</strong> <span>${p.used}/${p.size} used</span> <meter min="0" max="${Math.max(p.size, 1)}" value="${p.used}" aria-label="pool ${esc(p.name)}: ${p.used} of ${p.size} addresses used"></meter>` +
        (p.services.length ? `<div class="muted">${p.services.map(esc).join(', ')}</div>` : '') +
        '</li>',
    )
    .join('');
  const pending = m.pending.length ? `<p class="h-warn">Waiting for an address: ${m.pending.map(esc).join(', ')}</p>` : '';
  return `<section aria-labelledby="h-pools"><h2 id="h-pools">MetalLB pools</h2><ul class="pools">${pools}</ul>${pending}</section>`;
}

export function timelineHtml(entries: readonly TimelineEntry[]): string {
  if (!entries.length) return '<p class="muted">No change seen yet. Changes this page sees (a server going down, the virtual IP moving) are listed here.</p>';
  return `<ol class="timeline">${[...entries]
    .reverse()
    .map((e) => `<li class="h-${e.health}" data-subject="${esc(e.subject)}"><time datetime="${esc(e.at)}">${esc(hms(e.at))}</time> <span class="badge" aria-hidden="true">${ICON[e.health]}</span> ${esc(e.text)}</li>`)
    .join('')}</ol>`;
}

/** A value of a section the page has no picture for: tables for lists of records, key/value lists for records. */
export function valueHtml(v: unknown, depth: number): string {
  if (v === null || v === undefined) return '<p class="muted">—</p>';
  if (Array.isArray(v)) {
    if (!v.length) return '<p class="muted">none</p>';
    if (v.every((x) => x && typeof x === 'object' && !Array.isArray(x))) {
      const cols = [...new Set(v.flatMap((x) => Object.keys(x as object)))];
      return `<div class="scroll"><table><thead><tr>${cols.map((c) => `<th scope="col">${esc(titleOf(c))}</th>`).join('')}</tr></thead><tbody>${v.map((x) => `<tr>${cols.map((c) => `<td>${esc(plain((x as Record<string, unknown>)[c]))}</td>`).join('')}</tr>`).join('')}</tbody></table></div>`;
    }
    return `<p>${esc(plain(v))}</p>`;
  }
  if (typeof v === 'object') {
    if (depth >= 2) return `<p>${esc(plain(v))}</p>`;
    return `<dl class="kv">${Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => `<dt>${esc(titleOf(k))}</dt><dd>${x && typeof x === 'object' ? valueHtml(x, depth + 1) : esc(plain(x))}</dd>`)
      .join('')}</dl>`;
  }
  return `<p>${esc(String(v))}</p>`;
}

/** 12:03:41 UTC from an ISO time; the page's script shows it in the browser's own time zone. */
export function hms(iso: string): string {
  const m = /T(\d\d:\d\d:\d\d)/.exec(iso);
  return m ? `${m[1]} UTC` : iso;
}

export interface DocumentOptions {
  /** Paths of the page's own assets (served by k8s-ha; nothing from elsewhere). */
  cssPath: string;
  jsPath: string;
  eventsPath: string;
  jsonPath: string;
  /** The page calls itself stale after this long without a word from the server. */
  quietMs: number;
  /** Shown in the footer: the page only reads. */
  note?: string;
}

export function renderDocument(v: PageView, o: DocumentOptions): string {
  const p = liveParts(v);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>${esc(p.title)}</title>
<link rel="stylesheet" href="${esc(o.cssPath)}">
<noscript><meta http-equiv="refresh" content="${Math.max(2, Math.round(v.collector.refreshMs / 1000))}"></noscript>
</head>
<body data-health="${p.health}">
<a class="skip" href="#h-problems">Skip to the problems</a>
<header>
<h1>k8s-ha <span class="muted">status</span></h1>
<p id="summary" class="summary" role="status" aria-live="polite">${esc(p.summary)}</p>
<p id="conn" class="conn muted" aria-live="off">live</p>
</header>
<div id="banner">${p.banner}</div>
<main id="main" data-events="${esc(o.eventsPath)}" data-quiet-ms="${o.quietMs}">
${p.main}
</main>
<footer class="muted">Read-only view from <code>k8s-ha status --serve</code>; the same data as <a href="${esc(o.jsonPath)}"><code>status --json</code></a>.${o.note ? ` ${esc(o.note)}` : ''}</footer>
<script src="${esc(o.jsPath)}" defer></script>
</body>
</html>
`;
}
