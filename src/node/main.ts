import readline from 'node:readline'
import { EXIT_AFTER_UPLOAD_CHECK_MS } from '../../configs.js'
import { createFileLogger, flushLogger } from '../logging.js'
import { nodeFilesDir } from '../paths.js'
import { Impairment, parseImpairment } from '../transport/impairment.js'
import type { RemoteAddress } from '../transport/endpoint.js'
import { HELP_TEXT, parseCommand } from './commands.js'
import { ConsoleUi, JsonUi, type NodeUi } from './console-ui.js'
import type { DownloadResult } from './download.js'
import { UdpTorrentNode } from './node.js'
import type { PieceOrder } from './piece-scheduler.js'

export interface NodeMainInit {
  id: number
  home: string
  tracker: RemoteAddress
  host: string
  port: number
  heartbeatMs?: number
  send: string[]
  download: string[]
  exitWhenDone: boolean
  logLevel: string
  impair?: string
  datagramBytes?: number
  maxDatagramBytes?: number
  uploadLimit?: number
  downloadLimit?: number
  noOwnerTimeoutMs?: number
  progressIntervalMs?: number
  /** Newline-delimited JSON events on stdout, and nothing else there. */
  json?: boolean
  share?: boolean
  superSeed?: boolean
  pieceSize?: number
  uploadSlots?: number
  pieceOrder?: PieceOrder
  /** Leave once this many bytes were uploaded (the simulator's seed that leaves after one copy). */
  exitAfterUploadBytes?: number
  directIo?: boolean
  udpGso?: boolean
  recvBatch?: boolean
}

/**
 * The `udptorrent node` process: starts a node, runs the flag-driven work, then reads commands
 * from stdin (a TTY or a pipe). When stdin ends the node keeps serving until `exit` or a signal.
 * What it reports goes through a NodeUi: progress bars and a prompt on a TTY, plain lines
 * otherwise, or JSON events with --json.
 */
export async function runNode (init: NodeMainInit): Promise<void> {
  const json = init.json === true
  const ui: NodeUi = json ? new JsonUi(process.stdout, init.progressIntervalMs) : new ConsoleUi(process.stdout, init.progressIntervalMs)
  ui.event({ type: 'started', id: init.id, pid: process.pid })
  // Pretty console log records (TTY stderr only; see src/logging.ts) are drawn above the bars.
  const logger = createFileLogger(init.home, `node${init.id}`, init.logLevel, { consoleSink: (text) => ui.log(text) })
  let node: UdpTorrentNode
  try {
    node = await UdpTorrentNode.start({
      id: init.id,
      dir: nodeFilesDir(init.home, init.id),
      tracker: init.tracker,
      host: init.host,
      port: init.port,
      heartbeatMs: init.heartbeatMs,
      datagramBytes: init.datagramBytes,
      maxDatagramBytes: init.maxDatagramBytes,
      uploadLimit: init.uploadLimit,
      downloadLimit: init.downloadLimit,
      noOwnerTimeoutMs: init.noOwnerTimeoutMs,
      share: init.share,
      superSeed: init.superSeed,
      pieceSize: init.pieceSize,
      uploadSlots: init.uploadSlots,
      pieceOrder: init.pieceOrder,
      directIo: init.directIo,
      udpGso: init.udpGso,
      recvBatch: init.recvBatch,
      inboundFilter: init.impair !== undefined ? new Impairment(parseImpairment(init.impair)) : undefined,
      logger
    })
  } catch (err) {
    ui.event({ type: 'error', op: 'start', message: (err as Error).message })
    flushLogger(logger)
    throw err
  }
  let exiting = false
  const shutdown = async (code: number, why: string): Promise<void> => {
    if (exiting) return
    exiting = true
    logger.info({ why, code }, 'shutting down')
    ui.stop()
    await node.stop()
    ui.event({ type: 'stopped', id: init.id, reason: why, code })
    flushLogger(logger)
    process.exit(code)
  }
  process.once('SIGINT', () => { void shutdown(0, 'SIGINT') })
  process.once('SIGTERM', () => { void shutdown(0, 'SIGTERM') })
  // Announced once the signal handlers are in place: a script may stop the node as soon as it sees this.
  const addr = node.address
  ui.event({ type: 'listening', id: init.id, host: addr.host, port: addr.port, dir: node.library.dir, tracker: `${init.tracker.host}:${init.tracker.port}` })
  ui.watch(() => node.status().downloads)
  node.events.on('withdrawn', ({ name, reason }: { name: string, reason: string }) => ui.event({ type: 'withdrawn', name, reason }))

  const startDownload = (name: string): Promise<DownloadResult> => {
    const { done } = node.download(name)
    ui.event({ type: 'downloading', name })
    done.then((r) => {
      ui.event({ type: 'complete', name: r.file, bytes: r.bytes, seconds: r.seconds, bytesPerSecond: r.bytes / Math.max(r.seconds, 1e-3), sha256: r.sha256, resumedPieces: r.resumedPieces })
    }, (err: unknown) => ui.event({ type: 'error', op: 'download', stage: 'transfer', name, message: (err as Error).message }))
    return done
  }
  const tryDownload = (name: string): Promise<DownloadResult> | undefined => {
    try {
      return startDownload(name)
    } catch (err) {
      ui.event({ type: 'error', op: 'download', stage: 'start', name, message: (err as Error).message })
      return undefined
    }
  }

  const send = async (name: string): Promise<boolean> => {
    try {
      const f = await node.send(name)
      ui.event({ type: 'sharing', name: f.identity.name, size: f.identity.size, contentHash: f.identity.contentHash.toString('hex') })
      return true
    } catch (err) {
      ui.event({ type: 'error', op: 'send', name, message: (err as Error).message })
      return false
    }
  }

  const flagWork: Array<Promise<unknown>> = []
  let flagFailures = 0
  for (const name of init.send) {
    if (!await send(name)) flagFailures++
  }
  for (const name of init.download) {
    const done = tryDownload(name)
    if (done === undefined) flagFailures++
    else flagWork.push(done.catch(() => { flagFailures++ }))
  }
  if (init.exitAfterUploadBytes !== undefined) {
    const limit = init.exitAfterUploadBytes
    const timer = setInterval(() => {
      // File content only: the manifests and bitfields it served are not part of a copy.
      // A super-seed also waits until every piece has gone out once: a full copy, not just its size.
      if (node.server.stats.contentBytesSent < limit || node.library.superSeedPending()) return
      clearInterval(timer)
      void shutdown(0, `uploaded ${node.server.stats.contentBytesSent} bytes of content`)
    }, EXIT_AFTER_UPLOAD_CHECK_MS)
  }
  if (init.exitWhenDone) {
    void Promise.all(flagWork).then(async () => {
      if (flagFailures > 0) ui.info(`${flagFailures} of ${init.send.length + init.download.length} flag tasks failed`)
      await shutdown(flagFailures > 0 ? 1 : 0, 'all downloads done')
    })
  }

  // A prompt (and line editing) only when a person is at a terminal and stdout is that terminal.
  const interactive = !json && process.stdin.isTTY === true && process.stdout.isTTY === true
  const rl = readline.createInterface({ input: process.stdin, output: interactive ? process.stdout : undefined, terminal: interactive })
  rl.setPrompt(`node${init.id}> `)
  if (interactive) {
    ui.attachPrompt(rl)
    // In raw mode Ctrl-C reaches readline, not the process.
    rl.on('SIGINT', () => { void shutdown(0, 'SIGINT') })
  }
  const prompt = (): void => { if (!exiting) ui.prompt() }
  rl.on('line', (line) => {
    ui.inputCommitted(line)
    const cmd = parseCommand(line)
    switch (cmd.kind) {
      case 'empty':
        break
      case 'help':
        ui.info(HELP_TEXT)
        break
      case 'status':
        ui.event({ type: 'status', ...node.status(), uploads: { ...node.server.stats } })
        break
      case 'invalid':
        ui.event({ type: 'error', op: 'command', message: cmd.message })
        break
      case 'send':
        void send(cmd.name).then(prompt)
        return
      case 'download':
        tryDownload(cmd.name)?.catch(() => {})
        break
      case 'exit':
        void shutdown(0, 'exit command')
        return
    }
    prompt()
  })
  // Without a TTY, the end of input is not a request to stop: the node keeps serving its files.
  rl.on('close', () => {
    ui.detachPrompt()
    logger.info('stdin closed; still serving until exit or a signal')
  })
  prompt()
}
