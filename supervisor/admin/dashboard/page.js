'use strict';
// The page shell holds no data and no secret: everything below is fetched
// from the API, with the token the user typed (kept in sessionStorage for
// this tab only). Every string is inserted as a text node, never as HTML.
//
// Every 2 s it reads /api/status, /api/map, /api/requests, the events
// after the last one seen (/api/events?since=ID), the lanes' samples after
// the last one seen (/api/samples?since=SEQ, for the charts: charts.js)
// and, for the tables' queue waits, /metrics. The tables' rates and waits
// are deltas between two refreshes. The action bar (actions.js) drains and
// resizes lanes and removes mappings.
//
// Sections: helpers; the API; rates for the tables; events; lane rows;
// rendering; the refresh loop and the login.
const KEY = 'lanes.admin.token';
const POLL_MS = 2000;
const MAX_EVENTS = 200; // kept in the tab; the server keeps 1,000
const SHOWN_EVENTS = 50;
const SHOWN_REQUESTS = 50;
const RECENT_MS = 5 * 60 * 1000; // a counter that rose this recently is amber
const $ = (id) => document.getElementById(id);
let asking = false;

// ---- helpers ----

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
// is a value (a node: as it is), or [value, class], or [value, class,
// title]; a row's cls property is its row's class.
function table(id, heads, rows, empty) {
  const t = el('table');
  if (id) t.id = id;
  const hr = el('tr');
  for (const h of heads) hr.append(el('th', h.startsWith('<') ? 'l' : '', h.replace(/^</, '')));
  t.append(hr);
  for (const r of rows) {
    const tr = el('tr', r.cls || '');
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

// ---- the API ----

class AuthError extends Error {}

// call sends one request with the token; a 401 throws AuthError.
async function call(path, method, body) {
  const tok = sessionStorage.getItem(KEY);
  const headers = tok ? { Authorization: 'Bearer ' + tok } : {};
  const init = { method: method || 'GET', headers, cache: 'no-store' };
  if (body !== null && body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401) throw new AuthError('unauthorized');
  return r;
}

async function get(path) {
  const res = await send('GET', path);
  if (!res.ok) throw new Error(path + ': ' + ((res.body && res.body.error) || res.status));
  return res.body;
}

// send makes a call and answers {ok, status, body}, body being the JSON
// answer (an error's {"error": ...} included), or null.
async function send(method, path, body) {
  const r = await call(path, method, body);
  let doc = null;
  try { doc = await r.json(); } catch (e) { doc = null; }
  return { ok: r.ok, status: r.status + (r.ok || (doc && doc.error) ? '' : ' ' + r.statusText), body: doc };
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

// samplesSince reads the samples after seq; null when the call fails: the
// charts then wait for the next refresh, and the tables carry on.
async function samplesSince(seq) {
  try {
    return await get('/api/samples?since=' + seq);
  } catch (e) {
    if (e instanceof AuthError) throw e;
    return null;
  }
}

// ---- rates for the tables ----

// Every refresh: for each lane, requests/s and rejected/s (deltas of
// served and rejected), whether requests waited at this refresh and the
// one before, and the mean queue wait of the requests that left the queue
// since the last refresh (deltas of the lanes_request_queue_seconds
// histogram's sum and count: exact, where a quantile from its coarse
// buckets would not be).
let prev = null; // the last refresh: {t, lanes: {name: {served, rejected, queued}}, queue: parsed histogram}
let rates = {}; // lane → {rps, rejps, wait, waited} of the last interval
let metricsOK = null; // null: not tried yet
let rises = {}; // 'lane/counter' → {v, at}: when this tab last saw it rise

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
  const cur = { t, lanes: {}, queue };
  rates = {};
  for (const l of s.lanes || []) {
    const n = l.name, p = prev && prev.lanes[n], dt = prev ? t - prev.t : 0;
    cur.lanes[n] = { served: l.served, rejected: l.rejected, queued: l.queued };
    const r = { waited: l.queued > 0 && !!p && p.queued > 0 };
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
  }
  prev = cur;
}

// rose says a counter rose within RECENT_MS, as this tab saw it:
// a rejection an hour ago is no reason for amber now.
function rose(scope, key, v) {
  const k = scope + '/' + key, now = Date.now(), r = rises[k];
  if (!r || v < r.v) { rises[k] = { v, at: 0 }; return false; }
  if (v > r.v) rises[k] = { v, at: now };
  return now - rises[k].at < RECENT_MS;
}

// recent is a counter's cell (key of obj, whose rises are kept under
// scope): amber while it rose recently.
function recent(scope, obj, key) {
  const v = obj[key] || 0;
  return [v, rose(scope, key, v) ? 'warn' : '', 'amber when it rose in the last ' + RECENT_MS / 60000 + ' minutes'];
}

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

// ---- lane rows ----

// laneState is a lane's state cell and the class of its row: a crash loop,
// a queue at half its max_queue, or refusals since the last refresh are
// red; requests waiting at two refreshes in a row are amber (a burst that
// clears in milliseconds is no alarm); a drain is blue (asked for, not
// trouble).
function laneState(l, r) {
  if (l.crash_loop || l.state === 'crash_loop') {
    let t = 'crash loop';
    if (l.consecutive_crashes) t += ', ' + l.consecutive_crashes + ' crashes';
    if (l.backoff_ms > 0) t += ', retry in ' + secs(l.backoff_ms / 1000);
    return [t, 'bad', 'row-bad'];
  }
  if (l.max_queue > 0 && l.queued >= l.max_queue / 2) return ['queue ' + Math.round(100 * l.queued / l.max_queue) + '% full', 'bad', 'row-bad'];
  if (r.rejps > 0) return ['refusing (503)', 'bad', 'row-bad'];
  if (l.draining || l.state === 'draining') return ['draining', 'info', 'row-info'];
  if (r.waited) return ['queueing', 'warn', 'row-warn'];
  const s = l.state || 'ok';
  return [s, s === 'ok' ? 'ok' : 'warn', s === 'ok' ? '' : 'row-warn'];
}

// capacity is the most requests a lane runs at once: its slots, or
// max_workers × concurrency.
function capacity(l) {
  return l.direct ? l.slots : l.max_workers * Math.max(1, l.concurrency || 1);
}

function waitCell(l, r) {
  if (r.wait === undefined) {
    return l.queued && metricsOK ? ['…', 'muted', 'requests wait, and none left the queue since the last refresh'] : '';
  }
  return [ms(r.wait), r.wait > 1000 * goSecs(l.queue_timeout) / 2 ? 'warn' : '', 'mean wait of the requests that left the queue in the last 2 s'];
}

function laneRow(l) {
  const ready = (l.workers || []).filter((w) => w.state === 'ready').length;
  const r = rates[l.name] || {};
  const qfull = l.max_queue > 0 && l.queued >= l.max_queue / 2;
  const lat = l.latency_ms || {};
  const crashing = l.crash_loop || l.state === 'crash_loop';
  const [stateText, stateCls, rowCls] = laneState(l, r);
  const row = [l.name, [stateText, stateCls], l.direct ? 'direct' : ready + '/' + l.min_workers + '/' + l.max_workers,
    [l.inflight + '/' + capacity(l), '', 'running / ' + (l.direct ? 'slots' : 'max_workers × concurrency')],
    [l.queued + '/' + num(l.max_queue), qfull ? 'bad' : (r.waited ? 'warn' : '')], shortDur(l.queue_timeout), shortDur(l.request_timeout),
    r.rps === undefined ? '' : r.rps.toFixed(1), waitCell(l, r),
    lat.count ? ms(lat.p50) : '', lat.count ? ms(lat.p99) : '', l.served,
    recent(l.name, l, 'rejected'), recent(l.name, l, 'timeouts'), recent(l.name, l, 'killed'), l.respawns, l.drains,
    [l.last_exit || '', 'text ' + (crashing ? 'bad' : 'muted')], [l.last_drain || '', 'text muted'], laneActions(l)];
  row.cls = rowCls;
  return row;
}

// ---- rendering ----

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
  const key = el('p', 'muted small');
  key.id = 'charts-key';
  $('data').replaceChildren(
    section('sec-now', 'In flight now'),
    section('sec-lanes', 'Lanes'),
    section('sec-events', 'Events'),
    section('sec-charts', 'Last 15 minutes', key, charts),
    section('sec-workers', 'Workers'),
    el('div'));
  $('data').lastChild.id = 'rest';
}

function fill(id, title, ...kids) {
  $(id).replaceChildren(el('h2', '', title), ...kids);
}

function renderSummary(s) {
  const lanes = s.lanes || [];
  const tq = lanes.reduce((a, l) => a + (l.queued || 0), 0), ti = lanes.reduce((a, l) => a + (l.inflight || 0), 0);
  $('summary').textContent = 'pid ' + s.pid + ' · up ' + dur(s.uptime_s) + ' · ' + (s.listen || '') +
    (s.config ? ' · ' + s.config : '') + ' · ' + ti + ' in flight, ' + tq + ' queued · updated ' + clock(new Date().toISOString());
}

function renderInflight(reqs) {
  const shown = (reqs || []).slice(0, SHOWN_REQUESTS);
  const now = [table('inflight', ['<lane', 'worker', '<method', '<path', '<client', 'queued', 'elapsed', 'time left'],
    shown.map((r) => [r.lane, r.worker, r.method, [r.path, 'wrap'], r.client, secs(r.queued), secs(r.elapsed), timeLeft(r)]),
    'nothing running')];
  if ((reqs || []).length > shown.length) now.push(el('p', 'muted', 'and ' + (reqs.length - shown.length) + ' more'));
  fill('sec-now', 'In flight now (' + (reqs || []).length + ')', ...now);
}

function renderLanes(lanes) {
  fill('sec-lanes', 'Lanes', table('lanes',
    ['<lane', '<state', 'ready/min/max', 'running/max', 'queued/max', 'queue timeout', 'request timeout',
      'req/s', 'wait ms', 'p50 ms', 'p99 ms', 'served', 'rejected', 'timeouts', 'killed', 'respawns', 'drains', '<last exit', '<last drain', '<'],
    lanes.map(laneRow)));
}

function renderWorkers(lanes) {
  const ws = [];
  for (const l of lanes) {
    for (const w of l.workers || []) {
      const st = w.state === 'ready' ? '' : (w.state === 'killing' || w.state === 'dead' ? 'bad' : 'warn');
      ws.push([l.name, w.pid || '', [w.state, st], [w.inflight, w.inflight ? 'busy' : ''], w.served, bytes(w.rss), dur(w.uptime_s), [w.status || '', 'text muted']]);
    }
  }
  fill('sec-workers', 'Workers', table('workers', ['<lane', 'pid', '<state', 'inflight', 'served', 'rss', 'uptime', '<status'], ws));
}

function renderEvents() {
  const evBox = el('div', 'scroll', table('events', ['<time', '<kind', '<lane', 'pid', '<request', '<detail'], eventRows(), 'no events yet'));
  fill('sec-events', 'Events' + (events.length > SHOWN_EVENTS ? ' (last ' + SHOWN_EVENTS + ')' : ''), evBox);
}

// renderRest is everything below the workers: mappings, auto_map, fetchd
// and themes (with a theme configured), the front, the last reload.
function renderRest(s, maps) {
  const d = document.createDocumentFragment();
  d.append(el('h2', '', 'Mappings'));
  d.append(table('mappings', ['<lane', '<method', '<pattern', '<source', 'hits', 'added', 'last hit', '<'],
    (maps || []).map((m) => [m.lane, m.method, [m.pattern, 'wrap'], m.source || (m.dynamic ? 'api' : 'config'),
      m.hits, ago(m.added), ago(m.last_hit), mappingActions(m)])));

  const a = s.auto_map;
  d.append(el('h2', '', 'auto_map'));
  if (a) {
    d.append(table('automap', ['<to lane', '<from', 'threshold', 'forget after', 'entries', 'max', 'learned', 'forgotten', 'evicted'],
      [[a.lane, (a.from || []).join(', '), a.threshold, a.forget_after, a.entries, a.max_entries, a.learned, a.forgotten, a.evicted]]));
  } else {
    d.append(el('p', 'muted', 'not configured'));
  }

  const f = s.fetchd || {};
  if (f.enabled) {
    d.append(el('h2', '', 'fetchd'));
    d.append(table('fetchd', ['<state', 'pid', 'restarts', 'cache entries', 'cache size', '<last error'],
      [[[f.state || '', f.state === 'ready' ? 'ok' : 'warn'], num(f.pid), recent('fetchd', f, 'restarts'),
        num(f.cache_entries), bytes(f.cache_bytes), [f.last_error || '', 'wrap bad']]]));

    d.append(el('h2', '', 'Themes'));
    d.append(table('themes', ['<theme', '<url', '<state', 'age', '<version', 'last fetch', '<last error', 'fetches', '304s', 'failures', 'rejected', 'stale serves', 'unthemed serves'],
      (s.themes || []).map((t) => [t.name, [t.url, 'wrap'], themeState(t),
        dur(t.age_s), t.version, ago(t.last_fetch), [t.last_error || '', 'wrap bad'], t.fetches, t.not_modified,
        recent('theme ' + t.name, t, 'failures'), recent('theme ' + t.name, t, 'rejected'), t.stale_serves,
        recent('theme ' + t.name, t, 'unthemed_serves')])));
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
}

function render(s, maps, reqs) {
  const lanes = s.lanes || [];
  renderSummary(s);
  skeleton();
  renderInflight(reqs);
  renderLanes(lanes);
  renderEvents();
  renderWorkers(lanes);
  renderRest(s, maps);
  try { drawCharts(); } catch (e) { /* a chart problem never breaks the tables */ }
}

// ---- the refresh loop and the login ----

function reset() {
  destroyCharts();
  keptReset();
  prev = null;
  rates = {};
  rises = {};
  events = [];
  lastEvent = 0;
  lastPID = null;
}

function askToken(why) {
  asking = true;
  reset();
  closeAction();
  actionMsg('', '');
  $('data').replaceChildren();
  $('summary').textContent = '';
  banner('');
  $('login-msg').textContent = why;
  $('login').hidden = false;
  $('token').value = '';
  $('token').focus();
}

// authFailed forgets a refused token and asks for one.
function authFailed() {
  const had = sessionStorage.getItem(KEY) !== null;
  sessionStorage.removeItem(KEY);
  askToken(had ? 'The token was refused; enter it again.' : 'This lanes admin needs a token.');
}

let lastOK = 0;
function banner(text) {
  $('msg').textContent = text;
  $('msg').hidden = !text;
}

let busy = false; // a slow refresh is not overlapped by the next one
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
    const [s, m, reqs, evs, smp, q] = await Promise.all([get('/api/status'), get('/api/map'), get('/api/requests'),
      get('/api/events?since=' + lastEvent), samplesSince(kept.seq), queueHist()]);
    if (asking) return;
    if (lastPID !== null && s.pid !== lastPID) {
      // A new supervisor: its event ids, sample numbers and counters start
      // again; the next refresh asks for all of them.
      reset();
      lastPID = s.pid;
      return;
    }
    lastPID = s.pid;
    for (const e of evs || []) {
      if (e.id > lastEvent) { events.push(e); lastEvent = e.id; }
    }
    if (events.length > MAX_EVENTS) events.splice(0, events.length - MAX_EVENTS);
    keptAdd(smp);
    record(s, q);
    render(s, m, reqs);
    lastOK = Date.now();
    banner('');
  } catch (e) {
    if (e instanceof AuthError) {
      authFailed();
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

initActions();
tick();
setInterval(tick, POLL_MS);
