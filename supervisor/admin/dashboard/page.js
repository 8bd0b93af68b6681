'use strict';
// The page shell holds no data and no secret: everything below is fetched
// from the API, with the token the user typed (kept in sessionStorage for
// this tab only). Every string is inserted as a text node, never as HTML.
const KEY = 'lanes.admin.token';
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

// table builds a table; a cell is a value, or [value, class].
function table(id, heads, rows) {
  const t = el('table');
  if (id) t.id = id;
  const hr = el('tr');
  for (const h of heads) hr.append(el('th', h.startsWith('<') ? 'l' : '', h.replace(/^</, '')));
  t.append(hr);
  for (const r of rows) {
    const tr = el('tr');
    r.forEach((c, i) => {
      let cls = heads[i] && heads[i].startsWith('<') ? 'l' : '';
      if (Array.isArray(c)) { cls += ' ' + c[1]; c = c[0]; }
      tr.append(el('td', cls.trim(), c));
    });
    t.append(tr);
  }
  if (rows.length === 0) {
    const tr = el('tr'), td = el('td', 'l muted', 'none');
    td.colSpan = heads.length;
    tr.append(td);
    t.append(tr);
  }
  return t;
}

const num = (v) => (v === undefined || v === null) ? '' : v;
const ms = (v) => (typeof v === 'number') ? v.toFixed(1) : '';
function dur(s) {
  if (typeof s !== 'number') return '';
  s = Math.round(s);
  if (s < 120) return s + 's';
  if (s < 7200) return Math.round(s / 60) + 'm';
  if (s < 172800) return Math.round(s / 3600) + 'h';
  return Math.round(s / 86400) + 'd';
}
function ago(iso) {
  if (!iso) return 'never';
  const t = Date.parse(iso);
  if (isNaN(t) || t <= 0) return '';
  return dur(Math.max(0, (Date.now() - t) / 1000)) + ' ago';
}
function bytes(n) {
  if (typeof n !== 'number') return '';
  if (n < 1024) return n + ' B';
  if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1048576).toFixed(1) + ' MiB';
}

function laneState(l) {
  if (l.crash_loop) return ['crash loop' + (l.last_exit ? ': ' + l.last_exit : ''), 'bad'];
  if (l.draining || l.state === 'draining') return ['draining', 'warn'];
  const s = l.state || 'ok';
  return [s, s === 'ok' ? 'ok' : 'warn'];
}

function render(s, maps) {
  $('summary').textContent = 'pid ' + s.pid + ' · up ' + dur(s.uptime_s) + ' · ' + (s.listen || '') +
    (s.config ? ' · ' + s.config : '');
  const d = document.createDocumentFragment();

  d.append(el('h2', '', 'Lanes'));
  d.append(table('lanes',
    ['<lane', '<state', 'ready/min/max', 'inflight', 'queued', 'served', 'rejected', 'timeouts', 'killed', 'respawns', 'drains', 'p50 ms', 'p99 ms'],
    (s.lanes || []).map((l) => {
      const ready = (l.workers || []).filter((w) => w.state === 'ready').length;
      return [l.name, laneState(l), ready + '/' + l.min_workers + '/' + l.max_workers, l.inflight, l.queued, l.served,
        [l.rejected, l.rejected ? 'warn' : ''], [l.timeouts, l.timeouts ? 'warn' : ''], l.killed, l.respawns, l.drains,
        ms(l.latency_ms && l.latency_ms.p50), ms(l.latency_ms && l.latency_ms.p99)];
    })));

  d.append(el('h2', '', 'Workers'));
  for (const l of s.lanes || []) {
    d.append(el('h3', '', 'lane ' + l.name));
    d.append(table('', ['pid', '<state', 'inflight', 'served', 'rss', 'uptime'],
      (l.workers || []).map((w) => [w.pid, w.state, w.inflight, w.served, bytes(w.rss), dur(w.uptime_s)])));
  }

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

  const f = s.fetchd || {};
  d.append(el('h2', '', 'fetchd'));
  d.append(table('fetchd', ['<state', 'pid', 'restarts', 'cache entries', 'cache size', '<last error'],
    [[f.enabled ? [f.state || '', f.state === 'ready' ? 'ok' : 'warn'] : ['disabled', 'muted'], num(f.pid), num(f.restarts),
      num(f.cache_entries), bytes(f.cache_bytes), [f.last_error || '', 'wrap bad']]]));

  d.append(el('h2', '', 'Themes'));
  d.append(table('themes', ['<theme', '<url', '<state', 'age', '<version', 'last fetch', '<last error', 'fetches', '304s', 'failures', 'rejected', 'stale serves', 'unthemed serves'],
    (s.themes || []).map((t) => [t.name, [t.url, 'wrap'], [t.state, t.state === 'fresh' ? 'ok' : (t.state === 'stale' ? 'warn' : 'bad')],
      dur(t.age_s), t.version, ago(t.last_fetch), [t.last_error || '', 'wrap bad'], t.fetches, t.not_modified, t.failures,
      t.rejected, t.stale_serves, t.unthemed_serves])));

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
  $('data').replaceChildren(d);
}

class AuthError extends Error {}

async function get(path) {
  const tok = sessionStorage.getItem(KEY);
  const r = await fetch(path, { headers: tok ? { Authorization: 'Bearer ' + tok } : {}, cache: 'no-store' });
  if (r.status === 401) throw new AuthError('unauthorized');
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) throw new Error((body && body.error) || (r.status + ' ' + r.statusText));
  return body;
}

function askToken(why) {
  asking = true;
  $('data').replaceChildren();
  $('summary').textContent = '';
  $('msg').textContent = '';
  $('login-msg').textContent = why;
  $('login').hidden = false;
  $('token').value = '';
  $('token').focus();
}

async function tick() {
  if (asking) return;
  try {
    const [s, m] = await Promise.all([get('/api/status'), get('/api/map')]);
    if (asking) return;
    render(s, m);
    $('msg').textContent = '';
  } catch (e) {
    if (e instanceof AuthError) {
      const had = sessionStorage.getItem(KEY) !== null;
      sessionStorage.removeItem(KEY);
      askToken(had ? 'The token was refused; enter it again.' : 'This lanes admin needs a token.');
    } else {
      $('msg').textContent = 'cannot load status: ' + e.message;
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
setInterval(tick, 2000);
