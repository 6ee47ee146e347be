/**
 * Scenarios 4 and 5: owners that lie. Each evil owner runs in this process (see evil-owner.ts),
 * registered and announcing the real file identity, next to one honest owner process; a real
 * downloader process must finish byte-identical and its log must show the liar handled.
 */
import path from 'node:path'
import { PEER_IDLE_TIMEOUT_MS } from '../../configs.js'
import { startNode, startTracker, type NodeProc } from '../../src/harness/processes.js'
import { EvilOwner, type EvilMode } from './evil-owner.js'
import { makeHome, makeRandomFile, nodeDir, readLog, sha256File, sha256OrMissing, withTimeout, type LogRecord, type Row } from './util.js'

const SIZE = 16 * 1024 * 1024
const BOUND_S = 45

interface OwnerRecord { nodeId: number, state: string, bytes: number, failures: number, unexpected: number, datagramsReceived: number, timeouts: number }

interface Run {
  code: number | null | 'timeout'
  seconds: number
  identical: boolean
  complete: LogRecord | undefined
  owners: OwnerRecord[]
  log: LogRecord[]
  failure: string | undefined
  evil: EvilOwner
  downloader: NodeProc
}

/**
 * A tracker, an evil owner `evilId`, an honest owner process `honestId` and a downloader `dlId` for
 * `name`. NEED lists owners of equal credit by id, lowest first, and an attacker picks its id: a
 * lower evil id puts the liar first (it is asked for the manifest).
 */
async function runAgainst (mode: EvilMode, ids: { evil: number, honest: number, dl: number }, name: string, downloaderFlags: string[]): Promise<Run> {
  const home = await makeHome(mode)
  const { evil: evilId, honest: honestId, dl: dlId } = ids
  const file = await makeRandomFile(home, honestId, name, SIZE)
  const want = await sha256File(file)
  const tracker = await startTracker(home)
  const evil = await EvilOwner.start(home, evilId, { host: '127.0.0.1', port: tracker.port }, file, name, mode)
  const honest = await startNode(home, honestId, tracker.address, ['--send', name])
  await honest.waitForLine(new RegExp(`^sharing ${name.replace('.', '\\.')}`))
  const started = performance.now()
  const downloader = await startNode(home, dlId, tracker.address, ['--download', name, '--exit-when-done', '--progress-interval', '100', ...downloaderFlags])
  let code: Run['code']
  try {
    code = await downloader.waitExit(BOUND_S * 1000)
  } catch {
    code = 'timeout'
    downloader.kill('SIGKILL')
  }
  const seconds = (performance.now() - started) / 1000
  await evil.stop()
  const identical = code === 0 && await sha256OrMissing(path.join(nodeDir(home, dlId), name)) === want
  const log = await withTimeout(readLog(home, `node${dlId}`), 5_000, 'reading the downloader log')
  const complete = log.find((r) => r.msg === 'download complete')
  const owners = (complete?.owners as OwnerRecord[] | undefined) ?? []
  const failure = downloader.lines.find((l) => l.startsWith('download failed'))
  return { code, seconds, identical, complete, owners, log, failure, evil, downloader }
}

const ownerText = (o: OwnerRecord | undefined): string =>
  o === undefined ? 'absent from the record' : `state ${o.state}, ${o.bytes} B verified, ${o.failures} failures, ${o.datagramsReceived} datagrams accepted, ${o.unexpected} unexpected, ${o.timeouts} timeouts`

const outcome = (r: Run): string => r.code === 'timeout'
  ? `did NOT finish within ${BOUND_S} s (killed); last progress: ${r.downloader.lines.filter((l) => l.startsWith('progress')).at(-1) ?? 'none'}`
  : `exit ${String(r.code)} after ${r.seconds.toFixed(1)} s, ${r.identical ? 'byte-identical' : `NOT identical${r.failure !== undefined ? ` (${r.failure})` : ''}`}`

export async function evilOwnerScenarios (): Promise<Row[]> {
  const rows: Row[] = []

  // ---- 4: corrupt data ------------------------------------------------------------------------------
  {
    const r = await runAgainst('corrupt', { evil: 40, honest: 41, dl: 42 }, 'corrupt.bin', [])
    const failedPieces = r.log.filter((x) => x.msg === 'piece failed verification' && x.owner === 40).length
    const dropped = r.log.find((x) => x.msg === 'owner dropped' && x.owner === 40)
    const evilRec = r.owners.find((o) => o.nodeId === 40)
    rows.push({
      scenario: '4 owner serves corrupt data',
      tried: `evil owner 40 in-process (registered, OWNs the right identity of a 16 MiB file, serves the right manifest; answers HELLO with a cookie and REQUESTs with right-sized DATA whose bytes are flipped every 97th byte), listed first by NEED; honest owner 41; downloader 42 --download --exit-when-done`,
      expected: `byte-identical within ${BOUND_S} s; downloader log has 'piece failed verification' for owner 40 and 'owner dropped' state 'banned' for 40`,
      observed: `${outcome(r)}; ${failedPieces} 'piece failed verification' records for owner 40; 'owner dropped': ${dropped === undefined ? 'none' : `state ${String(dropped.state)} (${String(dropped.reason)})`}; owner 40 in 'download complete': ${ownerText(evilRec)}; evil owner got ${r.evil.stats.requests} REQUESTs (${r.evil.stats.manifestRequests} manifest)`,
      held: r.identical && failedPieces > 0 && dropped?.state === 'banned' && evilRec?.state === 'banned'
    })
  }

  // ---- 5: slowloris and wrong offsets, side by side -------------------------------------------------
  const [slow, shifted, shifted2] = await Promise.all([
    // Rate-limited so the download outlasts the idle timeout: the slowloris must be dropped by it, not outrun.
    runAgainst('slowloris', { evil: 50, honest: 51, dl: 52 }, 'slow.bin', ['--download-limit', '1.5MB/s']),
    runAgainst('wrong-offset', { evil: 60, honest: 61, dl: 62 }, 'shifted.bin', []),
    // The same liar listed second: the manifest comes from the honest owner, the liar only gets pieces.
    runAgainst('wrong-offset', { evil: 66, honest: 65, dl: 67 }, 'shifted2.bin', [])
  ])
  {
    const evilRec = slow.owners.find((o) => o.nodeId === 50)
    const dropped = slow.log.find((x) => x.msg === 'owner dropped' && x.owner === 50)
    rows.push({
      scenario: '5a slowloris owner',
      tried: `evil owner 50 (listed first) answers HELLO and the manifest request, then never answers a content REQUEST; honest owner 51; downloader 52 --download-limit 1.5MB/s (16 MiB, so the download outlasts the ${PEER_IDLE_TIMEOUT_MS / 1000} s idle timeout)`,
      expected: `byte-identical within ${BOUND_S} s; owner 50 dropped with state 'dead' after the idle timeout`,
      observed: `${outcome(slow)}; 'owner dropped': ${dropped === undefined ? 'none' : `state ${String(dropped.state)} (${String(dropped.reason)})`}; owner 50 in 'download complete': ${ownerText(evilRec)}; it got ${slow.evil.stats.requests} REQUESTs`,
      held: slow.identical && slow.seconds <= BOUND_S && evilRec?.state === 'dead' && dropped?.state === 'dead'
    })
  }
  {
    const evilRec = shifted.owners.find((o) => o.nodeId === 60)
    rows.push({
      scenario: '5b owner sends wrong offsets',
      tried: `evil owner 60 (listed first) answers HELLO and every REQUEST (manifest and content) with the right bytes under an offset 7 bytes past the real one; honest owner 61; downloader 62`,
      expected: `byte-identical within ${BOUND_S} s; owner 60's datagrams counted as owners[].unexpected in the 'download complete' record`,
      observed: `${outcome(shifted)}; owner 60 in 'download complete': ${ownerText(evilRec)}; it got ${shifted.evil.stats.requests} REQUESTs (${shifted.evil.stats.manifestRequests} manifest) and sent ${shifted.evil.stats.datagramsSent} DATA datagrams`,
      held: shifted.identical && shifted.seconds <= BOUND_S && (evilRec?.unexpected ?? 0) > 0
    })
  }
  {
    const evilRec = shifted2.owners.find((o) => o.nodeId === 66)
    rows.push({
      scenario: '5c wrong offsets, liar listed second',
      tried: `as 5b, but the evil owner has id 66 and the honest owner 65, so NEED lists the honest owner first and the manifest comes from it; downloader 67`,
      expected: `byte-identical within ${BOUND_S} s; owner 66's datagrams counted as owners[].unexpected`,
      observed: `${outcome(shifted2)}; owner 66 in 'download complete': ${ownerText(evilRec)}; it got ${shifted2.evil.stats.requests} REQUESTs (${shifted2.evil.stats.manifestRequests} manifest) and sent ${shifted2.evil.stats.datagramsSent} DATA datagrams`,
      held: shifted2.identical && shifted2.seconds <= BOUND_S && (evilRec?.unexpected ?? 0) > 0
    })
  }
  return rows
}
