/**
 * Informational (full budget): how much tracker memory and database a client can make it hold by
 * announcing files that do not exist, at the per-IP request limit. The registry is bounded per
 * source address (MAX_NODES_PER_ADDRESS × MAX_FILES_PER_NODE), not globally.
 */
import { stat } from 'node:fs/promises'
import path from 'node:path'
import { MAX_FILES_PER_NODE, MAX_NODES_PER_ADDRESS, TRACKER_DB_DIR, TRACKER_DB_FILE, TRACKER_REQUESTS_PER_SECOND_PER_IP } from '../../configs.js'
import { startTracker } from '../../src/harness/processes.js'
import { MessageType } from '../../src/messages/index.js'
import { cpuSeconds, makeHome, mb, rssBytes, sleep, type Row } from './util.js'
import { newIdentity, RawClient, TrackerSession } from './wire.js'

const IPS = 16
const SECONDS = 10

export async function registryGrowth (): Promise<Row> {
  const home = await makeHome('growth')
  const tracker = await startTracker(home)
  const trackerAddr = { host: '127.0.0.1', port: tracker.port }
  const pid = tracker.child.pid
  await sleep(500)
  const rss0 = await rssBytes(pid)
  const cpu0 = await cpuSeconds(pid)
  const started = performance.now()
  const perIp = await Promise.all(Array.from({ length: IPS }, async (_x, i) => {
    const session = new TrackerSession(await RawClient.open(`127.0.1.${2 + i}`), trackerAddr, 20_000 + i, newIdentity())
    await session.register()
    let owned = 0
    const t0 = performance.now()
    // Paced just under the per-IP limit, so nothing is dropped and retried.
    while (performance.now() - started < SECONDS * 1000) {
      const r = await session.call({
        type: MessageType.Own,
        complete: true,
        file: { name: `junk-${i}-${owned}.bin`, size: 1e12, pieceSize: 16 * 1024 * 1024, contentHash: Buffer.from(`${i}:${owned}`.padEnd(32, '#')) }
      }, 2_000)
      if (r?.type === MessageType.Ack) owned++
      const due = t0 + (owned / (TRACKER_REQUESTS_PER_SECOND_PER_IP * 0.95)) * 1000 - performance.now()
      if (due > 0) await sleep(due)
    }
    return owned
  }))
  const seconds = (performance.now() - started) / 1000
  await sleep(1_500) // the debounced database write
  const files = perIp.reduce((a, b) => a + b, 0)
  const rss1 = await rssBytes(pid)
  const cpu = (await cpuSeconds(pid) - cpu0) / seconds
  const db = await stat(path.join(home, TRACKER_DB_DIR, TRACKER_DB_FILE)).then((s) => s.size, () => NaN)
  const perFile = (rss1 - rss0) / files
  const cap = MAX_NODES_PER_ADDRESS * MAX_FILES_PER_NODE
  return {
    scenario: '2++ registry growth (informational)',
    tried: `${files.toLocaleString('en-US')} OWNs of files that do not exist, correctly signed, from ${IPS} registered nodes on ${IPS} IPs (127.0.1.2-${1 + IPS}) at just under ${TRACKER_REQUESTS_PER_SECOND_PER_IP}/s each, for ${seconds.toFixed(1)} s`,
    expected: `not defended (see below): the registry is capped per address (${MAX_NODES_PER_ADDRESS} nodes × ${MAX_FILES_PER_NODE.toLocaleString('en-US')} files = ${cap.toLocaleString('en-US')} files), not globally`,
    observed: `all accepted; tracker RSS ${mb(rss0)} → ${mb(rss1)} (≈ ${Math.round(perFile)} B per file, an upper estimate as it includes garbage not yet collected; ≈ ${mb(perFile * cap)} per address at the cap if linear); tracker_db/tracker.json ${mb(db)}, rewritten whole on every change (debounced 500 ms); tracker CPU ${(100 * cpu).toFixed(0)} % of a core; ${tracker.exitCode === undefined ? 'alive' : 'EXITED'}`,
    held: true,
    info: true
  }
}
