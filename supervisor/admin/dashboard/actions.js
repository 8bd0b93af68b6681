'use strict';
// Actions: drain or resize a lane, remove a runtime or learned mapping —
// the admin API's own calls, sent with the token like every other call.
// A button in a row only opens the action bar (#action, fixed at the
// bottom of the window), which says what will happen and sends the call
// when confirmed. The answer, or the API's error text when it refuses a
// call (nothing then changed), stays in #action-msg.
//
// This file defines functions only; page.js calls them.

let pending = null; // the action the bar offers: {kind, lane, ...}
let sending = false;

// actionButton is a row's button that opens the bar for an action.
function actionButton(label, act) {
  const b = el('button', 'act', label);
  b.type = 'button';
  b.dataset.act = JSON.stringify(act);
  return b;
}

function laneActions(l) {
  return el('span', 'acts', actionButton('drain', { kind: 'drain', lane: l.name }),
    actionButton('resize', { kind: 'resize', lane: l.name, min: l.min_workers, max: l.max_workers }));
}

function mappingActions(m) {
  if (!m.dynamic) return ''; // a config mapping goes with an edit of the file and a reload
  return actionButton('remove', { kind: 'unmap', lane: m.lane, method: m.method, pattern: m.pattern, source: m.source || 'api' });
}

function sameAction(a, b) {
  return a && b && a.kind === b.kind && a.lane === b.lane && a.method === b.method && a.pattern === b.pattern;
}

// numberInput is a labelled whole-number field.
function numberInput(id, label, value) {
  const i = el('input');
  i.id = id;
  i.type = 'number';
  i.min = '0';
  i.step = '1';
  i.value = String(value);
  const l = el('label', '', label + ' ', i);
  return l;
}

function openAction(act) {
  if (sending || sameAction(pending, act)) return; // the click after its pointerdown
  pending = act;
  const bar = $('action');
  const go = el('button', 'danger', '');
  go.id = 'action-go';
  go.type = 'submit';
  const cancel = el('button', '', 'Cancel');
  cancel.type = 'button';
  cancel.id = 'action-cancel';
  cancel.addEventListener('click', closeAction);
  let what;
  switch (act.kind) {
    case 'drain':
      what = el('span', '', 'Drain lane ', el('b', '', act.lane),
        ': replace its workers one by one, each finishing its requests first; the lane keeps serving.');
      go.textContent = 'Drain';
      break;
    case 'resize':
      what = el('span', '', 'Resize lane ', el('b', '', act.lane), ': ',
        numberInput('action-min', 'min_workers', act.min), ' ', numberInput('action-max', 'max_workers', act.max));
      go.textContent = 'Resize';
      break;
    case 'unmap':
      what = el('span', '', 'Remove the ' + act.source + ' mapping ', el('code', '', act.method + ' ' + act.pattern),
        ' (to lane ' + act.lane + '): its requests go back to the lane the config gives them.');
      go.textContent = 'Remove';
      break;
    default:
      return;
  }
  bar.replaceChildren(what, ' ', go, ' ', cancel);
  bar.hidden = false;
  actionMsg('', '');
  (act.kind === 'resize' ? $('action-min') : go).focus();
}

function closeAction() {
  pending = null;
  $('action').hidden = true;
  $('action').replaceChildren();
}

function actionMsg(text, cls) {
  const m = $('action-msg');
  m.textContent = text;
  m.className = cls;
  m.hidden = !text;
}

// wholeOrEmpty reads a field: a whole number ≥ 0, null when empty (the
// API then keeps that value), undefined when it is neither.
function wholeOrEmpty(id) {
  const v = $(id).value.trim();
  if (v === '') return null;
  return /^\d+$/.test(v) ? parseInt(v, 10) : undefined;
}

// request is the call an action makes: [method, path, body], or a string
// saying why it cannot be made.
function request(act) {
  const lanePath = '/api/lanes/' + encodeURIComponent(act.lane);
  switch (act.kind) {
    case 'drain': return ['POST', lanePath + '/drain', null];
    case 'unmap': return ['DELETE', '/api/map', { method: act.method, pattern: act.pattern }];
    case 'resize': {
      const min = wholeOrEmpty('action-min'), max = wholeOrEmpty('action-max');
      if (min === undefined || max === undefined) return 'min_workers and max_workers are whole numbers (empty: unchanged)';
      const body = {};
      if (min !== null) body.min_workers = min;
      if (max !== null) body.max_workers = max;
      return ['POST', lanePath + '/resize', body];
    }
  }
  return 'unknown action';
}

// done says what an accepted call did.
function done(act, res) {
  switch (act.kind) {
    case 'drain': return 'Drain of lane ' + act.lane + ' started: ' + res.workers + ' worker(s) to replace.';
    case 'resize': return 'Lane ' + act.lane + ' resized: min_workers ' + res.min_workers + ', max_workers ' + res.max_workers + '.';
    case 'unmap': return 'Removed ' + act.method + ' ' + act.pattern + '.';
  }
  return 'Done.';
}

async function runAction(ev) {
  ev.preventDefault();
  const act = pending;
  if (!act || sending) return;
  const req = request(act);
  if (typeof req === 'string') { actionMsg(req, 'bad'); return; }
  sending = true;
  $('action-go').disabled = true;
  try {
    const res = await send(...req);
    if (res.ok) {
      closeAction();
      actionMsg(done(act, res.body || {}), 'ok');
      tick(); // show the change now, not in 2 s
    } else {
      // Refused: the API's own words; the bar stays for a correction.
      actionMsg('Refused (' + res.status + '): ' + ((res.body && res.body.error) || 'no reason given'), 'bad');
    }
  } catch (e) {
    if (e instanceof AuthError) { closeAction(); authFailed(); return; }
    actionMsg('Not sent: ' + e.message, 'bad');
  } finally {
    sending = false;
    if ($('action-go')) $('action-go').disabled = false;
  }
}

// A row's button opens the bar on pointerdown as well as on click: the
// tables are rebuilt every refresh, and a click whose button was replaced
// between press and release would be lost.
function onActionButton(ev) {
  const b = ev.target.closest && ev.target.closest('button[data-act]');
  if (!b) return;
  ev.preventDefault();
  openAction(JSON.parse(b.dataset.act));
}

function initActions() {
  document.addEventListener('pointerdown', onActionButton);
  document.addEventListener('click', onActionButton);
  $('action').addEventListener('submit', runAction);
  document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape' && pending) closeAction(); });
}
