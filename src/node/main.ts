import readline from 'node:readline'
import { createFileLogger, flushLogger } from '../logging.js'
import { nodeFilesDir } from '../paths.js'
import { Impairment, parseImpairment } from '../transport/impairment.js'
import type { RemoteAddress } from '../transport/endpoint.js'
import { HELP_TEXT, parseCommand } from './commands.js'
import { ConsoleUi } from './console-ui.js'
import type { DownloadResult } from './download.js'
import { formatBytes } from './format.js'
import { UdpTorrentNode } from './node.js'

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
}

/**
 * The `udptorrent node` process: starts a node, runs the flag-driven work, then reads commands
 * from stdin (a TTY or a pipe). When stdin ends the node keeps serving until `exit` or a signal.
 */
export async function runNode (init: NodeMainInit): Promise<void> {
  const logger = createFileLogger(init.home, `node${init.id}`, init.logLevel)
  const ui = new ConsoleUi(process.stdout, init.progressIntervalMs)
  const node = await UdpTorrentNode.start({
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
    inboundFilter: init.impair !== undefined ? new Impairment(parseImpairment(init.impair)) : undefined,
    logger
  })
  const addr = node.address
  ui.say(`node ${init.id} listening on ${addr.host}:${addr.port}, files in ${node.library.dir}, tracker ${init.tracker.host}:${init.tracker.port}`)
  ui.watch(() => node.status().downloads)

  let exiting = false
  const shutdown = async (code: number, why: string): Promise<void> => {
    if (exiting) return
    exiting = true
    logger.info({ why, code }, 'shutting down')
    ui.stop()
    await node.stop()
    ui.say(`node ${init.id} stopped (${why})`)
    flushLogger(logger)
    process.exit(code)
  }
  process.once('SIGINT', () => { void shutdown(0, 'SIGINT') })
  process.once('SIGTERM', () => { void shutdown(0, 'SIGTERM') })

  const startDownload = (name: string): Promise<DownloadResult> => {
    ui.say(`downloading ${name}`)
    const { done } = node.download(name)
    done.then((r) => {
      ui.say(`download complete: ${r.file} ${formatBytes(r.bytes)} in ${r.seconds.toFixed(2)} s (${formatBytes(r.bytes / Math.max(r.seconds, 1e-3))}/s) sha256 ${r.sha256}`)
    }, (err: unknown) => ui.say(`download failed: ${name}: ${(err as Error).message}`))
    return done
  }

  const send = async (name: string): Promise<boolean> => {
    try {
      const f = await node.send(name)
      ui.say(`sharing ${f.identity.name} (${formatBytes(f.identity.size)}, content ${f.identity.contentHash.toString('hex').slice(0, 16)}…)`)
      return true
    } catch (err) {
      ui.say(`cannot send ${name}: ${(err as Error).message}`)
      return false
    }
  }

  const flagWork: Array<Promise<unknown>> = []
  let flagFailures = 0
  for (const name of init.send) {
    if (!await send(name)) flagFailures++
  }
  for (const name of init.download) {
    let done: Promise<DownloadResult>
    try {
      done = startDownload(name)
    } catch (err) {
      ui.say(`cannot download ${name}: ${(err as Error).message}`)
      flagFailures++
      continue
    }
    flagWork.push(done.catch(() => { flagFailures++ }))
  }
  if (init.exitWhenDone) {
    void Promise.all(flagWork).then(async () => {
      if (flagFailures > 0) ui.say(`${flagFailures} of ${init.send.length + init.download.length} flag tasks failed`)
      await shutdown(flagFailures > 0 ? 1 : 0, 'all downloads done')
    })
  }

  const interactive = process.stdin.isTTY === true
  const rl = readline.createInterface({ input: process.stdin, output: interactive ? process.stdout : undefined, terminal: interactive })
  rl.setPrompt(`node${init.id}> `)
  const prompt = (): void => { if (interactive && !exiting) rl.prompt() }
  rl.on('line', (line) => {
    const cmd = parseCommand(line)
    switch (cmd.kind) {
      case 'empty':
        break
      case 'help':
        ui.say(HELP_TEXT)
        break
      case 'status':
        ui.say(describeStatus(node, ui))
        break
      case 'invalid':
        ui.say(cmd.message)
        break
      case 'send':
        void send(cmd.name).then(prompt)
        return
      case 'download':
        try {
          startDownload(cmd.name).catch(() => {})
        } catch (err) {
          ui.say(`cannot download ${cmd.name}: ${(err as Error).message}`)
        }
        break
      case 'exit':
        void shutdown(0, 'exit command')
        return
    }
    prompt()
  })
  // Without a TTY, the end of input is not a request to stop: the node keeps serving its files.
  rl.on('close', () => logger.info('stdin closed; still serving until exit or a signal'))
  prompt()
}

function describeStatus (node: UdpTorrentNode, ui: ConsoleUi): string {
  const s = node.status()
  const lines = [
    `node ${s.id} at ${s.address.host}:${s.address.port}; tracker ${s.tracker.address.host}:${s.tracker.address.port} ${s.tracker.connected ? 'connected' : 'UNREACHABLE'}`,
    `shared (${s.shared.length}):`,
    ...s.shared.map((f) => `  ${f.name}  ${formatBytes(f.size)}  ${f.contentHash.slice(0, 16)}…`),
    `downloads (${s.downloads.length}):`,
    ...s.downloads.flatMap((d) => [
      `  ${ui.describe(d)}`,
      ...d.owners.map((o) => `    owner ${o.nodeId} ${o.address} ${o.state} ${formatBytes(o.bytes)} goodput ${formatBytes(o.goodputBytesPerSecond)}/s rtt ${o.link.srttMs?.toFixed(2) ?? '-'} ms cwnd ${o.link.cwnd} inflight ${o.link.inflight} retransmits ${o.link.retransmits} datagram ${o.link.datagramBytes} B`)
    ]),
    `peers known: ${s.peers}; served ${s.served.requests} requests, ${formatBytes(s.served.bytes)}; malformed datagrams dropped: ${s.malformedDatagrams}`
  ]
  return lines.join('\n')
}
