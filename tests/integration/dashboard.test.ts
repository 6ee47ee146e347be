import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises'
import dgram from 'node:dgram'
import { existsSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { startDashboard } from '../../src/tracker/dashboard.js'
import type { DashboardSnapshot } from '../../src/tracker/dashboard.js'
import { Tracker } from '../../src/tracker/tracker.js'
import { cleanup, makeHome, makeRandomFile, nodeFile, startNode, startTracker, waitFor, type TrackerProc } from '../helpers/processes.js'

const CHROMIUM = '/usr/bin/chromium'
const SCREENSHOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../reports/dashboard.png')

const homes: string[] = []
const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => {})
  await cleanup(...homes.splice(0))
})

async function home (): Promise<string> {
  const h = await makeHome()
  homes.push(h)
  return h
}

/** A tracker process with the dashboard on an ephemeral port, and the dashboard's URL from its stdout. */
async function trackerWithDashboard (h: string): Promise<{ tracker: TrackerProc, url: string }> {
  const tracker = await startTracker(h, ['--heartbeat', '1', '--http', '0'])
  const m = await tracker.waitForLine(/^dashboard on (http:\/\/127\.0\.0\.1:\d+\/)$/, 10_000)
  return { tracker, url: m[1] as string }
}

async function stats (url: string): Promise<DashboardSnapshot> {
  const res = await fetch(new URL('stats.json', url))
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^application\/json/)
  return await res.json() as DashboardSnapshot
}

async function metricsText (url: string): Promise<string> {
  const res = await fetch(new URL('metrics', url))
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
  return await res.text()
}

/** One sample's value from Prometheus text, e.g. metric(text, 'x_total', { type: 'Own' }); undefined when absent. */
function metric (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]))
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3])
  }
  return undefined
}

/** Sends raw bytes over TCP and returns whatever comes back before the server closes the connection. */
async function rawHttp (url: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(url)
  return await new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname)
    let answer = ''
    socket.on('data', (d) => { answer += d.toString() })
    socket.on('error', reject)
    socket.on('close', () => resolve(answer))
    socket.setTimeout(5_000, () => { socket.destroy(); reject(new Error('no answer within 5 s')) })
    socket.end(bytes)
  })
}

const METRIC_NAMES = [
  'udptorrent_tracker_requests_total',
  'udptorrent_tracker_request_errors_total',
  'udptorrent_tracker_datagrams_dropped_total',
  'udptorrent_tracker_datagrams_received_total',
  'udptorrent_tracker_datagrams_sent_total',
  'udptorrent_tracker_malformed_datagrams_total',
  'udptorrent_tracker_send_errors_total',
  'udptorrent_tracker_pruned_nodes_total',
  'udptorrent_tracker_live_nodes',
  'udptorrent_tracker_files',
  'udptorrent_tracker_events_total',
  'udptorrent_tracker_credited_bytes_total',
  'udptorrent_tracker_request_duration_seconds'
]

describe('tracker dashboard: JSON, metrics and HTTP hygiene', () => {
  it('serves /stats.json and /metrics whose counters follow real requests, drops and a prune', async () => {
    const h = await home()
    await makeRandomFile(h, 1, 'a.bin', 300_000)
    const { tracker, url } = await trackerWithDashboard(h)

    const before = await metricsText(url)
    for (const name of METRIC_NAMES) expect(before).toContain(`# TYPE ${name} `)
    expect(metric(before, 'udptorrent_tracker_live_nodes')).toBe(0)
    expect(metric(before, 'udptorrent_tracker_requests_total', { type: 'Register' })).toBeUndefined()
    const empty = await stats(url)
    expect(empty.nodes).toEqual([])
    expect(empty.tracker.port).toBe(tracker.port)

    const n1 = await startNode(h, 1, tracker.address, ['--send', 'a.bin'])
    await n1.waitForLine(/^sharing a\.bin/)
    const s = await waitFor('node 1 and a.bin in /stats.json', async () => {
      const st = await stats(url)
      return st.files.length === 1 && st.nodes.length === 1 ? st : undefined
    }, 10_000)
    expect(s.nodes[0]).toMatchObject({ id: 1, host: '127.0.0.1', port: n1.port, status: 'alive', files: 1, credit: 0 })
    expect(s.files[0]).toMatchObject({ name: 'a.bin', size: 300_000, owners: [1], ownersComplete: [1], ownersPartial: [], recentRequests: 0 })
    expect(s.files[0]?.contentHash).toMatch(/^[0-9a-f]{64}$/)
    expect(s.ranking).toEqual([{ id: 1, credit: 0, files: 1 }])
    expect(s.timeline.map((e) => e.type)).toEqual(expect.arrayContaining(['join', 'own']))
    expect(s.throughput.buckets).toHaveLength(60)

    const after = await metricsText(url)
    expect(metric(after, 'udptorrent_tracker_requests_total', { type: 'Register' })).toBeGreaterThanOrEqual(1)
    // The counter comes from the tracker's totals, the histogram from its per-request events: they agree.
    const owns = metric(after, 'udptorrent_tracker_requests_total', { type: 'Own' }) ?? 0
    expect(owns).toBeGreaterThanOrEqual(1)
    expect(metric(after, 'udptorrent_tracker_request_duration_seconds_count', { type: 'Own', outcome: 'ok' })).toBe(owns)
    expect(metric(after, 'udptorrent_tracker_events_total', { type: 'join' })).toBe(1)
    expect(metric(after, 'udptorrent_tracker_live_nodes')).toBe(1)
    expect(metric(after, 'udptorrent_tracker_files')).toBe(1)
    expect(metric(after, 'udptorrent_tracker_datagrams_received_total')).toBeGreaterThan(metric(before, 'udptorrent_tracker_datagrams_received_total') ?? 0)

    // Garbage datagrams are counted as drops by cause, in both views.
    const sock = dgram.createSocket('udp4')
    closers.push(async () => { await new Promise<void>((resolve) => sock.close(() => resolve())) })
    for (let i = 0; i < 5; i++) sock.send(Buffer.from('not a udptorrent datagram'), tracker.port, '127.0.0.1')
    const dropped = await waitFor('5 bad-magic drops in /metrics', async () => {
      const text = await metricsText(url)
      return metric(text, 'udptorrent_tracker_datagrams_dropped_total', { cause: 'bad-magic' }) === 5 ? text : undefined
    }, 10_000)
    expect(metric(dropped, 'udptorrent_tracker_malformed_datagrams_total')).toBe(5)
    expect((await stats(url)).stats.endpoint.malformedByCause).toMatchObject({ 'bad-magic': 5 })

    // A node that goes silent is pruned by the registry but stays on the dashboard as "pruned".
    n1.kill('SIGKILL')
    const pruned = await waitFor('node 1 shown as pruned', async () => {
      const st = await stats(url)
      return st.nodes.find((n) => n.id === 1 && n.status === 'pruned') !== undefined ? st : undefined
    }, 15_000)
    expect(pruned.stats.liveNodes).toBe(0)
    expect(pruned.files).toEqual([])
    expect(pruned.ranking).toEqual([])
    expect(pruned.timeline.at(-1)).toMatchObject({ type: 'prune', nodeId: 1 })
    const end = await metricsText(url)
    expect(metric(end, 'udptorrent_tracker_pruned_nodes_total')).toBe(1)
    expect(metric(end, 'udptorrent_tracker_live_nodes')).toBe(0)
    expect(metric(end, 'udptorrent_tracker_events_total', { type: 'prune' })).toBe(1)
    expect(tracker.exitCode).toBeUndefined()
  })

  it('answers bad HTTP with 400/404/405, streams a snapshot over SSE and forgets closed clients', async () => {
    const h = await home()
    const { tracker, url } = await trackerWithDashboard(h)

    expect((await fetch(new URL('nope', url))).status).toBe(404)
    expect((await fetch(new URL('../../etc/passwd', url))).status).toBe(404)
    const post = await fetch(new URL('stats.json', url), { method: 'POST', body: 'x' })
    expect(post.status).toBe(405)
    expect(post.headers.get('allow')).toBe('GET, HEAD')
    expect((await fetch(new URL('metrics', url), { method: 'DELETE' })).status).toBe(405)
    expect(await rawHttp(url, 'this is not http\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /)
    expect(await rawHttp(url, 'GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /)
    expect(await rawHttp(url, `GET /${'a'.repeat(40_000)} HTTP/1.1\r\nHost: x\r\n\r\n`)).toMatch(/^HTTP\/1\.1 4\d\d /)

    const page = await fetch(url)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'")
    const html = await page.text()
    expect(html).toContain('<title>udptorrent tracker</title>')
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=/) // nothing loaded from elsewhere

    // SSE: a full snapshot first, then the server forgets the client once it goes away.
    const abort = new AbortController()
    const res = await fetch(new URL('events', url), { signal: abort.signal })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    let received = ''
    while (!received.includes('\n\nevent: snapshot\ndata: ') || !received.endsWith('\n\n')) {
      const { value, done } = await reader.read()
      if (done) break
      received += new TextDecoder().decode(value)
    }
    const first = JSON.parse(/event: snapshot\ndata: (.*)\n\n/.exec(received)?.[1] as string) as DashboardSnapshot
    expect(first.stats.dashboardClients).toBe(1)
    abort.abort()
    await reader.cancel().catch(() => {})
    await waitFor('the server to drop the closed SSE client', async () => (await stats(url)).stats.dashboardClients === 0, 5_000)

    expect(tracker.exitCode).toBeUndefined()
    expect((await stats(url)).tracker.port).toBe(tracker.port)
  })

  it('runs several dashboards in one process, each with its own metrics registry, and closes cleanly', async () => {
    const h = await home()
    const logger = pino({ level: 'silent' })
    const tracker = await Tracker.start({ home: h, host: '127.0.0.1', port: 0, logger })
    closers.push(async () => { await tracker.close() })
    const a = await startDashboard(tracker, { host: '127.0.0.1', port: 0, logger })
    closers.push(a.close)
    const b = await startDashboard(tracker, { host: '127.0.0.1', port: 0, logger })
    closers.push(b.close)
    expect(a.url).not.toBe(b.url)
    for (const d of [a, b]) expect(metric(await metricsText(d.url), 'udptorrent_tracker_live_nodes')).toBe(0)
    await a.close()
    await a.close() // twice is harmless
    await expect(fetch(a.url)).rejects.toThrow()
    expect((await stats(b.url)).nodes).toEqual([])
  })
})

describe('tracker dashboard in a real browser', () => {
  const missing = existsSync(CHROMIUM) ? '' : ` — SKIPPED: ${CHROMIUM} is not installed (apt-get install -y chromium)`
  it.skipIf(missing !== '')(`shows joins, a download and an exit live, without a reload${missing}`, async () => {
    const { chromium } = await import('playwright-core')
    const h = await home()
    await makeRandomFile(h, 1, 'movie.mkv', 2_000_000)
    await mkdir(path.dirname(nodeFile(h, 2, 'movie.mkv')), { recursive: true })
    await copyFile(nodeFile(h, 1, 'movie.mkv'), nodeFile(h, 2, 'movie.mkv'))
    await makeRandomFile(h, 2, 'notes.txt', 4_000)
    const { tracker, url } = await trackerWithDashboard(h)
    const seeds = await Promise.all([1, 2].map(async (id) => {
      const n = await startNode(h, id, tracker.address, ['--send', 'movie.mkv', ...(id === 2 ? ['--send', 'notes.txt'] : [])])
      await n.waitForLine(/^sharing movie\.mkv/)
      return n
    }))

    const profile = await mkdtemp(path.join(os.tmpdir(), 'udptorrent-chromium-'))
    closers.push(async () => { await rm(profile, { recursive: true, force: true }) })
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 900 }
    })
    closers.push(async () => { await context.close() })
    const page = context.pages()[0] ?? await context.newPage()
    const pageErrors: string[] = []
    page.on('pageerror', (err) => pageErrors.push(err.message))
    page.on('console', (msg) => { if (msg.type() === 'error') pageErrors.push(msg.text()) })
    await page.goto(url)
    await page.locator('#conn[data-state="live"]').waitFor({ timeout: 10_000 })
    await page.evaluate(() => { (window as unknown as { marker: string }).marker = 'same page' })
    for (const id of [1, 2]) await page.locator(`#nodes tr[data-node-id="${id}"][data-status="alive"]`).waitFor({ timeout: 10_000 })
    await expect(page.locator('#nodes tr[data-node-id="3"]').count()).resolves.toBe(0)

    // A node that joins appears, and its download shows as a NEED request, credit and a chart bar.
    const n3 = await startNode(h, 3, tracker.address, ['--download', 'movie.mkv'])
    await page.locator('#nodes tr[data-node-id="3"][data-status="alive"]').waitFor({ timeout: 10_000 })
    await n3.waitForLine(/^download complete: movie\.mkv/, 30_000)
    await page.locator('#files tr[data-file="movie.mkv"] td[data-recent-requests]:not([data-recent-requests="0"])').waitFor({ timeout: 10_000 })
    await page.locator('#chart rect.b').first().waitFor({ timeout: 10_000 })
    await page.locator('#timeline li[data-type="update"]').first().waitFor({ timeout: 10_000 })
    await expect(page.locator('#files tr[data-file="movie.mkv"] .owner').count()).resolves.toBe(3) // node 3 shares it now
    // Its partial OWN (at the manifest) and its complete one read differently in the timeline.
    await expect(page.locator('#timeline li[data-type="own"]').allTextContents()).resolves.toEqual(expect.arrayContaining([
      expect.stringMatching(/node 3 started downloading .*movie\.mkv/), expect.stringMatching(/node 3 shares movie\.mkv/)
    ]))
    await expect(page.locator('#tp-summary').textContent()).resolves.toMatch(/^[1-9][\d.]* (kB|MB) credited/)

    // A node that exits (SIGTERM: it sends EXIT) leaves the alive list and shows as exited.
    seeds[1]?.kill('SIGTERM')
    expect(await seeds[1]?.waitExit()).toBe(0)
    await page.locator('#nodes tr[data-node-id="2"][data-status="exited"]').waitFor({ timeout: 10_000 })
    await page.locator('#timeline li[data-type="exit"]').first().waitFor({ timeout: 10_000 })
    // The next full snapshot (the server's own memory, not just the event the page applied) agrees.
    const exitSeen = (await stats(url)).now
    await page.waitForFunction((t) => Number(document.body.dataset.snapshotAt) > t, exitSeen, { timeout: 10_000 })
    await expect(page.locator('#nodes tr[data-node-id="2"]').getAttribute('data-status', { timeout: 5_000 })).resolves.toBe('exited')
    await page.locator('#files tr[data-file="notes.txt"]').waitFor({ state: 'detached', timeout: 10_000 })
    await expect(page.locator('#nodes tr[data-status="alive"]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-node-id')))).resolves.toEqual(['1', '3'])
    await expect(page.locator('#ranking tr[data-node-id="2"]').count()).resolves.toBe(0)
    await expect(page.locator('#files tr[data-file="movie.mkv"] .owner').count()).resolves.toBe(2)

    await expect(page.evaluate(() => (window as unknown as { marker?: string }).marker)).resolves.toBe('same page')
    expect(pageErrors).toEqual([])
    await mkdir(path.dirname(SCREENSHOT), { recursive: true })
    await page.screenshot({ path: SCREENSHOT, fullPage: true })
    expect(existsSync(SCREENSHOT)).toBe(true)
    expect(tracker.exitCode).toBeUndefined()
  })
})
