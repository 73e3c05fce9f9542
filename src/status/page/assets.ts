/**
 * The page's only assets, served by k8s-ha itself (air-gapped: nothing is
 * loaded from anywhere else). The script is plain browser JavaScript, no
 * framework: it listens to the server-sent events and puts each rendered
 * part in place; without it the page still shows everything and reloads
 * itself (<noscript> refresh).
 */
export const PAGE_CSS = `
:root { --ok:#1a7f37; --warn:#9a6700; --bad:#cf222e; --unknown:#6e7781; --bg:#fff; --fg:#1f2328; --muted:#59636e; --card:#f6f8fa; --line:#d1d9e0; }
@media (prefers-color-scheme: dark) { :root { --ok:#3fb950; --warn:#d29922; --bad:#f85149; --unknown:#8b949e; --bg:#0d1117; --fg:#e6edf3; --muted:#9198a1; --card:#161b22; --line:#30363d; } }
* { box-sizing: border-box; }
body { margin:0 auto; max-width:1360px; padding:12px; font:16px/1.45 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
h1 { font-size:1.3rem; margin:0; } h2 { font-size:1.1rem; margin:1.2em 0 .4em; } h3 { font-size:1rem; margin:.8em 0 .3em; color:var(--muted); }
header { display:flex; flex-wrap:wrap; align-items:baseline; gap:.2em 1em; border-bottom:1px solid var(--line); padding-bottom:6px; }
.summary { margin:0; font-weight:600; flex:1 1 auto; }
body[data-health=ok] .summary { color:var(--ok); } body[data-health=warn] .summary, body[data-health=bad] .summary { color:var(--bad); } body[data-health=stale] .summary { color:var(--warn); }
.conn { margin:0; font-size:.85rem; }
.muted { color:var(--muted); } .meta { color:var(--muted); font-size:.9rem; margin:.4em 0; }
code { font-size:.9em; }
.skip { position:absolute; left:-999px; } .skip:focus { left:8px; top:8px; background:var(--bg); padding:4px; z-index:2; }
.sr-only { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); }
.stale-banner { background:color-mix(in srgb, var(--warn) 18%, var(--bg)); border:2px solid var(--warn); border-radius:6px; padding:8px 10px; margin:8px 0; }
body[data-health=stale] .topology { filter:grayscale(.85); opacity:.65; }
.topology { margin:0; }
@media (min-width: 1000px) {
  #main { display:grid; grid-template-columns:minmax(0, 780px) minmax(300px, 1fr); gap:0 28px; align-items:start; }
  #main > * { grid-column:1 / -1; }
  #main > .topology { grid-column:1; grid-row:2; }
  #main > .sidebar { grid-column:2; grid-row:2; position:sticky; top:8px; }
  #timeline-section { max-height:60vh; overflow-y:auto; }
}
.topo { display:block; max-width:100%; height:auto; }
.topo-n { display:none; }
@media (max-width: 640px) { .topo-w { display:none; } .topo-n { display:block; } body { padding:8px; } }
.tier { font-size:13px; font-weight:600; fill:var(--muted); } .tier .note { font-weight:400; }
.el { cursor:pointer; outline:none; }
.el rect { fill:var(--card); stroke:var(--unknown); stroke-width:2; }
.el .label { font-size:15px; font-weight:600; fill:var(--fg); } .el .sub { font-size:12px; fill:var(--muted); } .el .hw { font-size:12px; font-weight:600; }
.el .icon { font-size:16px; font-weight:700; }
.el.h-ok rect { stroke:var(--ok); } .el.h-ok .hw, .el.h-ok .icon { fill:var(--ok); }
.el.h-warn rect { stroke:var(--warn); fill:color-mix(in srgb, var(--warn) 12%, var(--card)); } .el.h-warn .hw, .el.h-warn .icon { fill:var(--warn); }
.el.h-bad rect { stroke:var(--bad); stroke-width:3; fill:color-mix(in srgb, var(--bad) 14%, var(--card)); } .el.h-bad .hw, .el.h-bad .icon { fill:var(--bad); }
.el.h-unknown .hw, .el.h-unknown .icon { fill:var(--unknown); }
.el:focus-visible rect, .el.selected rect { stroke:var(--fg); stroke-width:4; }
.edge { fill:none; stroke-width:2.5; stroke:var(--unknown); }
.edge.h-ok { stroke:var(--ok); } .edge.h-warn { stroke:var(--warn); } .edge.h-bad { stroke:var(--bad); stroke-dasharray:6 4; stroke-width:3; }
.edge.standby, .edge.h-unknown { stroke-dasharray:4 5; opacity:.7; }
.detail:not(:empty) { border:1px solid var(--line); border-radius:6px; padding:8px 10px; background:var(--card); margin:6px 0; }
.h-ok { color:var(--ok); } .h-warn { color:var(--warn); } .h-bad { color:var(--bad); } .h-unknown { color:var(--unknown); }
ul.problems, ul.components, ul.pools, ol.timeline { list-style:none; padding:0; margin:0; }
ul.problems li { padding:2px 0; }
ul.components { display:grid; grid-template-columns:repeat(auto-fill, minmax(240px, 1fr)); gap:8px; }
li.comp { border:1px solid var(--line); border-left:5px solid var(--unknown); border-radius:6px; padding:6px 8px; color:var(--fg); background:var(--card); }
li.comp.h-ok { border-left-color:var(--ok); } li.comp.h-warn { border-left-color:var(--warn); } li.comp.h-bad { border-left-color:var(--bad); }
li.comp .hw, li.comp .badge { font-weight:600; } li.comp.h-ok .hw { color:var(--ok); } li.comp.h-warn .hw { color:var(--warn); } li.comp.h-bad .hw { color:var(--bad); }
.reason { font-size:.9rem; overflow-wrap:anywhere; }
dl.kv { display:grid; grid-template-columns:max-content 1fr; gap:0 10px; margin:4px 0 0; font-size:.85rem; }
dl.kv dt { color:var(--muted); } dl.kv dd { margin:0; overflow-wrap:anywhere; }
li.pool { padding:4px 0; } meter { width:160px; max-width:40vw; vertical-align:middle; }
ol.timeline li { padding:3px 0; border-bottom:1px solid var(--line); color:var(--fg); overflow-wrap:anywhere; }
ol.timeline li .badge { font-weight:700; } ol.timeline li.h-ok .badge { color:var(--ok); } ol.timeline li.h-bad .badge, ol.timeline li.h-warn .badge { color:var(--bad); }
ol.timeline time { font-variant-numeric:tabular-nums; color:var(--muted); }
.scroll { overflow-x:auto; } table { border-collapse:collapse; font-size:.9rem; } th, td { border:1px solid var(--line); padding:2px 6px; text-align:left; }
footer { margin-top:1.5em; font-size:.85rem; }
`;

export const PAGE_JS = `'use strict';
(function () {
  var main = document.getElementById('main');
  var selected = null;
  var lastMain = null;
  var last = Date.now();
  var maxQuiet = Number(main.getAttribute('data-quiet-ms')) || 30000;
  function $(id) { return document.getElementById(id); }
  function localTimes(root) {
    var ts = root.querySelectorAll('time[datetime]');
    for (var i = 0; i < ts.length; i++) {
      var d = new Date(ts[i].getAttribute('datetime'));
      if (!isNaN(d)) ts[i].textContent = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
    }
  }
  function safeId(id) { return id.replace(/[^A-Za-z0-9_-]/g, '-'); }
  function show(id) {
    selected = id;
    var boxes = document.querySelectorAll('.el');
    for (var i = 0; i < boxes.length; i++) boxes[i].classList.toggle('selected', boxes[i].getAttribute('data-id') === id);
    var d = $('detail');
    if (!d) return;
    var c = id && $('c-' + safeId(id));
    d.innerHTML = c ? c.innerHTML : '';
  }
  document.addEventListener('click', function (e) {
    var g = e.target.closest && e.target.closest('.el');
    if (g) show(g.getAttribute('data-id') === selected ? null : g.getAttribute('data-id'));
  });
  document.addEventListener('keydown', function (e) {
    var g = e.target.closest && e.target.closest('.el');
    if (g && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); show(g.getAttribute('data-id')); }
    if (e.key === 'Escape') show(null);
  });
  function apply(p) {
    last = Date.now();
    var focused = document.activeElement && document.activeElement.id;
    document.title = p.title;
    document.body.setAttribute('data-health', p.health);
    if ($('summary').textContent !== p.summary) $('summary').textContent = p.summary;
    $('banner').innerHTML = p.banner;
    // Replacing the parts must not move the reader: keep the scroll of the timeline box.
    var tl = $('timeline-section');
    var top = tl ? tl.scrollTop : 0;
    if (p.main !== lastMain) main.innerHTML = p.main;
    lastMain = p.main;
    tl = $('timeline-section');
    if (tl) tl.scrollTop = top;
    localTimes(document);
    if (selected) show(selected);
    if (focused && $(focused)) $(focused).focus();
    $('conn').textContent = 'live';
  }
  localTimes(document);
  if (!window.EventSource) return;
  var es = new EventSource(main.getAttribute('data-events'));
  es.addEventListener('status', function (e) { apply(JSON.parse(e.data)); });
  es.addEventListener('ping', function () { last = Date.now(); $('conn').textContent = 'live'; });
  es.addEventListener('busy', function (e) { $('conn').textContent = e.data; es.close(); });
  es.onerror = function () { $('conn').textContent = 'connection lost; retrying…'; };
  // The server itself gone or the network cut: say so rather than show old data as current.
  setInterval(function () {
    if (Date.now() - last > maxQuiet) {
      document.body.setAttribute('data-health', 'stale');
      $('banner').innerHTML = '<p class="stale-banner" role="alert"><strong>Stale: no word from k8s-ha for ' + Math.round((Date.now() - last) / 1000) + ' s.</strong> Is <code>k8s-ha status --serve</code> still running?</p>';
    }
  }, 1000);
})();
`;
