/**
 * Scenario 1: random, truncated and bit-flipped datagrams at a tracker and at a node. Both must stay
 * up, still answer correctly afterwards, and keep their memory bounded.
 */
import { readFile, stat } from 'node:fs/promises'
import path from 'node:path'
import { DEFAULT_PIECE_SIZE, LOGS_DIR } from '../../configs.js'
import { startNode, startTracker, waitFor } from '../../src/harness/processes.js'
import { MessageType, Stream } from '../../src/messages/index.js'
import { hashFile } from '../../src/node/manifest.js'
import { deriveSeed } from '../../src/transport/prng.js'
import type { RemoteAddress } from '../../src/transport/endpoint.js'
import { hostileDatagrams, type HostileContext, type HostileKind } from './hostile.js'
import { type Budget, makeHome, makeRandomFile, mb, readLog, rssBytes, sleep, tick, type Row } from './util.js'
import { assemble, describeReply, hello, newIdentity, RawClient, requestRange, TrackerSession } from './wire.js'

const SEED = 0x5eed_c4a0
/** Memory may grow by at most this much from before the fuzz to after it. */
const RSS_BOUND_BYTES = 100e6
/** Fuzz sources: this many loopback addresses (127.0.0.2 ...), one socket each. */
const SOURCE_IPS = 16

interface SendReport { sent: number, seconds: number, rate: number, kinds: Record<HostileKind, number> }

interface Source { client: RawClient, ctx: HostileContext }

/**
 * Sends `count` hostile datagrams to `to`, round-robin over `sources` (each with its own seeded
 * stream built on its own context), paced to at most `rate`/s.
 */
async function fuzzSend (sources: Source[], to: RemoteAddress, seed: number, count: number, rate: number): Promise<SendReport> {
  const kinds: Record<HostileKind, number> = { random: 0, 'header+junk': 0, truncated: 0, appended: 0, 'bit-flipped': 0, huge: 0 }
  const streams = sources.map((src, i) => hostileDatagrams(deriveSeed(seed, i), Math.floor(count / sources.length) + (i < count % sources.length ? 1 : 0), src.ctx, kinds))
  const batch = 200
  const started = performance.now()
  let sent = 0
  for (let live = streams.length; live > 0;) {
    live = 0
    for (const [i, stream] of streams.entries()) {
      const next = stream.next()
      if (next.done === true) continue
      live++
      const sock = (sources[i] as Source).client.socket
      sock.send(next.value, to.port, to.host)
      if (++sent % batch === 0) {
        // Ahead of the schedule: wait for a timer; else just let the event loop (and sends) run.
        const due = (sent / rate) * 1000 - (performance.now() - started)
        if (due > 2) await sleep(due)
        else await tick()
      }
    }
  }
  const seconds = (performance.now() - started) / 1000
  return { sent, seconds, rate: sent / seconds, kinds }
}

/** One raw client per source IP 127.0.0.2, 127.0.0.3, ... */
async function openSources (n: number): Promise<RawClient[]> {
  const out: RawClient[] = []
  for (let i = 0; i < n; i++) {
    const c = await RawClient.open(`127.0.0.${2 + i}`)
    try { c.socket.setSendBufferSize(4 * 1024 * 1024) } catch { /* kernel cap */ }
    out.push(c)
  }
  return out
}

interface MemoryTrace { before: number, peak: number, samples: number[], after: number }

/** Samples a process's RSS every 500 ms while `work` runs. */
async function traced<T> (pid: number | undefined, work: () => Promise<T>): Promise<{ result: T, samples: number[] }> {
  const samples: number[] = []
  const timer = setInterval(() => { void rssBytes(pid).then((r) => { if (!Number.isNaN(r)) samples.push(r) }) }, 500)
  try {
    return { result: await work(), samples }
  } finally {
    clearInterval(timer)
  }
}

const kindsText = (k: Record<HostileKind, number>): string =>
  `${k.random} random (0-1500 B), ${k.huge} huge random (1.5-65.5 KB), ${k['header+junk']} valid-header+junk, ${k.truncated} truncated valid, ${k.appended} valid+trailing bytes, ${k['bit-flipped']} bit-flipped valid (1-4 bits)`

const memText = (m: MemoryTrace): string => {
  const every = Math.max(1, Math.ceil(m.samples.length / 8))
  const shown = m.samples.filter((_x, i) => i % every === 0).map((x) => (x / 1e6).toFixed(0)).join(',')
  return `VmRSS before ${mb(m.before)}, during max ${mb(m.peak)} (samples MB: ${shown}), after ${mb(m.after)}; growth ${mb(m.after - m.before)} (bound ${mb(RSS_BOUND_BYTES)})`
}

export async function fuzzScenario (budget: Budget): Promise<Row[]> {
  const home = await makeHome('fuzz')
  const FILE = 'fuzz.bin'
  const SIZE = 1_000_000
  const file = await makeRandomFile(home, 2, FILE, SIZE)
  const bytes = await readFile(file)
  const manifest = await hashFile(file, DEFAULT_PIECE_SIZE)
  const tracker = await startTracker(home, ['--http', '0'])
  const dash = await tracker.waitForLine(/^dashboard on (http:\S+)/)
  const dashUrl = `${dash[1] as string}stats.json`
  const node = await startNode(home, 2, tracker.address, ['--send', FILE], 'pipe')
  await node.waitForLine(/^sharing fuzz\.bin/)
  const trackerAddr = { host: '127.0.0.1', port: tracker.port }
  const nodeAddr = { host: '127.0.0.1', port: node.port }
  const clients = await openSources(SOURCE_IPS)
  const count = budget.fuzzPerTarget
  const rows: Row[] = []

  const trackerStats = async (): Promise<{ datagramsIn: number, malformed: number, refused?: unknown } | undefined> => {
    try {
      const res = await fetch(dashUrl, { signal: AbortSignal.timeout(3_000) })
      const j = await res.json() as { stats: { endpoint: { datagramsIn: number, malformed: number } } }
      return j.stats.endpoint
    } catch {
      return undefined
    }
  }

  // ---- the tracker ------------------------------------------------------------------------------
  await sleep(1_000)
  const tBefore = await rssBytes(tracker.child.pid)
  // Each source gets a real connection id for its address, so mutated copies reach the key and signature checks.
  const trackerSources: Source[] = []
  for (const client of clients) {
    const s = new TrackerSession(client, trackerAddr, 0, newIdentity())
    trackerSources.push({ client, ctx: { connectionId: await s.connect(), nodeIds: [2], contentHash: manifest.contentHash } })
  }
  const inBefore = (await trackerStats())?.datagramsIn ?? 0
  const tSend = await traced(tracker.child.pid, async () => await fuzzSend(trackerSources, trackerAddr, deriveSeed(SEED, 0), count, budget.fuzzRate))
  await sleep(2_000)
  const tStats = await trackerStats()
  const probe = await RawClient.open('127.0.0.1')
  const session = new TrackerSession(probe, trackerAddr, 9_001, newIdentity())
  let trackerAnswers = 'not checked'
  let trackerOk = false
  try {
    await session.connect()
    const reg = await session.register()
    const need = await session.call({ type: MessageType.Need, name: FILE })
    const listed = need?.type === MessageType.NeedReply && need.owners.some((o) => o.nodeId === 2 && o.port === node.port) &&
      need.file?.contentHash.equals(manifest.contentHash) === true
    trackerOk = reg?.type === MessageType.RegisterAck && listed
    trackerAnswers = `CONNECT → connection id; signed REGISTER → ${describeReply(reg)}; NEED ${FILE} → ${listed ? 'node 2 listed with the right content' : describeReply(need)}`
  } catch (err) {
    trackerAnswers = `honest client failed: ${(err as Error).message}`
  }
  const tAfter = await rssBytes(tracker.child.pid)
  const tMem: MemoryTrace = { before: tBefore, peak: Math.max(tBefore, ...tSend.samples), samples: tSend.samples, after: tAfter }
  const logBytes = await stat(path.join(home, LOGS_DIR, 'tracker.log')).then((s) => s.size, () => NaN)
  const trackerLog = await readLog(home, 'tracker')
  const causes: Record<string, number> = {}
  for (const r of trackerLog) if (r.event === 'refused') { const c = String(r.cause ?? r.code ?? '?'); causes[c] = (causes[c] ?? 0) + 1 }
  const trackerThrew = trackerLog.filter((r) => r.msg === 'handler threw; datagram dropped' || (r.level ?? 0) >= 50).length
  const tAlive = tracker.exitCode === undefined
  const tMemOk = tAfter <= tBefore + RSS_BOUND_BYTES
  rows.push({
    scenario: '1a fuzz → tracker',
    tried: `${tSend.result.sent.toLocaleString('en-US')} hostile datagrams to the tracker (1M each to the tracker and to a node in the full budget, 100k each with --budget small): ${kindsText(tSend.result.kinds)}; from ${SOURCE_IPS} sockets on 127.0.0.2-${1 + SOURCE_IPS}, each with a valid connection id for its address that 3 in 4 signed samples carry (half of them also name node 2, a registered node); achieved ${Math.round(tSend.result.rate).toLocaleString('en-US')}/s over ${tSend.result.seconds.toFixed(1)} s`,
    expected: `process alive; CONNECT + signed REGISTER of an honest client answered; state intact (NEED lists node 2); no handler exception; RSS after ≤ before + ${mb(RSS_BOUND_BYTES)}`,
    observed: `${tAlive ? 'alive' : `EXITED (${String(tracker.exitCode)})`}; ${trackerAnswers}; received ${tStats === undefined ? '?' : (tStats.datagramsIn - inBefore).toLocaleString('en-US')} datagrams during the fuzz (node heartbeats included; malformed ${tStats?.malformed.toLocaleString('en-US') ?? '?'}); refusals logged by cause ${JSON.stringify(causes)}; handler exceptions/errors logged: ${trackerThrew}; ${memText(tMem)}; tracker.log ${mb(logBytes)}`,
    held: tAlive && trackerOk && tMemOk && trackerThrew === 0
  })

  // ---- the node ---------------------------------------------------------------------------------
  const nBefore = await rssBytes(node.child.pid)
  // Each source gets a real cookie for its address, so mutated REQUESTs reach the range checks and the disk.
  const nodeSources: Source[] = []
  for (const client of clients) {
    const cookie = await hello(client, nodeAddr)
    if (cookie === undefined) throw new Error('the node did not answer HELLO before the fuzz')
    nodeSources.push({ client, ctx: { cookie, contentHash: manifest.contentHash } })
  }
  const nSend = await traced(node.child.pid, async () => await fuzzSend(nodeSources, nodeAddr, deriveSeed(SEED, 1), count, budget.fuzzRate))
  await sleep(2_000)
  let nodeAnswers = 'not checked'
  let nodeOk = false
  try {
    const cookie = await hello(probe, nodeAddr)
    if (cookie === undefined) {
      nodeAnswers = 'HELLO not answered'
    } else {
      const off = 300_000
      const len = 50_000
      const data = await requestRange(probe, nodeAddr, cookie, manifest.contentHash, Stream.Content, off, len)
      const got = assemble(data, off, len)
      const same = got?.equals(bytes.subarray(off, off + len)) === true
      nodeOk = same
      nodeAnswers = `HELLO → cookie; REQUEST ${len} B at ${off} of ${FILE} → ${same ? 'the right bytes' : `${data.length} replies, ${got === undefined ? 'incomplete' : 'WRONG bytes'}`}`
    }
  } catch (err) {
    nodeAnswers = `honest peer failed: ${(err as Error).message}`
  }
  let malformed = '?'
  let uploads = '?'
  try {
    const before = node.lines.length
    node.write('status')
    const line = await waitFor('status output', () => node.lines.slice(before).find((l) => l.includes('malformed datagrams dropped')), 5_000)
    malformed = /malformed datagrams dropped: (\d+)/.exec(line)?.[1] ?? '?'
    const out = node.lines.slice(before)
    const header = out.findIndex((l) => /REQUESTS\s+DATAGRAMS\s+SENT\s+REJECTED\s+DROPPED/.test(l))
    if (header >= 0) {
      const names = ['requests', 'datagrams', 'sent', 'rejected', 'dropped', 'read errors']
      const values = (out[header + 1] ?? '').trim().split(/\s{2,}/)
      uploads = names.map((n, i) => `${n} ${values[i] ?? '?'}`).join(', ')
    }
  } catch { /* reported as '?' */ }
  const nodeLog = await readLog(home, 'node2')
  const nodeThrew = nodeLog.filter((r) => r.msg === 'handler threw; datagram dropped' || (r.level ?? 0) >= 50).length
  const nAfter = await rssBytes(node.child.pid)
  const nMem: MemoryTrace = { before: nBefore, peak: Math.max(nBefore, ...nSend.samples), samples: nSend.samples, after: nAfter }
  const nAlive = node.exitCode === undefined
  const nMemOk = nAfter <= nBefore + RSS_BOUND_BYTES
  rows.push({
    scenario: '1b fuzz → node',
    tried: `${nSend.result.sent.toLocaleString('en-US')} hostile datagrams to a node sharing ${FILE}: ${kindsText(nSend.result.kinds)}; from ${SOURCE_IPS} sockets, each with a valid cookie for its address, which 3 in 4 REQUEST samples carry with the shared file's hash (so mutated copies reach the range checks and the disk); achieved ${Math.round(nSend.result.rate).toLocaleString('en-US')}/s over ${nSend.result.seconds.toFixed(1)} s`,
    expected: `process alive; HELLO answered and a REQUEST for its file served byte-exact; no handler exception; RSS after ≤ before + ${mb(RSS_BOUND_BYTES)}`,
    observed: `${nAlive ? 'alive' : `EXITED (${String(node.exitCode)})`}; ${nodeAnswers}; malformed dropped (node's count) ${malformed}; served (node's status): ${uploads}; handler exceptions/errors logged: ${nodeThrew}; ${memText(nMem)}`,
    held: nAlive && nodeOk && nMemOk && nodeThrew === 0
  })
  return rows
}

