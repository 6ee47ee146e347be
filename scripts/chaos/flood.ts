/**
 * Scenario 2: a flood of valid-looking tracker requests from many source IPs and ports, while an
 * honest client on 127.0.0.1 measures its own request latency. The tracker limits requests per
 * source IP, so the flood comes from other loopback addresses (127.0.0.2 ...): from the honest
 * client's own address it would only be throttling that address, which is the limiter working.
 */
import { stat } from 'node:fs/promises'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { LOGS_DIR, TRACKER_REQUEST_BURST_PER_IP, TRACKER_REQUESTS_PER_SECOND_PER_IP } from '../../configs.js'
import { startTracker } from '../../src/harness/processes.js'
import { encode, MessageType } from '../../src/messages/index.js'
import type { RemoteAddress } from '../../src/transport/endpoint.js'
import type { FloodInit, FloodReport } from './flood-worker.js'
import { registryGrowth } from './registry-growth.js'
import { type Budget, cpuSeconds, makeHome, median, ms, onCleanup, percentile, rssBytes, mb, sleep, withTimeout, type Row } from './util.js'
import { describeReply, newIdentity, RawClient, TrackerSession } from './wire.js'

/** Held if the median latency during the flood is below this multiple of the median without it. */
const MAX_RATIO = 10
const FLOOD_IPS = 32
/** The informational beyond-capacity flood (full budget only). */
const BIG_FLOOD_IPS = 240
const PORTS_PER_IP = 4
/** Pause between honest samples: two requests per sample stay well under the per-IP limit. */
const SAMPLE_GAP_MS = 15

interface Latency { connect: number[], need: number[], lost: number }

/** `n` paced samples of a CONNECT round trip and a signed NEED round trip (a resend after 250 ms counts in the time). */
async function measure (client: RawClient, tracker: RemoteAddress, session: TrackerSession, n: number, maxMs = 20_000): Promise<Latency> {
  const out: Latency = { connect: [], need: [], lost: 0 }
  const deadline = performance.now() + maxMs
  for (let i = 0; i < n && performance.now() < deadline; i++) {
    const txid = client.freshTxid()
    let t0 = performance.now()
    const c = await client.exchange(encode({ type: MessageType.Connect, txid }), txid, tracker, 3_000)
    if (c?.type === MessageType.ConnectReply) out.connect.push(performance.now() - t0)
    else out.lost++
    t0 = performance.now()
    const r = await session.call({ type: MessageType.Need, name: 'flood.bin' }, 3_000)
    if (r?.type === MessageType.NeedReply) out.need.push(performance.now() - t0)
    else out.lost++
    await sleep(SAMPLE_GAP_MS)
  }
  return out
}

interface Phase { report: FloodReport, withConnectionId: number, during: Latency, rssDuring: number, logGrowth: number, trackerCpu: number, selfCpu: number }

/** Runs the flood worker from `ipCount` source IPs while the honest client takes `n` samples. */
async function floodPhase (home: string, tracker: RemoteAddress, pid: number | undefined, honest: RawClient, session: TrackerSession, ipCount: number, rate: number, n: number): Promise<Phase> {
  const ips = Array.from({ length: ipCount }, (_x, i) => `127.0.${2 + i >> 8}.${(2 + i) & 255}`)
  const init: FloodInit = { target: tracker, ips, portsPerIp: PORTS_PER_IP, rate, victimId: 700, name: 'flood.bin' }
  const worker = new Worker(new URL('./flood-worker.js', import.meta.url), { workerData: init })
  onCleanup(async () => { await worker.terminate() })
  const messages: Array<{ type: string, withConnectionId?: number, report?: FloodReport }> = []
  worker.on('message', (m) => messages.push(m as typeof messages[number]))
  const workerError = new Promise<never>((_resolve, reject) => worker.once('error', reject))
  workerError.catch(() => {})
  const waitMsg = async (type: string, timeoutMs: number): Promise<typeof messages[number]> => await withTimeout(Promise.race([workerError, (async () => {
    for (;;) {
      const m = messages.find((x) => x.type === type)
      if (m !== undefined) return m
      await sleep(20)
    }
  })()]), timeoutMs, `flood worker '${type}'`)
  try {
    const ready = await waitMsg('ready', 15_000)
    const logBefore = await logSize(home)
    await sleep(500) // let the flood reach its rate
    const cpu0 = await cpuSeconds(pid)
    const self0 = process.cpuUsage()
    const t0 = performance.now()
    const during = await measure(honest, tracker, session, n, 15_000)
    const wall = (performance.now() - t0) / 1000
    const trackerCpu = (await cpuSeconds(pid) - cpu0) / wall
    const selfUse = process.cpuUsage(self0)
    const selfCpu = (selfUse.user + selfUse.system) / 1e6 / wall
    const rssDuring = await rssBytes(pid)
    worker.postMessage('stop')
    const report = (await waitMsg('done', 10_000)).report as FloodReport
    return { report, withConnectionId: ready.withConnectionId ?? 0, during, rssDuring, logGrowth: await logSize(home) - logBefore, trackerCpu, selfCpu }
  } finally {
    await worker.terminate()
  }
}

const logSize = async (home: string): Promise<number> => await stat(path.join(home, LOGS_DIR, 'tracker.log')).then((s) => s.size, () => 0)

const num = (x: number): string => Math.round(x).toLocaleString('en-US')

export async function floodScenario (budget: Budget): Promise<Row[]> {
  const home = await makeHome('flood')
  const tracker = await startTracker(home)
  const trackerAddr = { host: '127.0.0.1', port: tracker.port }
  const honest = await RawClient.open('127.0.0.1')
  const session = new TrackerSession(honest, trackerAddr, 700, newIdentity())
  const ownerClient = await RawClient.open('127.0.0.1')
  const owner = new TrackerSession(ownerClient, trackerAddr, 701, newIdentity())
  for (const s of [session, owner]) {
    const r = await s.register()
    if (r?.type !== MessageType.RegisterAck) throw new Error(`honest REGISTER: ${describeReply(r)}`)
  }
  const own = await owner.call({ type: MessageType.Own, complete: true, file: { name: 'flood.bin', size: 5_000_000, pieceSize: 256 * 1024, contentHash: Buffer.alloc(32, 7) } })
  if (own?.type !== MessageType.Ack) throw new Error(`OWN: ${describeReply(own)}`)
  // Owner 701 must stay listed for the whole run: heartbeat it.
  const beat = setInterval(() => { void owner.register() }, 2_000)
  onCleanup(() => clearInterval(beat))

  const n = budget.floodSamples
  await measure(honest, trackerAddr, session, 20) // warm-up, not counted
  const base = await measure(honest, trackerAddr, session, n)
  const rssBefore = await rssBytes(tracker.child.pid)
  const mBase = { connect: median(base.connect), need: median(base.need) }

  const describe = (p: Phase, ipCount: number): { tried: string, observed: string, ratio: { connect: number, need: number } } => {
    const r = p.report
    const mDuring = { connect: median(p.during.connect), need: median(p.during.need) }
    const ratio = { connect: mDuring.connect / mBase.connect, need: mDuring.need / mBase.need }
    const replies = Object.entries(r.repliesByType).map(([k, v]) => `${num(v)} ${k.replace('Error 8', 'Error BadSignature')}`).join(', ')
    return {
      ratio,
      tried: `${num(r.sent)} datagrams in ${r.seconds.toFixed(1)} s (${num(r.rate)}/s): ${num(r.connects)} CONNECTs + ${num(r.needs)} NEEDs carrying a valid connection id and the honest client's node id with a garbage signature, from ${r.sockets} sockets (${PORTS_PER_IP} ports on each of ${ipCount} IPs from 127.0.0.2; ${p.withConnectionId} got a connection id)`,
      observed: `CONNECT median ${ms(mBase.connect)} → ${ms(mDuring.connect)} (${ratio.connect.toFixed(1)}×, p90 ${ms(percentile(p.during.connect, 90))}); NEED median ${ms(mBase.need)} → ${ms(mDuring.need)} (${ratio.need.toFixed(1)}×, p90 ${ms(percentile(p.during.need, 90))}); answered ${p.during.connect.length}+${p.during.need.length} of ${p.during.connect.length + p.during.need.length + p.during.lost} (unanswered ${p.during.lost}); the per-IP limit admits ≤ ${num(ipCount * TRACKER_REQUESTS_PER_SECOND_PER_IP)}/s of the flood, which got replies: ${replies || 'none'}; tracker CPU ${(100 * p.trackerCpu).toFixed(0)} % of a core (attacker process ${(100 * p.selfCpu).toFixed(0)} %), RSS ${mb(rssBefore)} → ${mb(p.rssDuring)}; tracker.log +${mb(p.logGrowth)}`
    }
  }

  const main = await floodPhase(home, trackerAddr, tracker.child.pid, honest, session, FLOOD_IPS, budget.floodRate, n)
  // After the flood: the victim's identity is untouched and it still gets answers.
  const after = await session.call({ type: MessageType.Need, name: 'flood.bin' })
  const stillServed = after?.type === MessageType.NeedReply && after.owners.some((o) => o.nodeId === 701)
  const alive = tracker.exitCode === undefined
  const d = describe(main, FLOOD_IPS)
  const rows: Row[] = [{
    scenario: '2 flood from many sources',
    tried: `${d.tried}; the honest client on 127.0.0.1 (not a flood address: the limit is ${TRACKER_REQUESTS_PER_SECOND_PER_IP}/s per IP, burst ${TRACKER_REQUEST_BURST_PER_IP}, so flooding from its IP would only throttle that IP) timed ${n} CONNECT and ${n} signed NEED round trips (${SAMPLE_GAP_MS} ms apart) without and with the flood`,
    expected: `median latency with the flood < ${MAX_RATIO}× without, for CONNECT and NEED; ≥ 90 % answered; tracker alive and still serving the victim id`,
    observed: `${d.observed}; ${alive ? 'alive' : 'EXITED'}; victim NEED after: ${stillServed ? 'answered' : describeReply(after)}`,
    held: alive && stillServed && d.ratio.connect < MAX_RATIO && d.ratio.need < MAX_RATIO && main.during.connect.length >= n * 0.9 && main.during.need.length >= n * 0.9
  }]

  // Beyond capacity (not defended, measured for the record): the same flood from many more addresses.
  if (budget.name === 'full') {
    const big = await floodPhase(home, trackerAddr, tracker.child.pid, honest, session, BIG_FLOOD_IPS, budget.floodRate, 50)
    const b = describe(big, BIG_FLOOD_IPS)
    rows.push({
      scenario: '2+ flood beyond capacity (informational)',
      tried: b.tried,
      expected: 'not defended (see below): per-IP limits do not bound the sum over many addresses',
      observed: `${b.observed}; ${tracker.exitCode === undefined ? 'alive' : 'EXITED'}`,
      held: true,
      info: true
    })
    rows.push(await registryGrowth())
  }
  return rows
}
