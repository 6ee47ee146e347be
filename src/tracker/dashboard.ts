import http from 'node:http'
import { isIPv6 } from 'node:net'
import type { Logger } from 'pino'
import { Counter, Gauge, Histogram, Registry as MetricsRegistry } from 'prom-client'
import { DASHBOARD_PAGE } from './dashboard-page.js'
import type { Tracker, TrackerEvent } from './tracker.js'

/**
 * The tracker's web dashboard: one page (GET /), its data as JSON (GET /stats.json) and live as
 * Server-Sent Events (GET /events), and Prometheus metrics (GET /metrics). It only observes the
 * tracker (its events, registry view and counters); nothing it receives can change tracker state,
 * and no HTTP input can stop the tracker.
 */

export interface DashboardInit {
  host: string
  /** 0 = ephemeral. */
  port: number
  logger: Logger
}

export interface Dashboard {
  url: string
  close: () => Promise<void>
}

/** Nodes the registry has forgotten stay on the page this long, and at most this many of them. */
const GONE_NODE_TTL_MS = 10 * 60_000
const MAX_GONE_NODES = 200
/** Timeline length. */
const MAX_TIMELINE_EVENTS = 200
/** "Recent requests": NEED requests per file over this window (bounded in count too). */
const RECENT_NEED_WINDOW_MS = 60_000
const MAX_RECENT_NEEDS = 10_000
/** Throughput chart: credited bytes per bucket over the last THROUGHPUT_BUCKETS buckets. */
const THROUGHPUT_BUCKET_MS = 5_000
const THROUGHPUT_BUCKETS = 60
/** SSE: full snapshot this often (clients self-heal), soon after any change, and keep-alive comments. */
const SNAPSHOT_INTERVAL_MS = 2_000
const SNAPSHOT_AFTER_CHANGE_MS = 100
const SSE_HEARTBEAT_MS = 15_000
const MAX_SSE_CLIENTS = 64
/** A client that reads slower than this much backlog is dropped (EventSource reconnects). */
const MAX_SSE_BACKLOG_BYTES = 1 << 20
/** Request durations are sub-millisecond on a healthy tracker. */
const LATENCY_BUCKETS_SECONDS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]

type NodeStatus = 'alive' | 'exited' | 'pruned' | 'gone'

interface NodeRow {
  id: number
  host: string
  port: number
  lastSeen: number
  credit: number
  files: number
  status: NodeStatus
  /** When it exited or was pruned. */
  goneAt?: number
}

/** What the page shows and /stats.json returns. */
export interface DashboardSnapshot {
  now: number
  startedAt: number
  tracker: { host: string, port: number }
  /** Alive nodes (from the registry), then recently gone ones (from the dashboard's memory), newest first. */
  nodes: NodeRow[]
  files: Array<{
    name: string
    size: number
    contentHash: string
    /** In the order NEED offers them: most upload credit first, ties by lower id. */
    owners: number[]
    ownersComplete: number[]
    /** The tracker does not know partial owners yet: always empty. */
    ownersPartial: number[]
    /** NEED requests for this name in the last minute (the tracker does not see downloads themselves). */
    recentRequests: number
  }>
  /** Alive nodes by upload credit, most first, ties by lower id: the order NEED ranks owners in. */
  ranking: Array<{ id: number, credit: number, files: number }>
  timeline: TrackerEvent[]
  /** Bytes credited to owners by UPDATE reports (bytes downloaders say were delivered), per bucket, oldest first. */
  throughput: { bucketMs: number, buckets: Array<{ start: number, bytes: number }> }
  /** NEED requests for names nobody shares, in the last minute. */
  recentRequestsUnknown: number
  stats: {
    requests: Partial<Record<string, number>>
    errors: Partial<Record<string, number>>
    pruned: number
    endpoint: Tracker['endpoint']['stats']
    liveNodes: number
    files: number
    dashboardClients: number
  }
}

/** The dashboard's own memory: gone nodes, timeline, recent NEEDs, credited bytes per bucket. */
class DashboardState {
  readonly startedAt = Date.now()
  private readonly known = new Map<number, NodeRow>()
  private readonly timeline: TrackerEvent[] = []
  private readonly needs: Array<{ file: string, at: number }> = []
  private readonly credited = new Map<number, number>()

  constructor (private readonly tracker: Tracker) {}

  record (e: TrackerEvent): void {
    this.timeline.push(e)
    if (this.timeline.length > MAX_TIMELINE_EVENTS) this.timeline.splice(0, this.timeline.length - MAX_TIMELINE_EVENTS)
    switch (e.type) {
      case 'join': {
        const prev = this.known.get(e.nodeId)
        this.known.set(e.nodeId, { id: e.nodeId, host: e.host, port: e.port, lastSeen: e.at, credit: prev?.credit ?? 0, files: 0, status: 'alive' })
        break
      }
      case 'exit':
      case 'prune': {
        const row = this.known.get(e.nodeId)
        if (row !== undefined) {
          row.status = e.type === 'exit' ? 'exited' : 'pruned'
          row.goneAt = e.at
        }
        break
      }
      case 'need':
        this.needs.push({ file: e.file, at: e.at })
        if (this.needs.length > MAX_RECENT_NEEDS) this.needs.splice(0, this.needs.length - MAX_RECENT_NEEDS)
        break
      case 'update': {
        if (e.credited <= 0) break
        const bucket = Math.floor(e.at / THROUGHPUT_BUCKET_MS) * THROUGHPUT_BUCKET_MS
        this.credited.set(bucket, (this.credited.get(bucket) ?? 0) + e.credited)
        break
      }
      case 'own':
        break
    }
  }

  snapshot (dashboardClients: number): DashboardSnapshot {
    const now = Date.now()
    const view = this.tracker.registry.view()
    const alive = new Set<number>()
    for (const n of view.nodes) {
      alive.add(n.id)
      this.known.set(n.id, { ...n, status: 'alive' })
    }
    // Remembered as alive but no longer in the registry, with no event seen: say "gone", not why.
    for (const row of this.known.values()) {
      if (row.status === 'alive' && !alive.has(row.id)) {
        row.status = 'gone'
        row.goneAt = now
      }
    }
    this.forget(now)

    const needCutoff = now - RECENT_NEED_WINDOW_MS
    let drop = 0
    while (drop < this.needs.length && (this.needs[drop] as { at: number }).at < needCutoff) drop++
    this.needs.splice(0, drop)
    const needsByName = new Map<string, number>()
    for (const { file } of this.needs) needsByName.set(file, (needsByName.get(file) ?? 0) + 1)
    const sharedNames = new Set(view.files.map((f) => f.name))
    let recentRequestsUnknown = 0
    for (const [name, count] of needsByName) if (!sharedNames.has(name)) recentRequestsUnknown += count

    const current = Math.floor(now / THROUGHPUT_BUCKET_MS) * THROUGHPUT_BUCKET_MS
    const first = current - (THROUGHPUT_BUCKETS - 1) * THROUGHPUT_BUCKET_MS
    for (const start of this.credited.keys()) if (start < first) this.credited.delete(start)
    const buckets = Array.from({ length: THROUGHPUT_BUCKETS }, (_, i) => {
      const start = first + i * THROUGHPUT_BUCKET_MS
      return { start, bytes: this.credited.get(start) ?? 0 }
    })

    const rows = [...this.known.values()]
    const nodes = [
      ...rows.filter((r) => r.status === 'alive').sort((a, b) => a.id - b.id),
      ...rows.filter((r) => r.status !== 'alive').sort((a, b) => (b.goneAt ?? 0) - (a.goneAt ?? 0))
    ].map((r) => ({ ...r }))
    const ranking = view.nodes
      .map((n) => ({ id: n.id, credit: n.credit, files: n.files }))
      .sort((a, b) => b.credit - a.credit || a.id - b.id)

    const { address } = this.tracker
    return {
      now,
      startedAt: this.startedAt,
      tracker: { host: address.host, port: address.port },
      nodes,
      files: view.files.map((f) => ({
        ...f, ownersComplete: f.owners.filter((o) => !f.partial.includes(o)), ownersPartial: f.partial, recentRequests: needsByName.get(f.name) ?? 0
      })),
      ranking,
      timeline: [...this.timeline],
      throughput: { bucketMs: THROUGHPUT_BUCKET_MS, buckets },
      recentRequestsUnknown,
      stats: {
        requests: { ...this.tracker.stats.requests },
        errors: { ...this.tracker.stats.errors },
        pruned: this.tracker.stats.pruned,
        endpoint: structuredClone(this.tracker.endpoint.stats),
        liveNodes: view.nodes.length,
        files: view.files.length,
        dashboardClients
      }
    }
  }

  /** Bounds the memory of gone nodes: at most MAX_GONE_NODES, none older than GONE_NODE_TTL_MS. */
  private forget (now: number): void {
    const gone = [...this.known.values()].filter((r) => r.status !== 'alive').sort((a, b) => (a.goneAt ?? 0) - (b.goneAt ?? 0))
    const excess = gone.length - MAX_GONE_NODES
    gone.forEach((r, i) => {
      if (i < excess || now - (r.goneAt ?? 0) > GONE_NODE_TTL_MS) this.known.delete(r.id)
    })
  }
}

/** Prometheus metrics for one tracker, in a registry of their own (several dashboards can share a process). */
function trackerMetrics (tracker: Tracker): { registry: MetricsRegistry, onRequest: (r: { type: string, ms: number, ok: boolean }) => void, onEvent: (e: TrackerEvent) => void } {
  const registry = new MetricsRegistry()
  const registers = [registry]
  /** A counter mirrored from a record of totals the tracker keeps: reset and refilled at scrape time. */
  const mirrored = (name: string, help: string, label: string, read: () => Partial<Record<string, number>>): Counter<string> =>
    new Counter({
      name, help, labelNames: [label], registers,
      collect () {
        this.reset()
        for (const [key, value] of Object.entries(read())) this.inc({ [label]: key }, value ?? 0)
      }
    })
  mirrored('udptorrent_tracker_requests_total', 'Tracker requests received, by message type', 'type', () => tracker.stats.requests)
  mirrored('udptorrent_tracker_request_errors_total', 'Tracker requests refused with an error reply, by error code', 'code', () => tracker.stats.errors)
  mirrored('udptorrent_tracker_refused_total', 'Tracker requests refused before the registry: rate limit, bad connection id, bad signature, replay, foreign key', 'cause', () => tracker.stats.refused)
  mirrored('udptorrent_tracker_datagrams_dropped_total', 'Datagrams dropped before any handler, by cause (malformed causes, and unsolicited replies)', 'cause',
    () => ({ ...tracker.endpoint.stats.malformedByCause, unsolicited: tracker.endpoint.stats.unsolicited }))
  const endpointCounter = (name: string, help: string, read: () => number): Counter =>
    new Counter({ name, help, registers, collect () { this.reset(); this.inc(read()) } })
  endpointCounter('udptorrent_tracker_datagrams_received_total', 'UDP datagrams received by the tracker', () => tracker.endpoint.stats.datagramsIn)
  endpointCounter('udptorrent_tracker_datagrams_sent_total', 'UDP datagrams sent by the tracker', () => tracker.endpoint.stats.datagramsOut)
  endpointCounter('udptorrent_tracker_malformed_datagrams_total', 'Datagrams that did not parse (all causes)', () => tracker.endpoint.stats.malformed)
  endpointCounter('udptorrent_tracker_send_errors_total', 'Datagrams the socket failed to send', () => tracker.endpoint.stats.sendErrors)
  endpointCounter('udptorrent_tracker_pruned_nodes_total', 'Nodes forgotten after missed heartbeats', () => tracker.stats.pruned)
  new Gauge({ name: 'udptorrent_tracker_live_nodes', help: 'Nodes the tracker currently knows as alive', registers, collect () { this.set(tracker.registry.nodeCount) } })
  new Gauge({ name: 'udptorrent_tracker_files', help: 'Files (content and name) with at least one live owner', registers, collect () { this.set(tracker.registry.fileCount) } })
  const events = new Counter({ name: 'udptorrent_tracker_events_total', help: 'Tracker state changes seen by the dashboard, by type', labelNames: ['type'], registers })
  const credited = new Counter({ name: 'udptorrent_tracker_credited_bytes_total', help: 'Upload credit granted from UPDATE reports: bytes downloaders report delivered by owners', registers })
  const latency = new Histogram({
    name: 'udptorrent_tracker_request_duration_seconds', help: 'Time to handle one tracker request, by message type and outcome', labelNames: ['type', 'outcome'], buckets: LATENCY_BUCKETS_SECONDS, registers
  })
  return {
    registry,
    onRequest: (r) => { latency.observe({ type: r.type, outcome: r.ok ? 'ok' : 'error' }, r.ms / 1000) },
    onEvent: (e) => {
      events.inc({ type: e.type })
      if (e.type === 'update' && e.credited > 0) credited.inc(e.credited)
    }
  }
}

const SECURITY_HEADERS = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' }
const PAGE_HEADERS = {
  ...SECURITY_HEADERS,
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'x-frame-options': 'DENY',
  // The page is self-contained: no external script, style, font or image, and data only from here.
  'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

export async function startDashboard (tracker: Tracker, init: DashboardInit): Promise<Dashboard> {
  const { logger } = init
  const state = new DashboardState(tracker)
  const metrics = trackerMetrics(tracker)
  const clients = new Set<http.ServerResponse>()

  const send = (res: http.ServerResponse, chunk: string): void => {
    if (res.writableLength > MAX_SSE_BACKLOG_BYTES) {
      logger.warn({ backlog: res.writableLength }, 'dashboard: dropping a live client that does not keep up')
      res.destroy()
      return
    }
    res.write(chunk)
  }
  const broadcast = (chunk: string): void => { for (const res of clients) send(res, chunk) }
  const snapshotMessage = (): string => `event: snapshot\ndata: ${JSON.stringify(state.snapshot(clients.size))}\n\n`

  let snapshotSoon: NodeJS.Timeout | undefined
  const broadcastSnapshot = (): void => {
    if (snapshotSoon !== undefined) clearTimeout(snapshotSoon)
    snapshotSoon = undefined
    if (clients.size > 0) broadcast(snapshotMessage())
  }
  const onEvent = (e: TrackerEvent): void => {
    try {
      state.record(e)
      metrics.onEvent(e)
      if (clients.size === 0) return
      broadcast(`event: tracker\ndata: ${JSON.stringify(e)}\n\n`)
      snapshotSoon ??= setTimeout(broadcastSnapshot, SNAPSHOT_AFTER_CHANGE_MS)
    } catch (err) {
      logger.error({ err }, 'dashboard: could not record a tracker event')
    }
  }
  const onRequest = (r: { type: string, ms: number, ok: boolean }): void => {
    try {
      metrics.onRequest(r)
    } catch (err) {
      logger.error({ err }, 'dashboard: could not record a request')
    }
  }
  tracker.events.on('event', onEvent)
  tracker.events.on('request', onRequest)
  const periodic = setInterval(broadcastSnapshot, SNAPSHOT_INTERVAL_MS)
  const heartbeat = setInterval(() => broadcast(': keep-alive\n\n'), SSE_HEARTBEAT_MS)

  const reply = (res: http.ServerResponse, status: number, headers: http.OutgoingHttpHeaders, body: string, head: boolean): void => {
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-length': Buffer.byteLength(body), ...headers })
    res.end(head ? undefined : body)
  }
  const text = (res: http.ServerResponse, status: number, body: string, extra: http.OutgoingHttpHeaders = {}): void =>
    reply(res, status, { 'content-type': 'text/plain; charset=utf-8', ...extra }, body + '\n', false)

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const method = req.method ?? ''
    let pathname: string
    try {
      pathname = new URL(req.url ?? '/', 'http://dashboard').pathname
    } catch {
      text(res, 400, 'bad request')
      return
    }
    const routes = ['/', '/index.html', '/stats.json', '/metrics', '/events']
    if (!routes.includes(pathname)) {
      text(res, 404, 'not found')
      return
    }
    if (method !== 'GET' && method !== 'HEAD') {
      text(res, 405, 'method not allowed', { allow: 'GET, HEAD' })
      return
    }
    const head = method === 'HEAD'
    switch (pathname) {
      case '/':
      case '/index.html':
        reply(res, 200, PAGE_HEADERS, DASHBOARD_PAGE, head)
        return
      case '/stats.json':
        reply(res, 200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }, JSON.stringify(state.snapshot(clients.size)), head)
        return
      case '/metrics': {
        const body = await metrics.registry.metrics()
        reply(res, 200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' }, body, head)
        return
      }
      case '/events': {
        if (head) {
          reply(res, 200, { 'content-type': 'text/event-stream' }, '', true)
          return
        }
        if (clients.size >= MAX_SSE_CLIENTS) {
          text(res, 503, 'too many live clients', { 'retry-after': '5' })
          return
        }
        res.writeHead(200, {
          ...SECURITY_HEADERS,
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-store',
          connection: 'keep-alive',
          'x-accel-buffering': 'no'
        })
        req.socket.setNoDelay(true)
        clients.add(res)
        res.on('close', () => clients.delete(res))
        res.on('error', () => clients.delete(res))
        send(res, `retry: 1000\n\n${snapshotMessage()}`)
      }
    }
  }

  const server = http.createServer({ requestTimeout: 10_000, headersTimeout: 5_000, maxHeaderSize: 16 * 1024 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.error({ err, url: req.url }, 'dashboard: request failed')
      if (!res.headersSent) text(res, 500, 'internal error')
      else res.destroy()
    })
  })
  // Malformed HTTP gets a 400 (or the socket closed); never an exception.
  server.on('clientError', (_err, socket) => {
    if (socket.writable && !socket.destroyed) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
    else socket.destroy()
  })

  const stopTimers = (): void => {
    clearInterval(periodic)
    clearInterval(heartbeat)
    if (snapshotSoon !== undefined) clearTimeout(snapshotSoon)
    tracker.events.off('event', onEvent)
    tracker.events.off('request', onRequest)
  }
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host: init.host, port: init.port }, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (err) {
    stopTimers()
    throw err
  }
  server.on('error', (err) => logger.error({ err }, 'dashboard: server error'))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : init.port
  const host = isIPv6(init.host) ? `[${init.host}]` : init.host
  const url = `http://${host}:${port}/`
  logger.info({ url }, 'dashboard listening')

  let closed: Promise<void> | undefined
  return {
    url,
    close: async () => {
      closed ??= (async () => {
        stopTimers()
        for (const res of clients) res.end()
        clients.clear()
        await new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        })
      })()
      await closed
    }
  }
}
