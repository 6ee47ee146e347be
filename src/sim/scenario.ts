import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { SIM_FILE_NAME, SIM_HEARTBEAT_SECONDS, SIM_OWNER_TIMEOUT_SECONDS, SIM_TIMEOUT_FACTOR, SIM_TIMEOUT_SLACK_MS } from '../../configs.js'
import { startNode, startTracker, type NodeProc, type Proc } from '../harness/processes.js'
import { clientServerBound, p2pBound, type DistributionLink } from './bounds.js'

export type SimMode = 'p2p' | 'cs'

export interface ScenarioInit {
  mode: SimMode
  peers: number
  fileBytes: number
  pieceBytes: number
  seedUpload: number
  peerUpload: number
  /** Infinity for no download limit. */
  peerDownload: number
  /** 0: a flash crowd; otherwise peer i asks at i × this many ms. */
  staggerMs: number
  lossPercent: number
  delayMs: number
  pieceOrder: 'rarest' | 'sequential'
  /** The seed leaves once it has uploaded one full copy. */
  seedLeaves: boolean
  signal?: AbortSignal
  /** Progress lines for the person running the simulator. */
  onStatus?: (line: string) => void
}

export interface ScenarioResult {
  init: Omit<ScenarioInit, 'signal' | 'onStatus'>
  /** Seconds from each peer's request to its verified file; undefined for a peer that never finished. */
  completion: Array<number | undefined>
  /** Seconds from the first request to the last completion (undefined if some peer never finished). */
  distributionSeconds: number | undefined
  boundSeconds: number
}

/** The Kurose & Ross bound for a scenario's mode. */
export function boundFor (init: Pick<ScenarioInit, 'mode' | 'peers' | 'fileBytes' | 'seedUpload' | 'peerUpload' | 'peerDownload'>): number {
  const link: DistributionLink = { fileBytes: init.fileBytes, peers: init.peers, seedUpload: init.seedUpload, peerUpload: init.peerUpload, peerDownload: init.peerDownload }
  return init.mode === 'p2p' ? p2pBound(link) : clientServerBound(link)
}

/** A random file written in chunks, never held whole in memory. */
async function writeRandomFile (file: string, bytes: number): Promise<void> {
  const fh = await open(file, 'w')
  try {
    const chunk = 1 << 20
    for (let at = 0; at < bytes; at += chunk) await fh.write(randomBytes(Math.min(chunk, bytes - at)))
  } finally {
    await fh.close()
  }
}

const rateFlag = (bytesPerSecond: number): string => `${Math.round(bytesPerSecond)}B/s`

/**
 * One measured distribution: a tracker, a seed and N peers as separate processes on loopback.
 * Every process is up and registered before the clock starts; then each peer is told to download
 * (all at once, or staggered), and its completion is the moment its "download complete" line
 * arrives. Peers that have not finished by SIM_TIMEOUT_FACTOR × the bound (plus slack) are recorded
 * as unfinished.
 */
export async function runScenario (init: ScenarioInit): Promise<ScenarioResult> {
  const home = await mkdtemp(path.join(os.tmpdir(), 'udptorrent-sim-'))
  const procs: Proc[] = []
  const status = init.onStatus ?? (() => {})
  const impair = (i: number): string[] => init.lossPercent > 0 || init.delayMs > 0
    ? ['--impair', `loss=${init.lossPercent},delay=${init.delayMs},seed=${1000 + i}`]
    : []
  // Cancelling kills the processes: every wait below then ends at once.
  const stop = (): void => { for (const p of procs) if (p.exitCode === undefined) p.kill('SIGKILL') }
  init.signal?.addEventListener('abort', stop, { once: true })
  try {
    init.signal?.throwIfAborted()
    const seedDir = path.join(home, 'node_files', 'node1')
    await mkdir(seedDir, { recursive: true })
    await writeRandomFile(path.join(seedDir, SIM_FILE_NAME), init.fileBytes)
    const tracker = await startTracker(home, ['--heartbeat', String(SIM_HEARTBEAT_SECONDS), '--max-owners', String(Math.min(255, init.peers + 1))])
    procs.push(tracker)
    const seed = await startNode(home, 1, tracker.address, [
      '--send', SIM_FILE_NAME, '--piece-size', String(init.pieceBytes), '--upload-limit', rateFlag(init.seedUpload),
      '--heartbeat', String(SIM_HEARTBEAT_SECONDS), '--progress-interval', '3600000',
      ...(init.seedLeaves ? ['--exit-after-upload', String(init.fileBytes), '--super-seed'] : []),
      ...impair(1)
    ])
    procs.push(seed)
    await seed.waitForLine(/^sharing /, 120_000)
    const peerArgs = (i: number): string[] => [
      '--heartbeat', String(SIM_HEARTBEAT_SECONDS), '--progress-interval', '3600000', '--owner-timeout', String(SIM_OWNER_TIMEOUT_SECONDS),
      '--piece-order', init.pieceOrder,
      ...(init.mode === 'p2p' ? ['--upload-limit', rateFlag(init.peerUpload)] : ['--no-share']),
      ...(Number.isFinite(init.peerDownload) ? ['--download-limit', rateFlag(init.peerDownload)] : []),
      ...impair(i)
    ]
    const peers: NodeProc[] = []
    // Started one by one: 32 processes booting at once on a small machine would distort nothing
    // measured (the clock has not started) but makes start-up slow and its timeouts flaky.
    for (let i = 0; i < init.peers; i++) {
      const p = await startNode(home, 10 + i, tracker.address, peerArgs(i + 2), 'pipe')
      peers.push(p)
      procs.push(p)
    }
    status(`${init.peers} peers up; ${init.mode} distribution starts`)

    const bound = boundFor(init)
    const deadlineMs = bound * 1000 * SIM_TIMEOUT_FACTOR + SIM_TIMEOUT_SLACK_MS + init.staggerMs * init.peers
    const t0 = performance.now()
    const asked: number[] = []
    const finished = peers.map(async (p, i) => {
      const wait = i * init.staggerMs - (performance.now() - t0)
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      asked[i] = performance.now()
      p.write(`torrent -setMode download ${SIM_FILE_NAME}`)
      try {
        await p.waitForLine(new RegExp(`^download complete: ${SIM_FILE_NAME} `), deadlineMs)
        return performance.now()
      } catch {
        return undefined
      }
    })
    const ends = await Promise.all(finished)
    init.signal?.throwIfAborted()
    const completion = ends.map((end, i) => end === undefined ? undefined : (end - (asked[i] as number)) / 1000)
    const last = ends.every((e) => e !== undefined) ? Math.max(...(ends as number[])) : undefined
    const { signal: _signal, onStatus: _onStatus, ...recorded } = init
    return { init: recorded, completion, distributionSeconds: last === undefined ? undefined : (last - t0) / 1000, boundSeconds: bound }
  } finally {
    init.signal?.removeEventListener('abort', stop)
    stop()
    await Promise.allSettled(procs.map(async (p) => await p.exited))
    await rm(home, { recursive: true, force: true })
  }
}
