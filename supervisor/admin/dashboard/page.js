'use strict';
// The page shell holds no data and no secret: everything below is fetched
// from the API, with the token the user typed (kept in sessionStorage for
// this tab only). Every string is inserted as a text node, never as HTML.
//
// Every 2 s it reads /api/status, /api/map, /api/requests, the events
// after the last one seen (/api/events?since=ID) and, for queue waits,
// /metrics. Rates and waits are deltas between two polls, kept for the last
// five minutes in this tab only; the charts are uPlot, inlined as a script
// of its own: if it is missing or fails, everything but the charts works.
const KEY = 'lanes.admin.token';
const POLL_MS = 2000;
const WINDOW_S = 300; // the charts' span
const MAX_EVENTS = 200; // kept in the tab; the server keeps 1,000
const SHOWN_EVENTS = 50;
const SHOWN_REQUESTS = 50;
const $ = (id) => document.getElementById(id);
let asking = false;

function el(tag, cls, ...kids) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const k of kids) {
    if (k === null || k === undefined) continue;
    e.append(k instanceof Node ? k : String(k));
  }
  return e;
}

// table builds a table; a head starting with '<' is left-aligned; a cell
// is a value, or [value, class], or [value, class, title].
function table(id, heads, rows, empty) {
  const t = el('table');
  if (id) t.id = id;
  const hr = el('tr');
  for (const h of heads) hr.append(el('th', h.startsWith('<') ? 'l' : '', h.replace(/^</, '')));
  t.append(hr);
  for (const r of rows) {
    const tr = el('tr');
    r.forEach((c, i) => {
      let cls = heads[i] && heads[i].startsWith('<') ? 'l' : '';
      let title = '';
      if (Array.isArray(c)) { cls += ' ' + (c[1] || ''); title = c[2] || ''; c = c[0]; }
      const td = el('td', cls.trim(), c);
      if (title) td.title = title;
      tr.append(td);
    });
    t.append(tr);
  }
  if (rows.length === 0) {
    const tr = el('tr'), td = el('td', 'l muted', empty || 'none');
    td.colSpan = heads.length;
    tr.append(td);
    t.append(tr);
  }
  return t;
}

const num = (v) => (v === undefined || v === null) ? '' : v;
const ms = (v) => (typeof v === 'number') ? (v < 10 ? v.toFixed(1) : Math.round(v).toString()) : '';
function dur(s) {
  if (typeof s !== 'number') return '';
  s = Math.round(s);
  if (s < 120) return s + 's';
  if (s < 7200) return Math.round(s / 60) + 'm';
  if (s < 172800) return Math.round(s / 3600) + 'h';
  return Math.round(s / 86400) + 'd';
}
// secs is a short duration in seconds: 0.3s, 12.5s, 95s, 4m.
function secs(s) {
  if (typeof s !== 'number') return '';
  if (s < 10) return s.toFixed(1) + 's';
  return dur(s);
}
function when(iso) {
  const t = Date.parse(iso || '');
  return (isNaN(t) || t <= 0) ? 0 : t;
}
function ago(iso) {
  if (!iso) return 'never';
  const t = when(iso);
  if (!t) return '';
  return dur(Math.max(0, (Date.now() - t) / 1000)) + ' ago';
}
function clock(iso) {
  const t = when(iso);
  if (!t) return '';
  const d = new Date(t), p = (n) => String(n).padStart(2, '0');
  return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
}
function bytes(n) {
  if (typeof n !== 'number') return '';
  if (n < 1024) return n + ' B';
  if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1048576).toFixed(1) + ' MiB';
}
// goSecs reads a Go duration string ("30s", "1m0s", "1.5s", "250ms").
function goSecs(d) {
  if (typeof d !== 'string') return 0;
  let s = 0;
  const unit = { h: 3600, m: 60, s: 1, ms: 1e-3, 'us': 1e-6, 'µs': 1e-6, ns: 1e-9 };
  for (const m of d.matchAll(/([0-9.]+)(h|ms|m|s|us|µs|ns)/g)) s += parseFloat(m[1]) * unit[m[2]];
  return s;
}
function shortDur(d) { // "1m0s" → "1m", "5s" stays
  return typeof d === 'string' ? d.replace(/(\D)0s$/, '$1').replace(/(\D)0m$/, '$1') : '';
}

// ---- history: what the charts and the rate columns are drawn from ----

// A point is kept every poll: for each lane, requests/s and rejected/s
// (deltas of served and rejected), queue length, the mean queue wait of
// the requests that left the queue since the last poll (deltas of the
// lanes_request_queue_seconds histogram's sum and count: exact, where a
// quantile from its coarse buckets would not be) and the latency
// percentiles the status reports (of the lane's last 2,048 requests).
let hist = { t: [], s: {} };
let prev = null; // the last poll: {t, lanes: {name: {served, rejected}}, queue: parsed histogram}
let rates = {}; // lane → {rps, rejps, wait} of the last interval
let metricsOK = null; // null: not tried yet

function histPush(t, vals) {
  const n = hist.t.length;
  hist.t.push(t);
  for (const k of Object.keys(vals)) {
    if (!hist.s[k]) hist.s[k] = new Array(n).fill(null);
  }
  for (const k of Object.keys(hist.s)) hist.s[k].push(k in vals ? vals[k] : null);
  let drop = 0;
  while (drop < hist.t.length && hist.t[drop] < t - WINDOW_S) drop++;
  if (drop) {
    hist.t.splice(0, drop);
    for (const k of Object.keys(hist.s)) hist.s[k].splice(0, drop);
  }
}

// parseQueueHist reads lanes_request_queue_seconds from the Prometheus
// text: lane → {sum, count}.
function parseQueueHist(text) {
  const out = {};
  const re = /^lanes_request_queue_seconds_(sum|count)\{lane="((?:[^"\\]|\\.)*)"\} (\S+)/;
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (!m) continue;
    const h = out[m[2]] || (out[m[2]] = { sum: 0, count: 0 });
    h[m[1]] = parseFloat(m[3]);
  }
  return out;
}

function record(s, queue) {
  const t = Date.now() / 1000;
  const vals = {};
  const cur = { t, lanes: {}, queue };
  rates = {};
  for (const l of s.lanes || []) {
    const n = l.name, p = prev && prev.lanes[n], dt = prev ? t - prev.t : 0;
    cur.lanes[n] = { served: l.served, rejected: l.rejected };
    const r = {};
    if (p && dt > 0 && l.served >= p.served) {
      r.rps = (l.served - p.served) / dt;
      r.rejps = Math.max(0, l.rejected - p.rejected) / dt;
    }
    const qn = queue && queue[n], qp = prev && prev.queue && prev.queue[n];
    if (qn && qp && qn.count >= qp.count) {
      const dc = qn.count - qp.count;
      if (dc > 0) {
        r.wait = (qn.sum - qp.sum) / dc * 1000;
      } else if (!l.queued) {
        r.wait = 0; // nothing waited, nothing waits
      } // else: requests wait and none left the queue: not known yet
    }
    rates[n] = r;
    const has = (l.latency_ms && l.latency_ms.count) > 0;
    Object.assign(vals, {
      ['rps:' + n]: r.rps === undefined ? null : r.rps,
      ['queued:' + n]: l.queued,
      ['wait:' + n]: r.wait === undefined ? null : r.wait,
      ['p50:' + n]: has ? l.latency_ms.p50 : null,
      ['p99:' + n]: has ? l.latency_ms.p99 : null,
    });
  }
  prev = cur;
  histPush(t, vals);
}

// ---- charts ----

// Lanes' colours: none of them red or amber, which mean trouble here.
const COLORS = ['#1f77b4', '#2ca02c', '#9467bd', '#8c564b', '#17becf', '#e377c2', '#7f7f7f', '#bcbd22'];
const CHARTS = [
  { id: 'chart-rps', title: 'requests/s', keys: [['rps', '']] },
  { id: 'chart-queued', title: 'queue length', keys: [['queued', '']] },
  { id: 'chart-wait', title: 'queue wait, ms (mean)', keys: [['wait', '']], spanGaps: true },
  { id: 'chart-latency', title: 'latency, ms: p50 and p99 (dashed)', keys: [['p50', ' p50'], ['p99', ' p99']], log: true },
];
let charts = []; // [{def, plot, keys}]
let chartLanes = '';

function chartLib() { return typeof uPlot === 'function'; }

function destroyCharts() {
  for (const c of charts) { try { c.plot.destroy(); } catch (e) { /* gone already */ } }
  charts = [];
  chartLanes = '';
}

function chartWidth() {
  const w = ($('charts') && $('charts').clientWidth) || 800;
  const cols = w >= 1200 ? 4 : (w >= 600 ? 2 : 1);
  return Math.max(240, Math.floor(w / cols) - 16);
}

function fmtAxis(v) {
  if (v === null || v === undefined) return '';
  if (v === 0) return '0';
  if (Math.abs(v) >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 1) + 'k';
  if (Math.abs(v) < 1) return +v.toPrecision(2) + '';
  return +v.toFixed(1) + '';
}

// clockTick labels the time axis: HH:MM on the minute, :SS between.
function clockTick(v) {
  if (v === null || v === undefined) return '';
  const d = new Date(v * 1000), p = (n) => String(n).padStart(2, '0');
  return d.getSeconds() === 0 ? p(d.getHours()) + ':' + p(d.getMinutes()) : ':' + p(d.getSeconds());
}

// decades are a log axis's splits: the powers of ten in its range.
function decades(u, axis, lo, hi) {
  const out = [];
  if (!(lo > 0) || !(hi > 0)) return out;
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)) && out.length < 12; e++) {
    const v = Math.pow(10, e);
    if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
  }
  return out;
}

function chartKey(lanes) {
  const k = el('div', 'chart-key');
  lanes.forEach((lane, i) => {
    const sw = el('span', 'swatch');
    sw.style.background = COLORS[i % COLORS.length];
    k.append(el('span', '', sw, lane));
  });
  k.append(el('span', 'muted', 'every 2 s, this tab only: rates and waits are changes since the previous refresh'));
  return k;
}

function buildCharts(lanes) {
  destroyCharts();
  const box = $('charts');
  box.replaceChildren();
  $('charts-key').replaceChildren(chartKey(lanes));
  const width = chartWidth();
  for (const def of CHARTS) {
    const cell = el('div', 'chart');
    cell.id = def.id;
    cell.append(el('div', 'chart-title', def.title));
    box.append(cell);
    const series = [{}], keys = [];
    lanes.forEach((lane, i) => {
      def.keys.forEach(([k, suffix], j) => {
        series.push({
          label: lane + (def.keys.length > 1 ? suffix : ''), stroke: COLORS[i % COLORS.length], width: 1.5,
          dash: j > 0 ? [5, 4] : undefined, spanGaps: !!def.spanGaps, points: { show: false },
          value: (u, v) => v === null || v === undefined ? '–' : fmtAxis(v),
        });
        keys.push(k + ':' + lane);
      });
    });
    const font = '11px system-ui, sans-serif', grid = { stroke: '#eee', width: 1 }, ticks = { size: 3, stroke: '#ccc', width: 1 };
    const opts = {
      width, height: 140,
      legend: { show: false }, // one key for all four, above them
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      scales: { x: { time: true }, y: def.log ? { distr: 3, log: 10 } : { range: (u, lo, hi) => [0, Math.max(hi || 0, 1) * 1.1] } },
      axes: [
        { size: 22, font, grid, ticks, space: 45, values: (u, vs) => vs.map(clockTick) },
        {
          size: 40, font, grid, ticks, values: (u, vs) => vs.map(fmtAxis),
          splits: def.log ? decades : undefined, // a log scale: a line per power of ten
        },
      ],
      series,
    };
    try {
      const plot = new uPlot(opts, chartData(keys, def.log), cell);
      charts.push({ def, plot, keys });
    } catch (e) {
      cell.append(el('p', 'muted', 'chart failed: ' + e.message));
    }
  }
  chartLanes = lanes.join('\n');
}

function chartData(keys, log) {
  return [hist.t.slice(), ...keys.map((k) => {
    const a = hist.s[k] ? hist.s[k].slice() : new Array(hist.t.length).fill(null);
    return log ? a.map((v) => (v > 0 ? v : null)) : a;
  })];
}

function drawCharts(s) {
  const box = $('charts');
  if (!box) return;
  if (!chartLib()) {
    if (!box.dataset.off) {
      box.dataset.off = '1';
      box.replaceChildren(el('p', 'muted', 'Charts unavailable (the chart library did not load); the tables above carry the same figures.'));
    }
    return;
  }
  const lanes = (s.lanes || []).map((l) => l.name);
  if (lanes.join('\n') !== chartLanes || charts.length === 0) buildCharts(lanes);
  for (const c of charts) {
    try { c.plot.setData(chartData(c.keys, c.def.log)); } catch (e) { /* keep the last picture */ }
  }
  const note = $('charts-note');
  if (note) {
    note.textContent = metricsOK === false ? 'Queue wait needs GET /metrics, which this admin does not serve.' : '';
  }
}

window.addEventListener('resize', () => {
  const w = chartWidth();
  for (const c of charts) { try { c.plot.setSize({ width: w, height: 140 }); } catch (e) { /* ignore */ } }
});

// ---- events ----

let events = [];
let lastEvent = 0;
let lastPID = null;

const BAD_EVENTS = new Set(['kill', 'crash']);

function eventRows() {
  return events.slice(-SHOWN_EVENTS).reverse().map((e) => {
    const bad = BAD_EVENTS.has(e.kind) || (e.kind === 'reload' && /refused|fail/i.test(e.detail || ''));
    return [[clock(e.time), 'muted', e.time ? ago(e.time) : ''], [e.kind, bad ? 'bad' : (e.kind === 'drain' || e.kind === 'resize' || e.kind === 'reload' ? 'warn-soft' : '')],
      e.lane || '', num(e.pid || ''), [((e.method || '') + ' ' + (e.path || '')).trim(), 'wrap'], [e.detail || '', 'text' + (bad ? ' bad-soft' : '')]];
  });
}

// ---- the page ----

function laneState(l) {
  if (l.crash_loop || l.state === 'crash_loop') {
    let t = 'crash loop';
    if (l.consecutive_crashes) t += ', ' + l.consecutive_crashes + ' crashes';
    if (l.backoff_ms > 0) t += ', retry in ' + secs(l.backoff_ms / 1000);
    return [t, 'bad'];
  }
  if (l.draining || l.state === 'draining') return ['draining', 'warn'];
  const s = l.state || 'ok';
  return [s, s === 'ok' ? 'ok' : 'warn'];
}

// timeLeft colours a request's time left: amber past half its timeout,
// red with less than a tenth left.
function timeLeft(r) {
  const total = (r.elapsed || 0) + (r.timeout_in || 0);
  const txt = secs(r.timeout_in) + (total > 0 ? ' of ' + secs(total) : '');
  if (total <= 0) return [txt, ''];
  if (r.timeout_in < 0.1 * total) return [txt, 'bad cell-bad'];
  if (r.elapsed > 0.5 * total) return [txt, 'warn cell-warn'];
  return [txt, ''];
}

function themeState(t) {
  const old = t.max_stale_s > 0 && t.age_s > t.max_stale_s / 2;
  switch (t.state) {
    case 'fresh': return [t.state, 'ok'];
    case 'stale':
      if (t.last_error) return ['stale, origin failing', 'warn', t.last_error];
      if (old) return ['stale, nearing max_stale', 'warn'];
      return ['stale', '', 'normal between refreshes: served at once, refreshed in the background on its next use'];
    default: return [t.state, 'bad'];
  }
}

function section(id, title, ...kids) {
  const s = el('section', '', el('h2', '', title), ...kids);
  s.id = id;
  return s;
}

// skeleton builds the page's sections once; the charts stay across
// refreshes, the rest is rebuilt each time.
function skeleton() {
  if ($('sec-now')) return;
  const charts = el('div', 'charts');
  charts.id = 'charts';
  const note = el('p', 'muted small');
  note.id = 'charts-note';
  const key = el('div');
  key.id = 'charts-key';
  $('data').replaceChildren(
    section('sec-now', 'In flight now'),
    section('sec-lanes', 'Lanes'),
    section('sec-charts', 'Last ' + (WINDOW_S / 60) + ' minutes', key, charts, note),
    section('sec-events', 'Events'),
    section('sec-workers', 'Workers'),
    el('div'));
  $('data').lastChild.id = 'rest';
}

function fill(id, title, ...kids) {
  $(id).replaceChildren(el('h2', '', title), ...kids);
}

function render(s, maps, reqs) {
  const lanes = s.lanes || [];
  const tq = lanes.reduce((a, l) => a + (l.queued || 0), 0), ti = lanes.reduce((a, l) => a + (l.inflight || 0), 0);
  $('summary').textContent = 'pid ' + s.pid + ' · up ' + dur(s.uptime_s) + ' · ' + (s.listen || '') +
    (s.config ? ' · ' + s.config : '') + ' · ' + ti + ' in flight, ' + tq + ' queued · updated ' + clock(new Date().toISOString());
  skeleton();

  const shown = (reqs || []).slice(0, SHOWN_REQUESTS);
  const now = [table('inflight', ['<lane', 'worker', '<method', '<path', '<client', 'queued', 'elapsed', 'time left'],
    shown.map((r) => [r.lane, r.worker, r.method, [r.path, 'wrap'], r.client, secs(r.queued), secs(r.elapsed), timeLeft(r)]),
    'nothing running')];
  if ((reqs || []).length > shown.length) now.push(el('p', 'muted', 'and ' + (reqs.length - shown.length) + ' more'));
  fill('sec-now', 'In flight now (' + (reqs || []).length + ')', ...now);

  fill('sec-lanes', 'Lanes', table('lanes',
    ['<lane', '<state', 'ready/min/max', 'inflight', 'queued/max', 'queue timeout', 'request timeout',
      'req/s', 'wait ms', 'p50 ms', 'p99 ms', 'served', 'rejected', 'timeouts', 'killed', 'respawns', 'drains', '<last exit', '<last drain'],
    lanes.map((l) => {
      const ready = (l.workers || []).filter((w) => w.state === 'ready').length;
      const r = rates[l.name] || {};
      const qfull = l.max_queue > 0 && l.queued >= l.max_queue / 2;
      const lat = l.latency_ms || {};
      const crashing = l.crash_loop || l.state === 'crash_loop';
      return [l.name, laneState(l), ready + '/' + l.min_workers + '/' + l.max_workers, l.inflight,
        [l.queued + '/' + num(l.max_queue), l.queued ? (qfull ? 'bad' : 'warn') : ''], shortDur(l.queue_timeout), shortDur(l.request_timeout),
        r.rps === undefined ? '' : r.rps.toFixed(1),
        r.wait === undefined ? (l.queued && metricsOK ? ['…', 'muted', 'requests wait, and none left the queue since the last refresh'] : '')
          : [ms(r.wait), r.wait > 1000 * goSecs(l.queue_timeout) / 2 ? 'warn' : '', 'mean wait of the requests that left the queue in the last 2 s'],
        lat.count ? ms(lat.p50) : '', lat.count ? ms(lat.p99) : '', l.served,
        [l.rejected, l.rejected ? 'warn' : ''], [l.timeouts, l.timeouts ? 'warn' : ''], [l.killed, l.killed ? 'warn' : ''], l.respawns, l.drains,
        [l.last_exit || '', 'text ' + (crashing ? 'bad' : 'muted')], [l.last_drain || '', 'text muted']];
    })));

  const ws = [];
  for (const l of lanes) {
    for (const w of l.workers || []) {
      const st = w.state === 'ready' ? '' : (w.state === 'killing' || w.state === 'dead' ? 'bad' : 'warn');
      ws.push([l.name, w.pid || '', [w.state, st], [w.inflight, w.inflight ? 'busy' : ''], w.served, bytes(w.rss), dur(w.uptime_s), [w.status || '', 'text muted']]);
    }
  }
  fill('sec-workers', 'Workers', table('workers', ['<lane', 'pid', '<state', 'inflight', 'served', 'rss', 'uptime', '<status'], ws));

  const evBox = el('div', 'scroll', table('events', ['<time', '<kind', '<lane', 'pid', '<request', '<detail'], eventRows(), 'no events yet'));
  fill('sec-events', 'Events' + (events.length > SHOWN_EVENTS ? ' (last ' + SHOWN_EVENTS + ')' : ''), evBox);

  const d = document.createDocumentFragment();
  d.append(el('h2', '', 'Mappings'));
  d.append(table('mappings', ['<lane', '<method', '<pattern', '<source', 'hits', 'added', 'last hit'],
    (maps || []).map((m) => [m.lane, m.method, [m.pattern, 'wrap'], m.source || (m.dynamic ? 'api' : 'config'),
      m.hits, ago(m.added), ago(m.last_hit)])));

  const a = s.auto_map;
  d.append(el('h2', '', 'auto_map'));
  if (a) {
    d.append(table('automap', ['<to lane', '<from', 'threshold', 'forget after', 'entries', 'max', 'learned', 'forgotten', 'evicted'],
      [[a.lane, (a.from || []).join(', '), a.threshold, a.forget_after, a.entries, a.max_entries, a.learned, a.forgotten, a.evicted]]));
  } else {
    d.append(el('p', 'muted', 'not configured'));
  }

  // fetchd and themes only exist with a theme configured.
  const f = s.fetchd || {};
  if (f.enabled) {
    d.append(el('h2', '', 'fetchd'));
    d.append(table('fetchd', ['<state', 'pid', 'restarts', 'cache entries', 'cache size', '<last error'],
      [[[f.state || '', f.state === 'ready' ? 'ok' : 'warn'], num(f.pid), [num(f.restarts), f.restarts ? 'warn' : ''],
        num(f.cache_entries), bytes(f.cache_bytes), [f.last_error || '', 'wrap bad']]]));

    d.append(el('h2', '', 'Themes'));
    d.append(table('themes', ['<theme', '<url', '<state', 'age', '<version', 'last fetch', '<last error', 'fetches', '304s', 'failures', 'rejected', 'stale serves', 'unthemed serves'],
      (s.themes || []).map((t) => [t.name, [t.url, 'wrap'], themeState(t),
        dur(t.age_s), t.version, ago(t.last_fetch), [t.last_error || '', 'wrap bad'], t.fetches, t.not_modified,
        [t.failures, t.failures ? 'warn' : ''], [t.rejected, t.rejected ? 'warn' : ''], t.stale_serves, [t.unthemed_serves, t.unthemed_serves ? 'warn' : '']])));
  }

  const fr = s.front || {};
  d.append(el('h2', '', 'Front'));
  d.append(table('front', ['accept errors', 'truncated', 'retries'], [[fr.accept_errors, fr.truncated, fr.retries]]));

  const r = s.last_reload;
  if (r) {
    d.append(el('h2', '', 'Last reload'));
    d.append(el('p', r.ok ? 'ok' : 'bad', ago(r.at) + ': ' + (r.ok ? 'ok' : 'refused') + (r.error ? ' — ' + r.error : '')));
    if (r.changed && r.changed.length) {
      const ul = el('ul');
      for (const c of r.changed) ul.append(el('li', '', c));
      d.append(ul);
    }
  }
  $('rest').replaceChildren(d);

  try { drawCharts(s); } catch (e) { /* a chart problem never breaks the tables */ }
}

class AuthError extends Error {}

async function call(path) {
  const tok = sessionStorage.getItem(KEY);
  const r = await fetch(path, { headers: tok ? { Authorization: 'Bearer ' + tok } : {}, cache: 'no-store' });
  if (r.status === 401) throw new AuthError('unauthorized');
  return r;
}

async function get(path) {
  const r = await call(path);
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) throw new Error(path + ': ' + ((body && body.error) || (r.status + ' ' + r.statusText)));
  return body;
}

// queueHist reads the queue-wait histogram from /metrics; null when the
// admin serves no metrics or the call fails (the wait is then not shown).
async function queueHist() {
  try {
    const r = await call('/metrics');
    if (!r.ok) { metricsOK = false; return null; }
    metricsOK = true;
    return parseQueueHist(await r.text());
  } catch (e) {
    if (e instanceof AuthError) throw e;
    return null;
  }
}

function reset() {
  destroyCharts();
  hist = { t: [], s: {} };
  prev = null;
  rates = {};
  events = [];
  lastEvent = 0;
  lastPID = null;
}

function askToken(why) {
  asking = true;
  reset();
  $('data').replaceChildren();
  $('summary').textContent = '';
  banner('');
  $('login-msg').textContent = why;
  $('login').hidden = false;
  $('token').value = '';
  $('token').focus();
}

let lastOK = 0;
function banner(text) {
  $('msg').textContent = text;
  $('msg').hidden = !text;
}

let busy = false; // a slow poll is not overlapped by the next one
async function tick() {
  if (asking || busy) return;
  busy = true;
  try {
    await poll();
  } finally {
    busy = false;
  }
}

async function poll() {
  try {
    const [s, m, reqs, evs, q] = await Promise.all([get('/api/status'), get('/api/map'), get('/api/requests'),
      get('/api/events?since=' + lastEvent), queueHist()]);
    if (asking) return;
    if (lastPID !== null && s.pid !== lastPID) {
      // A new supervisor: its event ids and counters start again; the
      // next poll asks for all its events.
      reset();
      lastPID = s.pid;
      return;
    }
    lastPID = s.pid;
    for (const e of evs || []) {
      if (e.id > lastEvent) { events.push(e); lastEvent = e.id; }
    }
    if (events.length > MAX_EVENTS) events.splice(0, events.length - MAX_EVENTS);
    record(s, q);
    render(s, m, reqs);
    lastOK = Date.now();
    banner('');
  } catch (e) {
    if (e instanceof AuthError) {
      const had = sessionStorage.getItem(KEY) !== null;
      sessionStorage.removeItem(KEY);
      askToken(had ? 'The token was refused; enter it again.' : 'This lanes admin needs a token.');
    } else {
      banner('Refresh failed at ' + clock(new Date().toISOString()) + ': ' + e.message +
        (lastOK ? ' — showing data from ' + dur((Date.now() - lastOK) / 1000) + ' ago' : '') + '; retrying every ' + POLL_MS / 1000 + ' s.');
    }
  }
}

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const tok = $('token').value.trim();
  if (!tok) return;
  sessionStorage.setItem(KEY, tok);
  $('token').value = '';
  $('login').hidden = true;
  asking = false;
  tick();
});

tick();
setInterval(tick, POLL_MS);
