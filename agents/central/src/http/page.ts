/**
 * The supervision page: static HTML, CSS and vanilla JS served by the central agent. The script
 * polls the JSON API and builds every cell with `textContent`, never `innerHTML`, so nothing a site
 * sent can run in the operator's browser; the Content-Security-Policy forbids inline code anyway.
 */

/** How often the page refreshes itself. */
export const REFRESH_MS = 5000;

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sitesync supervision</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/supervision.css">
<script src="/supervision.js" defer></script>
</head>
<body>
<header>
  <h1>sitesync <span>supervision</span></h1>
  <div id="who"></div>
  <div id="updated" aria-live="polite">loading…</div>
</header>
<div id="notice" role="status" hidden></div>
<main>
  <section>
    <h2>Sites</h2>
    <p class="note" id="broker-note" hidden></p>
    <table id="sites"><thead><tr>
      <th>Site</th><th>Pipeline</th><th>State</th><th>Lag</th><th>Last merge</th><th>Rows</th>
      <th>Queued</th><th>Agent</th><th>Dead letters</th><th>Last error</th>
    </tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Activity, last 24 hours</h2>
    <p class="note">Per site: rows per session (bars: green complete, red incomplete, amber abandoned, blue open,
      grey sent nothing) and lag (line: time since the site started its newest session complete by then).</p>
    <div id="activity" class="charts"><p class="note">loading…</p></div>
  </section>
  <section>
    <h2>Dead letters</h2>
    <p class="note">Grouped by site and reason. Replay sends back the group's verified dead letters; unverified
      ones stay (syncctl dlq replay --force).</p>
    <table id="dead-letters"><thead><tr>
      <th>Site</th><th>Reason</th><th>Count</th><th>Trust</th><th>Types</th><th>Oldest</th><th>Newest</th><th></th>
    </tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Recent sessions</h2>
    <p class="note">Sessions that sent nothing are folded into one line per site.</p>
    <table id="sessions"><thead><tr>
      <th>Session</th><th>Site</th><th>Version</th><th>Status</th><th>Started (site)</th>
      <th>Finished (site)</th><th>Batches</th><th>Headers</th><th>Acknowledged</th>
    </tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Intervention transfers</h2>
    <form id="move" hidden>
      <label>Intervention GUID <input name="guid" required pattern="[0-9a-fA-F-]{36}" size="38" autocomplete="off"></label>
      <label>to site <input name="to" type="number" min="1" required></label>
      <button type="submit">Move</button>
    </form>
    <table id="transfers"><thead><tr>
      <th>Transfer</th><th>Intervention</th><th>From</th><th>To</th><th>Procedure</th><th>State</th>
      <th>Reason</th><th>Requested by</th><th>Updated</th>
    </tr></thead><tbody></tbody></table>
  </section>
</main>
</body>
</html>
`;

export const FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">
<rect width="16" height="16" rx="3" fill="#24292f"/><circle cx="8" cy="8" r="4" fill="#1a7f37"/></svg>
`;

export const PAGE_CSS = `:root { --ok: #1a7f37; --syncing: #0969da; --stale: #9a6700; --error: #cf222e; --line: #d0d7de; --muted: #57606a; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; background: #f6f8fa; }
header { display: flex; align-items: baseline; gap: 1.5rem; padding: .8rem 1.5rem; background: #24292f; color: #fff; }
header h1 { margin: 0; font-size: 1.2rem; }
header h1 span { font-weight: 400; color: #c9d1d9; }
#who { margin-left: auto; color: #c9d1d9; }
#updated { color: #8c959f; font-variant-numeric: tabular-nums; }
#updated.failed { color: #ff8182; }
#notice { margin: 1rem 1.5rem 0; padding: .6rem 1rem; border-radius: 6px; background: #ddf4ff; border: 1px solid #54aeff; }
#notice.bad { background: #ffebe9; border-color: #ff8182; }
main { padding: 0 1.5rem 2rem; }
section { margin-top: 1.5rem; }
h2 { font-size: 1rem; margin: 0 0 .5rem; }
table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); border-radius: 6px; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
td.empty { color: var(--muted); font-style: italic; text-align: center; }
td.error { color: var(--error); max-width: 28rem; overflow-wrap: anywhere; }
.badge { display: inline-block; white-space: nowrap; min-width: 4.5em; padding: .05rem .5rem; border-radius: 2em; color: #fff; font-size: 12px; font-weight: 600; text-align: center; }
.badge.ok, .badge.complete, .badge.completed, .badge.connected { background: var(--ok); }
.badge.accepted, .badge.syncing, .badge.open, .badge.requested, .badge.awaiting-procedure, .badge.sent { background: var(--syncing); }
.badge.stale, .badge.incomplete, .badge.abandoned, .badge.cancelled { background: var(--stale); }
.badge.error, .badge.refused, .badge.rejected, .badge.conflict { background: var(--error); }
.badge.other, .badge.not-connected, .badge.disabled { background: var(--muted); }
.note { color: var(--muted); margin: 0 0 .4rem; }
button { font: inherit; padding: .2rem .8rem; border-radius: 6px; border: 1px solid #1f883d; background: #1f883d; color: #fff; cursor: pointer; }
button:disabled { opacity: .5; cursor: default; }
form { display: flex; gap: 1rem; align-items: center; margin-bottom: .5rem; }
input { font: inherit; padding: .2rem .4rem; border: 1px solid var(--line); border-radius: 6px; }
input[type=number] { width: 6em; }
tr.fold > td, tr.letters > td { padding: 0; background: #f6f8fa; }
tr.folded > td { background: #fbfcfd; }
table.inner th { background: #fbfcfd; }
details > summary { cursor: pointer; padding: .35rem .6rem; color: var(--muted); }
details[open] > summary { border-bottom: 1px solid var(--line); }
table.inner { border: 0; border-radius: 0; }
table.inner td { border-bottom: 1px solid #eaeef2; }
tr.group > td { background: #fff; font-weight: 600; }
tr.group .badge + .badge { margin-left: .3rem; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(640px, 1fr)); gap: .8rem; }
figure.activity { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .4rem .6rem; }
figure.activity figcaption { font-weight: 600; margin-bottom: .2rem; }
figure.activity figcaption span { font-weight: 400; color: var(--muted); margin-left: .6rem; }
svg.activity { display: block; max-width: 100%; height: auto; }
svg.activity .panel { fill: #fff; stroke: var(--line); }
svg.activity .grid { stroke: #eaeef2; }
svg.activity text { font: 10px system-ui, sans-serif; fill: var(--muted); }
svg.activity text.axis-name { font-weight: 600; }
svg.activity text.empty { font-style: italic; font-size: 11px; }
svg.activity .bar { fill: var(--muted); }
svg.activity .bar.complete { fill: var(--ok); }
svg.activity .bar.incomplete { fill: var(--error); }
svg.activity .bar.abandoned { fill: var(--stale); }
svg.activity .bar.open { fill: var(--syncing); }
svg.activity .bar.nothing { fill: #8c959f; }
svg.activity polyline.lag { fill: none; stroke: #8250df; stroke-width: 1.5; }
svg.activity .ack { fill: #8250df; }
`;

export const PAGE_JS = `'use strict';
(function () {
  var REFRESH_MS = ${REFRESH_MS};
  var me = null;
  var timer = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function badge(state, label) {
    var known = ['ok', 'syncing', 'stale', 'error', 'disabled', 'complete', 'incomplete', 'abandoned', 'open', 'connected', 'not-connected',
      'accepted', 'completed', 'rejected', 'conflict', 'requested', 'awaiting-procedure', 'sent', 'refused', 'cancelled'];
    return el('span', label || state || '-', 'badge ' + (known.indexOf(state) >= 0 ? state : 'other'));
  }
  function when(iso) { return iso ? new Date(iso).toLocaleString() : '-'; }
  function dash(v) { return v === null || v === undefined || v === '' ? '-' : v; }
  function short(id) { return id ? String(id).slice(0, 8) : '-'; }
  function row(cells, attrs) {
    var tr = el('tr');
    Object.keys(attrs || {}).forEach(function (k) { tr.setAttribute(k, attrs[k]); });
    cells.forEach(function (c) {
      if (c instanceof Node) { var td = el('td'); td.appendChild(c); tr.appendChild(td); }
      else if (c && typeof c === 'object') { var t = el('td', dash(c.text), c.cls); if (c.title) t.title = c.title; tr.appendChild(t); }
      else tr.appendChild(el('td', dash(c)));
    });
    return tr;
  }
  function fill(id, rows, emptyText) {
    var body = $(id).tBodies[0];
    var cols = $(id).tHead.rows[0].cells.length;
    body.replaceChildren();
    if (rows.length === 0) { var td = el('td', emptyText, 'empty'); td.colSpan = cols; body.appendChild(el('tr')).appendChild(td); }
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function notice(text, bad) {
    var n = $('notice');
    n.textContent = text;
    n.className = bad ? 'bad' : '';
    n.hidden = !text;
  }
  function api(path, init) {
    return fetch(path, Object.assign({ credentials: 'same-origin', cache: 'no-store' }, init || {})).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) throw new Error((body && body.error) || ('HTTP ' + r.status));
        return body;
      });
    });
  }
  function post(path, body) {
    return api(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  }
  var operator = function () { return me && me.role === 'operator'; };

  function renderSites(s) {
    var note = $('broker-note');
    note.hidden = s.brokerFigures === 'ok';
    note.textContent = 'Queue figures ' + s.brokerFigures;
    fill('sites', s.sites.map(function (x) {
      var agent = x.consumers === null || x.consumers === undefined ? '-' : (x.consumers > 0 ? badge('connected') : badge('not-connected', 'not connected'));
      return row([
        { text: x.site, cls: 'num' }, x.pipeline, badge(x.state), { text: x.lag, cls: 'num' }, when(x.lastMerge),
        { text: x.rows, cls: 'num' }, { text: x.queued, cls: 'num' }, agent, { text: x.deadLetters, cls: 'num' },
        { text: x.lastError, cls: x.lastError ? 'error' : '' },
      ], { 'data-site': x.site, 'data-pipeline': x.pipeline, 'data-state': x.state });
    }), 'No sites registered yet (syncctl sites add).');
  }

  function replay(button, d) {
    button.disabled = true;
    post('/api/dead-letters/replay', { messageId: d.messageId }).then(function (r) {
      if (r.replayed.length) notice('Replayed ' + d.messageId + ' (' + d.type + ', site ' + dash(d.site) + ').', false);
      else notice('Not replayed: ' + r.refused.map(function (x) { return x.why; }).join('; '), true);
    }, function (err) {
      notice('Replay failed: ' + err.message, true);
    }).then(function () { activityAt = 0; return refresh(); });
  }

  // Which folded lines the operator opened or closed, kept across refreshes.
  var opened = {};
  function folded(key, summaryText, openByDefault, content) {
    var d = el('details');
    d.open = key in opened ? opened[key] : openByDefault;
    d.appendChild(el('summary', summaryText));
    if (content) d.appendChild(content);
    d.addEventListener('toggle', function () { opened[key] = d.open; });
    return d;
  }
  function spanRow(cls, attrs, child, cols) {
    var tr = row([], attrs);
    tr.className = cls;
    var td = el('td');
    td.colSpan = cols;
    td.appendChild(child);
    tr.appendChild(td);
    return tr;
  }
  function innerTable(rows, headings) {
    var t = el('table', null, 'inner');
    if (headings) {
      var head = t.appendChild(el('thead')).appendChild(el('tr'));
      headings.forEach(function (h) { head.appendChild(el('th', h)); });
    }
    var body = el('tbody');
    rows.forEach(function (r) { body.appendChild(r); });
    t.appendChild(body);
    return t;
  }
  function plural(n, one, many) { return n + ' ' + (n === 1 ? one : many); }

  var LETTER_HEADINGS = ['Queue', 'Message id', 'Type', 'Reason', 'Trust', 'Error', 'Age', 'Replays', ''];
  // A group's letters are listed open when there are this few.
  var LETTERS_OPEN_MAX = 3;

  function replayGroup(button, g) {
    button.disabled = true;
    post('/api/dead-letters/replay-group', { site: g.site, reason: g.reason }).then(function (r) {
      var why = {};
      r.refused.forEach(function (x) { why[x.why] = (why[x.why] || 0) + 1; });
      var kept = Object.keys(why).map(function (w) { return why[w] + ' ' + w; });
      notice('Site ' + g.site + ', ' + g.reason + ': replayed ' + r.replayed.length + ', kept ' + r.refused.length +
        (kept.length ? ' (' + kept.join('; ') + ')' : '') + '.', r.replayed.length === 0);
    }, function (err) {
      notice('Replay failed: ' + err.message, true);
    }).then(function () { activityAt = 0; return refresh(); });
  }

  function letterRow(d) {
    var action = el('span');
    if (operator() && d.trust !== 'unverified') {
      var b = el('button', 'Replay');
      b.type = 'button';
      b.title = 'Publish it again where it came from';
      b.addEventListener('click', function () { replay(b, d); });
      action = b;
    }
    return row([
      { text: d.queue, cls: 'mono' }, { text: d.messageId, cls: 'mono' }, d.type, badge(d.reason), badge(d.trust),
      { text: d.error, cls: d.error ? 'error' : '' }, { text: d.age, cls: 'num' }, { text: d.replays, cls: 'num' }, action,
    ], { 'data-message-id': d.messageId });
  }

  function renderDeadLetters(r) {
    var cols = $('dead-letters').tHead.rows[0].cells.length;
    var rows = [];
    r.groups.forEach(function (g) {
      var key = 'dead-letters ' + JSON.stringify([g.site, g.reason]);
      var trust = el('span');
      if (g.verified) trust.appendChild(badge('ok', g.verified + ' verified'));
      if (g.unverified) trust.appendChild(badge('other', g.unverified + ' unverified'));
      var action = el('span');
      if (operator() && g.site !== null && g.verified > 0) {
        var b = el('button', 'Replay group');
        b.type = 'button';
        b.title = 'Replay the ' + plural(g.verified, 'verified dead letter', 'verified dead letters') + ' of this group' +
          (g.unverified ? '; the ' + g.unverified + ' unverified stay' : '');
        b.addEventListener('click', function () { replayGroup(b, g); });
        action = b;
      }
      var attrs = { 'data-group-site': g.site === null ? '' : g.site, 'data-group-reason': g.reason, 'data-count': g.count };
      var head = row([
        { text: g.site === null ? 'unknown' : g.site, cls: 'num' }, badge(g.reason), { text: g.count, cls: 'num count' }, trust,
        g.types.join(', '), { text: g.oldest, cls: 'num', title: 'age of the oldest' }, { text: g.newest, cls: 'num', title: 'age of the newest' }, action,
      ], attrs);
      head.className = 'group';
      rows.push(head);
      var shown = g.letters.length < g.count ? 'the newest ' + g.letters.length + ' of ' + g.count + ' dead letters' : plural(g.count, 'dead letter', 'dead letters');
      rows.push(spanRow('letters', attrs, folded(key, shown, g.count <= LETTERS_OPEN_MAX, innerTable(g.letters.map(letterRow), LETTER_HEADINGS)), cols));
    });
    fill('dead-letters', rows, r.failed.length ? 'Could not read ' + r.failed.join(', ') : 'No dead letters.');
  }

  function sessionRow(s) {
    return row([
      { text: short(s.sessionId), cls: 'mono', title: s.sessionId }, { text: s.site, cls: 'num' },
      { text: s.version, cls: 'num' }, badge(s.status), when(s.siteStartedAt), when(s.siteFinishedAt),
      { text: s.expectedBatches, cls: 'num' }, { text: s.expectedHeaders, cls: 'num' }, when(s.ackedAt),
    ], { 'data-session': s.sessionId });
  }

  function renderSessions(o) {
    var cols = $('sessions').tHead.rows[0].cells.length;
    var rows = [];
    o.empty.forEach(function (f) {
      var text = plural(f.count, 'empty session', 'empty sessions') + ' of site ' + f.site + ', last at ' + when(f.lastAt) +
        (f.newest.length < f.count ? ' (the newest ' + f.newest.length + ' listed)' : '');
      // The folded sessions are rows of this table (so their columns line up), shown while the line is open.
      var listed = f.newest.map(sessionRow);
      var d = folded('sessions ' + f.site, text, false, null);
      var show = function () { listed.forEach(function (r) { r.hidden = !d.open; }); };
      d.addEventListener('toggle', show);
      show();
      rows.push(spanRow('fold', { 'data-empty-site': f.site, 'data-count': f.count }, d, cols));
      listed.forEach(function (r) { r.className = 'folded'; rows.push(r); });
    });
    fill('sessions', rows.concat(o.sessions.map(sessionRow)), 'No sessions yet.');
  }

  // The charts cover a day: read them once a minute, and at once after a replay.
  var ACTIVITY_MS = 60000;
  var activityAt = 0;
  function renderActivity(r) {
    var box = $('activity');
    box.replaceChildren();
    if (r.sites.length === 0) box.appendChild(el('p', 'No sites registered yet.', 'note'));
    r.sites.forEach(function (a) {
      var fig = el('figure', null, 'activity');
      fig.setAttribute('data-site', a.site);
      var cap = el('figcaption', 'Site ' + a.site);
      var rows = a.sessions.reduce(function (n, x) { return n + x.rows; }, 0);
      cap.appendChild(el('span', plural(a.sessions.length, 'session', 'sessions') + ', ' + plural(rows, 'row', 'rows')));
      fig.appendChild(cap);
      // Parsed as XML (never HTML): no script runs, and the server escaped every text in it.
      var doc = new DOMParser().parseFromString(a.svg, 'image/svg+xml');
      if (doc.getElementsByTagName('parsererror').length === 0) fig.appendChild(document.importNode(doc.documentElement, true));
      else fig.appendChild(el('p', 'chart unreadable', 'note'));
      box.appendChild(fig);
    });
  }
  function activity() {
    if (Date.now() - activityAt < ACTIVITY_MS) return Promise.resolve();
    return api('/api/activity').then(function (r) { activityAt = Date.now(); renderActivity(r); });
  }

  function renderTransfers(rows) {
    fill('transfers', rows.slice().reverse().map(function (t) {
      return row([
        { text: short(t.transfer_id), cls: 'mono', title: t.transfer_id }, { text: t.guid, cls: 'mono' },
        t.from_site === null ? 'central' : t.from_site, t.to_site === null ? 'central' : t.to_site,
        t.procedure_code + ' v' + t.procedure_version, badge(t.state), t.reason, t.requested_by, when(t.updated_at),
      ], { 'data-transfer': t.transfer_id });
    }), 'No transfers yet.');
  }

  function refresh() {
    clearTimeout(timer);
    return Promise.all([
      api('/api/status').then(renderSites),
      api('/api/dead-letters/groups').then(renderDeadLetters),
      api('/api/sessions/overview?limit=20').then(renderSessions),
      activity(),
      api('/api/transfers?limit=50').then(renderTransfers),
    ]).then(function () {
      $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      $('updated').className = '';
    }, function (err) {
      $('updated').textContent = 'refresh failed: ' + err.message;
      $('updated').className = 'failed';
    }).then(function () {
      timer = setTimeout(refresh, REFRESH_MS);
    });
  }

  function start() {
    $('move').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var f = ev.target;
      post('/api/transfers', { guid: f.guid.value.trim(), to: Number(f.to.value) }).then(function () {
        notice('Transfer of ' + f.guid.value.trim() + ' to site ' + f.to.value + ' requested.', false);
        f.reset();
      }, function (err) {
        notice('Transfer refused: ' + err.message, true);
      }).then(refresh);
    });
    api('/api/me').then(function (m) {
      me = m;
      $('who').textContent = m.name + ' (' + m.role + ')';
      $('move').hidden = m.role !== 'operator';
    }, function (err) {
      notice('Cannot read who you are: ' + err.message, true);
    }).then(refresh);
  }

  document.addEventListener('DOMContentLoaded', start);
})();
`;
