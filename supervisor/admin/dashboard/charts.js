'use strict';
// Charts: the last 15 minutes of each lane, drawn from the supervisor's
// own ring of samples (GET /api/samples, one sample every 5 s per lane).
// The page loads the whole ring when it opens, then asks on every refresh
// for the samples after the last one it has (?since=SEQ): a page opened
// now shows what one open all along shows. uPlot is inlined as a script of
// its own; if it is missing or fails, everything but the charts works.
//
// This file defines functions only; page.js calls them.

// ---- the samples ----

// kept is the page's copy of the ring: each lane's samples, oldest first,
// trimmed to the window. (Not "history": that is window.history.)
let kept = { seq: 0, interval: 5, window: 900, lanes: new Map(), changed: false };

function keptReset() {
  kept = { seq: 0, interval: 5, window: 900, lanes: new Map(), changed: true };
}

// keptAdd takes a GET /api/samples answer. Lanes it does not list are
// gone (a reload removed them) and are dropped.
function keptAdd(doc) {
  if (!doc || !Array.isArray(doc.lanes)) return;
  kept.interval = doc.interval_s || kept.interval;
  kept.window = doc.window_s || kept.window;
  const seen = new Set();
  for (const ls of doc.lanes) {
    seen.add(ls.lane);
    const have = kept.lanes.get(ls.lane) || [];
    const top = have.length ? have[have.length - 1].seq : 0;
    for (const s of ls.samples || []) {
      if (s.seq > top) { s.t = when(s.time) / 1000; have.push(s); kept.changed = true; }
    }
    kept.lanes.set(ls.lane, have);
  }
  for (const name of [...kept.lanes.keys()]) {
    if (!seen.has(name)) { kept.lanes.delete(name); kept.changed = true; }
  }
  kept.seq = Math.max(kept.seq, doc.seq || 0);
  const end = keptEnd();
  for (const have of kept.lanes.values()) {
    let drop = 0;
    while (drop < have.length && have[drop].t < end - kept.window) drop++;
    if (drop) have.splice(0, drop);
  }
}

// keptEnd is the newest sample's time (unix seconds), or now.
function keptEnd() {
  let end = 0;
  for (const have of kept.lanes.values()) {
    if (have.length) end = Math.max(end, have[have.length - 1].t);
  }
  return end || Date.now() / 1000;
}

// ---- what is drawn ----

// Each lane gets a row of these charts. A series is [label, value of a
// sample, colour, dashed]. Red and amber mean trouble on this page: only
// 5xx answers are red.
const RATE = (cls) => (s) => (s.rps ? s.rps[cls] : null);
const CHARTS = [
  {
    id: 'rps', title: 'requests/s by status', series: [
      ['2xx', RATE('2xx'), '#2ca02c'], ['3xx', RATE('3xx'), '#1f77b4'],
      ['4xx', RATE('4xx'), '#b8860b', true], ['5xx', RATE('5xx'), '#c00000'],
    ],
  },
  {
    id: 'queue', title: 'queue: waiting, and wait p99 ms (right)', twoAxes: true, series: [
      ['waiting', (s) => s.queued, '#9467bd'], ['wait p99 ms', (s) => s.queue_wait_p99_ms, '#8c564b', true],
    ],
  },
  {
    id: 'workers', title: 'workers: ready and busy', series: [
      ['ready', (s) => s.ready, '#1f77b4'], ['busy', (s) => s.busy, '#ff7f0e', true],
    ],
  },
  {
    id: 'latency', title: 'latency ms: p50 and p99', log: true, series: [
      ['p50', (s) => s.latency_p50_ms, '#17becf'], ['p99', (s) => s.latency_p99_ms, '#5b2c8f', true],
    ],
  },
];

let charts = []; // [{def, lane, plot}]
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

const fromZero = (u, lo, hi) => [0, Math.max(hi || 0, 1) * 1.1];

function chartOptions(def) {
  const font = '11px system-ui, sans-serif', grid = { stroke: '#eee', width: 1 }, ticks = { size: 3, stroke: '#ccc', width: 1 };
  const series = [{ value: (u, v) => clock(v ? new Date(v * 1000).toISOString() : '') }];
  for (const [label, , stroke, dashed] of def.series) {
    series.push({
      label, stroke, width: 1.5, dash: dashed ? [5, 4] : undefined, points: { show: false }, spanGaps: false,
      scale: def.twoAxes && series.length === 2 ? 'ms' : 'y',
      value: (u, v) => (v === null || v === undefined ? '–' : fmtAxis(v)),
    });
  }
  const axes = [
    { size: 22, font, grid, ticks, space: 45, values: (u, vs) => vs.map(clockTick) },
    { size: 40, font, grid, ticks, values: (u, vs) => vs.map(fmtAxis), splits: def.log ? decades : undefined },
  ];
  const scales = {
    x: { time: true, range: () => [keptEnd() - kept.window, keptEnd()] },
    y: def.log ? { distr: 3, log: 10 } : { range: fromZero },
  };
  if (def.twoAxes) {
    scales.ms = { range: fromZero };
    axes.push({ scale: 'ms', side: 1, size: 40, font, grid: { show: false }, ticks, values: (u, vs) => vs.map(fmtAxis) });
  }
  return {
    width: chartWidth(), height: 140, series, axes, scales,
    legend: { show: true, live: true },
    cursor: { drag: { x: false, y: false }, points: { show: false } },
  };
}

function chartData(def, have) {
  const xs = have.map((s) => s.t);
  return [xs, ...def.series.map(([, get]) => have.map((s) => {
    const v = get(s);
    if (v === null || v === undefined) return null;
    return def.log && !(v > 0) ? null : v;
  }))];
}

function buildCharts(lanes) {
  destroyCharts();
  const box = $('charts');
  box.replaceChildren();
  for (const lane of lanes) {
    const row = el('div', 'charts-row');
    row.dataset.lane = lane;
    box.append(el('h3', '', 'lane ' + lane), row);
    for (const def of CHARTS) {
      const cell = el('div', 'chart chart-' + def.id, el('div', 'chart-title', def.title));
      row.append(cell);
      try {
        const plot = new uPlot(chartOptions(def), chartData(def, kept.lanes.get(lane) || []), cell);
        charts.push({ def, lane, plot });
      } catch (e) {
        cell.append(el('p', 'muted', 'chart failed: ' + e.message));
      }
    }
  }
  chartLanes = lanes.join('\n');
}

// drawCharts brings the charts up to date with the samples kept: rebuilt
// when the lanes changed, else given their new data.
function drawCharts() {
  const box = $('charts');
  if (!box) return;
  if (!chartLib()) {
    if (!box.dataset.off) {
      box.dataset.off = '1';
      box.replaceChildren(el('p', 'muted', 'Charts unavailable (the chart library did not load); the tables carry the live figures.'));
    }
    return;
  }
  const lanes = [...kept.lanes.keys()];
  if (lanes.join('\n') !== chartLanes || charts.length === 0) {
    buildCharts(lanes);
  } else if (kept.changed) {
    for (const c of charts) {
      try { c.plot.setData(chartData(c.def, kept.lanes.get(c.lane) || [])); } catch (e) { /* keep the last picture */ }
    }
  }
  kept.changed = false;
  // What the charts cover, for a reader (and the browser test).
  const first = lanes.length ? kept.lanes.get(lanes[0]) : [];
  box.dataset.points = String(first.length);
  box.dataset.since = first.length ? String(first[0].t) : '';
  const key = $('charts-key');
  if (key) {
    key.textContent = first.length
      ? 'since ' + clock(new Date(first[0].t * 1000).toISOString()) + ', a sample every ' + kept.interval +
        ' s kept by lanesd (rates and percentiles are of each ' + kept.interval + ' s); hover a chart for its values'
      : 'no samples yet: lanesd takes one every ' + kept.interval + ' s';
  }
}

window.addEventListener('resize', () => {
  const w = chartWidth();
  for (const c of charts) { try { c.plot.setSize({ width: w, height: 140 }); } catch (e) { /* ignore */ } }
});
