/**
 * The dashboard page, served as is by dashboard.ts: plain HTML, CSS and JS with no external
 * resource (no CDN, no build step). It is embedded as a string so `tsc` carries it into dist/.
 * It loads a snapshot from GET /events (Server-Sent Events), then applies tracker events as they
 * come and each periodic snapshot. Every value from the tracker is inserted as text, never as HTML.
 * (The script avoids backticks and dollar-brace so this file can hold it in a template literal.)
 */
export const DASHBOARD_PAGE = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>udptorrent tracker</title>
<style>
  :root { --bg: #f5f6f8; --card: #fff; --ink: #1d2330; --muted: #6b7385; --line: #e3e6ec; --accent: #2f6fde;
          --ok: #1f9d55; --warn: #c77700; --bad: #c0392b; --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
  header { display: flex; flex-wrap: wrap; align-items: center; gap: 12px 24px; padding: 14px 24px; background: #1d2330; color: #fff; }
  header h1 { font-size: 18px; margin: 0; font-weight: 600; }
  header .addr { font-family: var(--mono); color: #b9c2d6; }
  #conn { display: inline-flex; align-items: center; gap: 6px; font-size: 13px; color: #b9c2d6; }
  #conn::before { content: ""; width: 9px; height: 9px; border-radius: 50%; background: var(--warn); }
  #conn[data-state="live"]::before { background: #3ccf7a; }
  #conn[data-state="down"]::before { background: var(--bad); }
  .chips { display: flex; flex-wrap: wrap; gap: 8px; margin-left: auto; }
  .chip { background: #2b3344; border-radius: 6px; padding: 4px 10px; font-size: 13px; }
  .chip b { font-variant-numeric: tabular-nums; }
  main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 16px; padding: 16px 24px 32px; }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; min-width: 0; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: 15px; margin: 0 0 8px; display: flex; align-items: baseline; gap: 8px; }
  h2 small { font-weight: normal; color: var(--muted); font-size: 12px; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { font-size: 12px; color: var(--muted); font-weight: 600; }
  td.num, th.num { text-align: right; }
  td.mono { font-family: var(--mono); font-size: 12px; }
  td.name { white-space: normal; word-break: break-all; }
  tr.gone td { color: var(--muted); }
  .empty { color: var(--muted); font-style: italic; padding: 8px; }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
  .badge.alive { background: #e3f5eb; color: var(--ok); }
  .badge.exited { background: #eceef2; color: #4b5265; }
  .badge.pruned, .badge.gone { background: #fdecea; color: var(--bad); }
  .note { color: var(--muted); font-size: 12px; margin: 8px 0 0; }
  .owner { display: inline-block; margin-right: 6px; }
  .owner i { font-style: normal; color: var(--muted); font-size: 11px; }
  .bar { height: 8px; background: var(--accent); border-radius: 4px; min-width: 2px; }
  #chart svg { width: 100%; height: 170px; display: block; }
  #chart .axis { stroke: var(--line); }
  #chart text { fill: var(--muted); font-size: 11px; }
  #chart rect.b { fill: var(--accent); }
  #timeline { max-height: 330px; overflow-y: auto; }
  #timeline li { display: flex; gap: 10px; padding: 3px 0; border-bottom: 1px solid var(--line); align-items: baseline; }
  #timeline ul { list-style: none; margin: 0; padding: 0; }
  #timeline time { font-family: var(--mono); font-size: 12px; color: var(--muted); }
  .ev { min-width: 52px; text-align: center; }
  .ev.join { background: #e3f5eb; color: var(--ok); } .ev.own { background: #e6eefc; color: var(--accent); }
  .ev.need { background: #f2eafc; color: #7a3fc4; } .ev.update { background: #fff4e0; color: var(--warn); }
  .ev.exit { background: #eceef2; color: #4b5265; } .ev.prune { background: #fdecea; color: var(--bad); }
  @media (max-width: 900px) { main { grid-template-columns: minmax(0, 1fr); } }
</style>
</head>
<body>
<header>
  <h1>udptorrent tracker</h1>
  <span class="addr" id="addr">…</span>
  <span id="conn" data-state="connecting">connecting</span>
  <div class="chips">
    <span class="chip">live nodes <b id="c-nodes">–</b></span>
    <span class="chip">files <b id="c-files">–</b></span>
    <span class="chip">requests <b id="c-requests">–</b></span>
    <span class="chip">errors <b id="c-errors">–</b></span>
    <span class="chip">dropped datagrams <b id="c-dropped">–</b></span>
    <span class="chip">up <b id="c-uptime">–</b></span>
  </div>
</header>
<main>
  <section id="nodes">
    <h2>Nodes <small>alive from the tracker's registry; exited and pruned ones remembered here for 10 minutes</small></h2>
    <table>
      <thead><tr><th>node</th><th>address</th><th>last heartbeat</th><th class="num">files owned</th><th class="num">upload credit</th><th>status</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="ranking">
    <h2>Owner ranking <small>the order NEED offers owners in</small></h2>
    <table>
      <thead><tr><th class="num">#</th><th>node</th><th class="num">upload credit</th><th style="width:40%"></th></tr></thead>
      <tbody></tbody>
    </table>
    <p class="note">A NEED reply lists a file's live owners by upload credit, most first (ties: lower id), at most K of them. Credit is what downloaders report owners delivered.</p>
  </section>
  <section id="files" class="wide">
    <h2>Files</h2>
    <table>
      <thead><tr><th>name</th><th class="num">size</th><th>content hash</th><th>owners, complete (NEED order)</th><th>owners, partial</th><th class="num">recent requests</th></tr></thead>
      <tbody></tbody>
    </table>
    <p class="note"><b>Recent requests</b> counts NEED requests for the name in the last minute. The tracker does not see downloads themselves, so this is not a count of downloads in progress.
      <b>Partial owners</b> are nodes still downloading the file: they serve the pieces they have already verified. <span id="unknown-needs"></span></p>
  </section>
  <section id="throughput">
    <h2>Swarm throughput <small id="tp-summary"></small></h2>
    <div id="chart"></div>
    <p class="note">Bytes credited to owners per <span id="tp-bucket">5</span>-second interval over the last minutes: the bytes downloaders report as delivered (UPDATE). Nodes report when a download finishes, so a download shows up as one bar at its end, not as a live rate.</p>
  </section>
  <section id="timeline">
    <h2>Timeline <small>newest first</small></h2>
    <ul></ul>
  </section>
</main>
<script>
'use strict'
var snap = null
var clockOffset = 0
var MAX_TIMELINE = 200

function $ (sel) { return document.querySelector(sel) }
function el (tag, props, children) {
  var e = document.createElement(tag)
  if (props) for (var k in props) {
    if (k === 'text') e.textContent = props[k]
    else if (k === 'cls') e.className = props[k]
    else e.setAttribute(k, props[k])
  }
  if (children) children.forEach(function (c) { if (c != null) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c) })
  return e
}
function serverNow () { return Date.now() + clockOffset }
function bytes (n) {
  var units = ['B', 'kB', 'MB', 'GB', 'TB']
  var i = 0
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++ }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + units[i]
}
function ago (at) {
  var s = Math.max(0, (serverNow() - at) / 1000)
  if (s < 60) return s.toFixed(1) + ' s ago'
  if (s < 3600) return Math.floor(s / 60) + ' min ' + Math.floor(s % 60) + ' s ago'
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min ago'
}
function duration (ms) {
  var s = Math.floor(ms / 1000)
  if (s < 60) return s + ' s'
  if (s < 3600) return Math.floor(s / 60) + ' min'
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min'
}
function clock (at) { return new Date(at).toLocaleTimeString([], { hour12: false }) }
function sum (record) { var t = 0; for (var k in record) t += record[k] || 0; return t }
function fill (tbody, rows, cols, emptyText) {
  tbody.replaceChildren()
  if (rows.length === 0) tbody.appendChild(el('tr', null, [el('td', { cls: 'empty', colspan: String(cols), text: emptyText })]))
  else rows.forEach(function (r) { tbody.appendChild(r) })
}

function renderHeader () {
  $('#addr').textContent = snap.tracker.host + ':' + snap.tracker.port + ' (UDP)'
  var st = snap.stats
  $('#c-nodes').textContent = String(st.liveNodes)
  $('#c-files').textContent = String(st.files)
  $('#c-requests').textContent = String(sum(st.requests))
  $('#c-errors').textContent = String(sum(st.errors))
  $('#c-dropped').textContent = String(st.endpoint.malformed + st.endpoint.unsolicited)
  $('#c-uptime').textContent = duration(serverNow() - snap.startedAt)
}

function renderNodes () {
  var rows = snap.nodes.map(function (n) {
    var gone = n.status !== 'alive'
    var statusText = gone ? n.status + ' ' + ago(n.goneAt) : 'alive'
    return el('tr', { 'data-node-id': String(n.id), 'data-status': n.status, cls: gone ? 'gone' : '' }, [
      el('td', { text: 'node ' + n.id }),
      el('td', { cls: 'mono', text: n.host + ':' + n.port }),
      el('td', { text: ago(n.lastSeen) }),
      el('td', { cls: 'num', text: gone ? '–' : String(n.files) }),
      el('td', { cls: 'num', text: bytes(n.credit) }),
      el('td', null, [el('span', { cls: 'badge ' + n.status, text: statusText })])
    ])
  })
  fill($('#nodes tbody'), rows, 6, 'no node has joined yet')
}

function renderRanking () {
  var top = snap.ranking.length > 0 ? Math.max(1, snap.ranking[0].credit) : 1
  var rows = snap.ranking.map(function (r, i) {
    var bar = el('div', { cls: 'bar' })
    bar.style.width = (100 * r.credit / top).toFixed(1) + '%'
    return el('tr', { 'data-node-id': String(r.id) }, [
      el('td', { cls: 'num', text: String(i + 1) }),
      el('td', { text: 'node ' + r.id }),
      el('td', { cls: 'num', text: bytes(r.credit) }),
      el('td', null, [bar])
    ])
  })
  fill($('#ranking tbody'), rows, 4, 'no live node')
}

function renderFiles () {
  var rows = snap.files.map(function (f) {
    var owners = el('td', null, f.ownersComplete.map(function (id, i) {
      return el('span', { cls: 'owner' }, [el('i', { text: '#' + (i + 1) + ' ' }), 'node ' + id])
    }))
    return el('tr', { 'data-file': f.name }, [
      el('td', { cls: 'name', text: f.name }),
      el('td', { cls: 'num', text: bytes(f.size) }),
      el('td', { cls: 'mono', title: f.contentHash, text: f.contentHash.slice(0, 16) + '…' }),
      owners,
      el('td', { text: f.ownersPartial.length === 0 ? '–' : f.ownersPartial.map(function (id) { return 'node ' + id }).join(', ') }),
      el('td', { cls: 'num', 'data-recent-requests': String(f.recentRequests), text: String(f.recentRequests) })
    ])
  })
  fill($('#files tbody'), rows, 6, 'no file is shared')
  $('#unknown-needs').textContent = snap.recentRequestsUnknown > 0
    ? snap.recentRequestsUnknown + ' request(s) in the last minute named files nobody shares.' : ''
}

var SVG = 'http://www.w3.org/2000/svg'
function svg (tag, attrs, text) {
  var e = document.createElementNS(SVG, tag)
  for (var k in attrs) e.setAttribute(k, String(attrs[k]))
  if (text != null) e.textContent = text
  return e
}
function renderChart () {
  var tp = snap.throughput
  var W = 640; var H = 170; var L = 64; var R = 8; var T = 10; var B = 24
  var max = 0; var total = 0
  tp.buckets.forEach(function (b) { max = Math.max(max, b.bytes); total += b.bytes })
  var top = max > 0 ? max : 1
  var root = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img', 'aria-label': 'credited bytes per interval' })
  root.appendChild(svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }))
  root.appendChild(svg('line', { class: 'axis', x1: L, y1: T, x2: W - R, y2: T }))
  root.appendChild(svg('text', { x: L - 6, y: T + 4, 'text-anchor': 'end' }, bytes(max)))
  root.appendChild(svg('text', { x: L - 6, y: H - B + 4, 'text-anchor': 'end' }, '0'))
  var n = tp.buckets.length
  var slot = (W - L - R) / n
  tp.buckets.forEach(function (b, i) {
    if (b.bytes <= 0) return
    var h = Math.max(1, (H - T - B) * b.bytes / top)
    var r = svg('rect', { class: 'b', x: (L + i * slot + 1).toFixed(1), y: (H - B - h).toFixed(1), width: Math.max(1, slot - 2).toFixed(1), height: h.toFixed(1) })
    r.appendChild(svg('title', {}, clock(b.start) + ': ' + bytes(b.bytes)))
    root.appendChild(r)
  })
  var span = n * tp.bucketMs / 60000
  root.appendChild(svg('text', { x: L, y: H - 6 }, '−' + span + ' min'))
  root.appendChild(svg('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, 'now'))
  $('#chart').replaceChildren(root)
  $('#tp-bucket').textContent = String(tp.bucketMs / 1000)
  $('#tp-summary').textContent = bytes(total) + ' credited in the last ' + span + ' min; busiest interval ' + bytes(max) + ' (' + bytes(max / (tp.bucketMs / 1000)) + '/s)'
}

function describe (e) {
  switch (e.type) {
    case 'join': return 'node ' + e.nodeId + ' joined from ' + e.host + ':' + e.port
    case 'own': return 'node ' + e.nodeId + (e.complete === false ? ' started downloading (shares its verified pieces of) ' : ' shares ') + e.file + ' (' + bytes(e.size) + ')'
    case 'need': return 'node ' + e.nodeId + ' asked for ' + e.file + ': ' + e.owners + ' owner(s) offered'
    case 'update': return 'node ' + e.nodeId + ' reported delivery: ' + bytes(e.credited) + ' credited to owners'
    case 'exit': return 'node ' + e.nodeId + ' exited'
    case 'prune': return 'node ' + e.nodeId + ' pruned after missed heartbeats'
    default: return e.type + ' node ' + e.nodeId
  }
}
function renderTimeline () {
  var list = $('#timeline ul')
  list.replaceChildren()
  var events = snap.timeline.slice(-MAX_TIMELINE).reverse()
  if (events.length === 0) list.appendChild(el('li', { cls: 'empty', text: 'nothing has happened yet' }))
  events.forEach(function (e) {
    list.appendChild(el('li', { 'data-type': e.type }, [
      el('time', { text: clock(e.at) }),
      el('span', { cls: 'badge ev ' + e.type, text: e.type }),
      el('span', { text: describe(e) })
    ]))
  })
}

function render () {
  if (snap === null) return
  renderHeader(); renderNodes(); renderRanking(); renderFiles(); renderChart(); renderTimeline()
}

/** A tracker event between snapshots: shown at once; the snapshot that follows corrects the rest. */
function apply (e) {
  if (snap === null) return
  snap.timeline.push(e)
  if (snap.timeline.length > MAX_TIMELINE) snap.timeline.shift()
  var row = null
  snap.nodes.forEach(function (n) { if (n.id === e.nodeId) row = n })
  if (e.type === 'join') {
    snap.nodes = snap.nodes.filter(function (n) { return n.id !== e.nodeId })
    snap.nodes.unshift({ id: e.nodeId, host: e.host, port: e.port, lastSeen: e.at, credit: row ? row.credit : 0, files: 0, status: 'alive' })
  } else if ((e.type === 'exit' || e.type === 'prune') && row !== null) {
    row.status = e.type === 'exit' ? 'exited' : 'pruned'
    row.goneAt = e.at
    snap.ranking = snap.ranking.filter(function (r) { return r.id !== e.nodeId })
  }
  render()
}

function connect () {
  var conn = $('#conn')
  var source = new EventSource('events')
  source.addEventListener('open', function () { conn.dataset.state = 'live'; conn.textContent = 'live' })
  source.addEventListener('error', function () {
    conn.dataset.state = 'down'
    conn.textContent = source.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting…'
  })
  source.addEventListener('snapshot', function (m) {
    snap = JSON.parse(m.data)
    clockOffset = snap.now - Date.now()
    document.body.dataset.snapshotAt = String(snap.now)
    conn.dataset.state = 'live'; conn.textContent = 'live'
    render()
  })
  source.addEventListener('tracker', function (m) { apply(JSON.parse(m.data)) })
}
connect()
// Ages ("3.2 s ago") move between snapshots.
setInterval(function () { if (snap !== null) { renderHeader(); renderNodes() } }, 1000)
</script>
</body>
</html>
`
