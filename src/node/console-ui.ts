import readline from 'node:readline'
import cliProgress from 'cli-progress'
import { PROGRESS_INTERVAL_PLAIN_MS, PROGRESS_INTERVAL_TTY_MS } from '../../configs.js'
import type { BlockServerStats } from '../transport/block-server.js'
import type { DownloadProgress } from './download.js'
import { formatBytes, formatDuration, formatRate, formatTable } from './format.js'
import type { NodeStatus } from './node.js'

/**
 * Time constant of the rate average behind the ETA: an exponential moving average over about this
 * many seconds, so the ETA does not jump with every burst or stall, yet follows a real change.
 */
export const ETA_SMOOTHING_SECONDS = 10

/** What is shown of one download: the raw progress plus a smoothed rate and ETA. */
export interface ProgressView {
  name: string
  phase: DownloadProgress['phase']
  size: number
  bytesDone: number
  /** 0..100 */
  percent: number
  /** Smoothed verified bytes per second; undefined until a rate has been measured. */
  bytesPerSecond: number | undefined
  /** Seconds left at the smoothed rate; undefined while unknown. */
  etaSeconds: number | undefined
  ownersActive: number
  owners: number
  piecesDone: number
  pieces: number
}

interface MeterState { bytes: number, at: number, sum: number, weight: number }

/**
 * Smoothed download rates, one per file. The average is exponential in time (weight
 * 1 - exp(-dt/τ) per sample, τ = ETA_SMOOTHING_SECONDS) and bias-corrected: until τ has passed it
 * is the plain average since the transfer began, instead of being dragged towards its zero start.
 */
export class ProgressMeter {
  private readonly states = new Map<string, MeterState>()

  constructor (private readonly tauSeconds = ETA_SMOOTHING_SECONDS, private readonly now: () => number = Date.now) {}

  view (p: DownloadProgress): ProgressView {
    const transferring = p.phase === 'pieces' || p.phase === 'finishing' || p.phase === 'done'
    let rate: number | undefined
    if (transferring) {
      const now = this.now()
      let s = this.states.get(p.name)
      if (s === undefined) {
        s = { bytes: p.bytesThisRun, at: now, sum: 0, weight: 0 }
        this.states.set(p.name, s)
      }
      const dt = (now - s.at) / 1000
      if (dt > 0) {
        const inst = Math.max(0, p.bytesThisRun - s.bytes) / dt
        const alpha = 1 - Math.exp(-dt / this.tauSeconds)
        s.sum += alpha * (inst - s.sum)
        s.weight += alpha * (1 - s.weight)
        s.bytes = p.bytesThisRun
        s.at = now
      }
      rate = s.weight > 0 ? s.sum / s.weight : undefined
    }
    const left = p.size - p.bytesDone
    return {
      name: p.name,
      phase: p.phase,
      size: p.size,
      bytesDone: p.bytesDone,
      percent: p.size === 0 ? (p.phase === 'done' ? 100 : 0) : (100 * p.bytesDone) / p.size,
      bytesPerSecond: rate,
      etaSeconds: !transferring ? undefined : left <= 0 ? 0 : rate !== undefined && rate > 0 ? left / rate : undefined,
      ownersActive: p.owners.filter((o) => o.state === 'active').length,
      owners: p.owners.length,
      piecesDone: p.piecesDone,
      pieces: p.pieces
    }
  }

  /** Forgets the downloads not in `names` (finished or failed). */
  keepOnly (names: Iterable<string>): void {
    const keep = new Set(names)
    for (const name of this.states.keys()) if (!keep.has(name)) this.states.delete(name)
  }
}

const waiting = (v: ProgressView): string | undefined =>
  v.phase === 'locating' ? 'looking for owners…' : v.phase === 'manifest' ? 'fetching manifest…' : undefined

/** The one-line description (plain progress lines and the status table): `name: 47.1% 9.4 MB/20.0 MB ...`. */
export function describeProgress (v: ProgressView): string {
  const w = waiting(v)
  if (w !== undefined) return `${v.name}: ${w}`
  return `${v.name}: ${v.percent.toFixed(1)}% ${formatBytes(v.bytesDone)}/${formatBytes(v.size)} ${formatBytes(v.bytesPerSecond ?? 0)}/s ETA ${formatDuration(v.etaSeconds ?? Infinity)} owners ${v.ownersActive} pieces ${v.piecesDone}/${v.pieces}`
}

/** Everything `status` reports. */
export interface StatusReport extends NodeStatus {
  uploads: BlockServerStats
}

/** The `status` answer for people: the node line, then aligned tables. */
export function formatStatus (s: StatusReport, meter: ProgressMeter): string {
  const lines = [
    `node ${s.id} at ${s.address.host}:${s.address.port}; tracker ${s.tracker.address.host}:${s.tracker.address.port} ${s.tracker.connected ? 'connected' : 'UNREACHABLE'}`,
    `shared (${s.shared.length}):`,
    ...s.shared.map((f) => `  ${f.name}  ${formatBytes(f.size)}  ${f.contentHash.slice(0, 16)}…`),
    `downloads (${s.downloads.length}):`
  ]
  if (s.downloads.length > 0) {
    const views = s.downloads.map((d) => meter.view(d))
    lines.push(...formatTable(['FILE', 'PHASE', 'DONE', 'SIZE', '%', 'RATE', 'ETA', 'OWNERS', 'PIECES'], views.map((v) => [
      v.name, v.phase, formatBytes(v.bytesDone), formatBytes(v.size), `${v.percent.toFixed(1)}%`, formatRate(v.bytesPerSecond),
      formatDuration(v.etaSeconds ?? Infinity), `${v.ownersActive}/${v.owners}`, `${v.piecesDone}/${v.pieces}`
    ])))
    const owners = s.downloads.flatMap((d) => d.owners.map((o) => ({ file: d.name, o })))
    lines.push(`owners (${owners.length}):`)
    if (owners.length > 0) {
      lines.push(...formatTable(
        ['FILE', 'OWNER', 'ADDRESS', 'STATE', 'BYTES', 'GOODPUT', 'RTT MS', 'CWND', 'INFLIGHT', 'RETRANSMITS', 'TIMEOUTS', 'DATAGRAM'],
        owners.map(({ file, o }) => [
          file, String(o.nodeId), o.address, o.state, formatBytes(o.bytes), formatRate(o.goodputBytesPerSecond),
          o.link.srttMs?.toFixed(2) ?? '-', String(o.link.cwnd), String(o.link.inflight), String(o.link.retransmits),
          String(o.link.timeouts), `${o.link.datagramBytes} B`
        ])))
    }
  }
  const u = s.uploads
  lines.push('uploads:', ...formatTable(['REQUESTS', 'DATAGRAMS', 'SENT', 'REJECTED', 'DROPPED', 'READ ERRORS'], [[
    String(u.requests), String(u.datagramsSent), formatBytes(u.bytesSent), String(u.rejected), String(u.dropped), String(u.readErrors)
  ]]))
  lines.push(`peers known: ${s.peers}; served ${s.served.requests} requests, ${formatBytes(s.served.bytes)}; malformed datagrams dropped: ${s.malformedDatagrams}`)
  return lines.join('\n')
}

/** What the node process reports; with --json each is one line of stdout. */
export type NodeEvent =
  | { type: 'started', id: number, pid: number }
  | { type: 'listening', id: number, host: string, port: number, dir: string, tracker: string }
  | { type: 'sharing', name: string, size: number, contentHash: string }
  | { type: 'downloading', name: string }
  /** A shared file changed or vanished on disk: it is no longer offered. */
  | { type: 'withdrawn', name: string, reason: string }
  | ({ type: 'progress' } & ProgressView)
  | { type: 'complete', name: string, bytes: number, seconds: number, bytesPerSecond: number, sha256: string, resumedPieces: number }
  /** op: what failed. stage for downloads: 'start' (refused at once) or 'transfer' (failed later). */
  | { type: 'error', op: 'start' | 'send' | 'download' | 'command', name?: string, stage?: 'start' | 'transfer', message: string }
  | ({ type: 'status' } & StatusReport)
  | { type: 'stopped', id: number, reason: string, code: number }

/** The node's console: people (ConsoleUi) or scripts (JsonUi). */
export interface NodeUi {
  event: (e: NodeEvent) => void
  /** Text for people (help, summaries). */
  info: (text: string) => void
  /** Reports downloads' progress from `source` every interval, until stop(). */
  watch: (source: () => DownloadProgress[]) => void
  /** Pretty log records (text ending in a newline), for stderr. */
  log: (text: string) => void
  /** The REPL: the UI draws its prompt below the progress bars. */
  attachPrompt: (rl: readline.Interface) => void
  detachPrompt: () => void
  /** Call first thing in the readline 'line' handler. */
  inputCommitted: (line: string) => void
  prompt: () => void
  stop: () => void
}

/** For the human line of each event. */
function describeEvent (e: NodeEvent, meter: ProgressMeter): string | undefined {
  switch (e.type) {
    case 'started':
      return undefined
    case 'listening':
      return `node ${e.id} listening on ${e.host}:${e.port}, files in ${e.dir}, tracker ${e.tracker}`
    case 'sharing':
      return `sharing ${e.name} (${formatBytes(e.size)}, content ${e.contentHash.slice(0, 16)}…)`
    case 'downloading':
      return `downloading ${e.name}`
    case 'withdrawn':
      return `no longer sharing ${e.name}: ${e.reason}`
    case 'progress':
      return `progress ${describeProgress(e)}`
    case 'complete':
      return `download complete: ${e.name} ${formatBytes(e.bytes)} in ${e.seconds.toFixed(2)} s (${formatBytes(e.bytesPerSecond)}/s) sha256 ${e.sha256}`
    case 'error':
      switch (e.op) {
        case 'start': return undefined // the CLI prints why the node could not start
        case 'send': return `cannot send ${e.name ?? ''}: ${e.message}`
        case 'download': return e.stage === 'start' ? `cannot download ${e.name ?? ''}: ${e.message}` : `download failed: ${e.name ?? ''}: ${e.message}`
        case 'command': return e.message
      }
      return e.message
    case 'status':
      return formatStatus(e, meter)
    case 'stopped':
      return `node ${e.id} stopped (${e.reason})`
  }
}

/**
 * What a person sees: messages, and progress. On a TTY each download has a live progress bar
 * (cli-progress) kept just above the REPL prompt; messages and log records scroll above the bars.
 * Without a TTY: a plain `progress <name>: ...` line per download every few seconds, no escape
 * codes. It never writes to the log file.
 */
export class ConsoleUi implements NodeUi {
  readonly meter = new ProgressMeter()
  private readonly screen: TtyScreen | undefined
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly out: NodeJS.WriteStream = process.stdout, private readonly intervalMs?: number, private readonly err: NodeJS.WritableStream = process.stderr) {
    this.screen = out.isTTY === true ? new TtyScreen(out) : undefined
  }

  event (e: NodeEvent): void {
    const line = describeEvent(e, this.meter)
    if (line !== undefined) this.say(line)
  }

  info (text: string): void { this.say(text) }

  say (text: string): void {
    if (this.screen !== undefined) this.screen.write(this.out, text + '\n')
    else this.out.write(text + '\n')
  }

  log (text: string): void {
    if (this.screen !== undefined) this.screen.write(this.err, text)
    else this.err.write(text)
  }

  watch (source: () => DownloadProgress[]): void {
    if (this.timer !== undefined) return
    const interval = this.intervalMs ?? (this.screen !== undefined ? PROGRESS_INTERVAL_TTY_MS : PROGRESS_INTERVAL_PLAIN_MS)
    this.timer = setInterval(() => this.render(source()), interval)
    this.timer.unref()
  }

  attachPrompt (rl: readline.Interface): void { this.screen?.attach(rl) }
  detachPrompt (): void { this.screen?.detach() }
  inputCommitted (line: string): void { this.screen?.committed(line) }
  prompt (): void { this.screen?.showPrompt() }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    this.screen?.stop()
  }

  /** One progress update (what the interval timer does). */
  render (downloads: DownloadProgress[]): void {
    this.meter.keepOnly(downloads.map((d) => d.name))
    const views = downloads.map((d) => this.meter.view(d))
    if (this.screen !== undefined) this.screen.setBars(views)
    else for (const v of views) this.out.write(`progress ${describeProgress(v)}\n`)
  }
}

interface BarPayload { view: ProgressView | undefined, nameWidth: number }

/** One bar's text: name, bar, percent, bytes, rate, ETA, owners in use, verified pieces. */
function barLine (options: cliProgress.Options, params: cliProgress.Params, payload: BarPayload): string {
  const v = payload.view
  const name = (v?.name ?? '').padEnd(payload.nameWidth)
  const bar = cliProgress.Format.BarFormat(params.progress, options)
  const w = v === undefined ? 'starting…' : waiting(v)
  const text = w !== undefined || v === undefined
    ? `${name} ${bar} ${w ?? ''}`
    : `${name} ${bar} ${v.percent.toFixed(1).padStart(5)}% ${formatBytes(v.bytesDone)}/${formatBytes(v.size)} ` +
      `${formatRate(v.bytesPerSecond)} ETA ${formatDuration(v.etaSeconds ?? Infinity)} ` +
      `owners ${v.ownersActive}/${v.owners} pieces ${v.piecesDone}/${v.pieces}`
  // One column short of the width: a full-width line would leave the cursor in the wrap position.
  return text.slice(0, Math.max(10, params.maxWidth - 1))
}

/**
 * The TTY: progress bars drawn by a cli-progress MultiBar, with the readline prompt kept on the
 * line below them. Layout, top to bottom: scrolled output (messages, logs, committed input), the
 * bars, the prompt. Before each redraw the prompt is erased and the cursor put back at the end of
 * the last bar (where MultiBar expects it); pending output is written where the bars were, the
 * bars below it, then the prompt again with the input typed so far (readline keeps it).
 * Limits: the cursor arithmetic assumes lines shorter than the terminal (bars are truncated to its
 * width; an input line that wraps or a resize mid-download can leave a stale line behind).
 */
class TtyScreen {
  private multibar: cliProgress.MultiBar | undefined
  private readonly bars = new Map<string, cliProgress.SingleBar>()
  private rl: readline.Interface | undefined
  private promptOn = false
  /** The prompt is drawn and the cursor is in it. */
  private promptShown = false
  /** The cursor is on the line below the last bar (the prompt line). */
  private belowBars = false
  private drawing = false
  private stopped = false
  private readonly pending: Array<{ stream: NodeJS.WritableStream, text: string }> = []

  constructor (private readonly out: NodeJS.WriteStream) {}

  /** Writes text (ending in a newline) above the bars and the prompt. */
  write (stream: NodeJS.WritableStream, text: string): void {
    if (this.multibar !== undefined) {
      this.pending.push({ stream, text })
      if (!this.drawing) this.multibar.update()
      return
    }
    this.erasePrompt()
    stream.write(text)
    this.showPrompt()
  }

  attach (rl: readline.Interface): void { this.rl = rl }

  detach (): void {
    this.erasePrompt()
    this.rl = undefined
    this.promptOn = false
  }

  /** Shows the prompt from now on (below the bars, if any). */
  showPrompt (): void {
    if (this.rl === undefined || this.stopped) return
    this.promptOn = true
    if (this.promptShown) return
    if (this.multibar === undefined) this.drawPrompt()
    else if (!this.drawing) this.multibar.update() // which draws it below the bars
  }

  private drawPrompt (): void {
    if (this.rl === undefined) return
    // readline redraws its line by first moving up the rows the cursor was on; start that many below.
    const rows = this.rl.getCursorPos().rows
    if (rows > 0) this.out.write('\n'.repeat(rows))
    this.rl.prompt(true)
    this.promptShown = true
  }

  /** readline has just moved below the committed input line. */
  committed (line: string): void {
    if (this.rl === undefined) return
    this.promptShown = false
    if (this.multibar === undefined) return // it stays where it is, as history
    // Go back to where that prompt started: the redraw erases it and reprints it above the bars.
    const text = this.rl.getPrompt() + line
    const rows = Math.floor(text.length / Math.max(1, this.out.columns ?? 80))
    readline.moveCursor(this.out, 0, -(rows + 1))
    readline.cursorTo(this.out, 0)
    readline.clearScreenDown(this.out)
    this.pending.push({ stream: this.out, text: text + '\n' })
    this.belowBars = true
    if (!this.drawing) this.multibar.update()
  }

  setBars (views: ProgressView[]): void {
    if (this.stopped) return
    const names = views.map((v) => v.name)
    const changed = names.length !== this.bars.size || names.some((n) => !this.bars.has(n))
    if (changed) this.rebuild(names)
    const nameWidth = Math.max(0, ...names.map((n) => n.length))
    for (const v of views) {
      const bar = this.bars.get(v.name)
      if (bar === undefined) continue
      bar.setTotal(v.size)
      bar.update(v.bytesDone, { view: v, nameWidth } satisfies BarPayload)
    }
    // Each progress update redraws at once (MultiBar's own timer only refreshes, once a second).
    if (!this.drawing) this.multibar?.update()
  }

  stop (): void {
    this.promptOn = false
    this.rebuild([])
    this.erasePrompt()
    this.stopped = true
  }

  private erasePrompt (): void {
    if (!this.promptShown || this.rl === undefined) return
    readline.moveCursor(this.out, 0, -this.rl.getCursorPos().rows)
    readline.cursorTo(this.out, 0)
    readline.clearScreenDown(this.out)
    this.promptShown = false
  }

  /** Puts the cursor at the end of the last bar, as MultiBar left it. */
  private backToBars (): void {
    this.erasePrompt()
    if (this.belowBars) {
      readline.cursorTo(this.out, 0)
      readline.clearScreenDown(this.out)
      readline.moveCursor(this.out, 0, -1)
      this.belowBars = false
    }
  }

  private flushPending (): void {
    if (this.pending.length === 0) return
    readline.clearScreenDown(this.out)
    for (const p of this.pending.splice(0)) p.stream.write(p.text)
  }

  /** New bars for a new set of downloads (MultiBar's remove() does not fit a prompt below). */
  private rebuild (names: string[]): void {
    if (this.multibar !== undefined) {
      this.backToBars()
      this.multibar.stop() // clearOnComplete: back to the first bar, everything below erased
      this.multibar = undefined
      this.bars.clear()
      this.flushPending()
    }
    if (names.length === 0) {
      if (this.promptOn && !this.promptShown) this.drawPrompt()
      return
    }
    this.erasePrompt()
    const multibar = new cliProgress.MultiBar({
      stream: this.out,
      format: barLine,
      fps: 1,
      barsize: 24,
      barCompleteChar: '█',
      barIncompleteChar: '░',
      hideCursor: false,
      // Keep the terminal's autowrap (cli-progress turns it off unless this is true): output above
      // the bars and the input line must wrap. Bars are cut one column short of the width instead.
      linewrap: true,
      clearOnComplete: true,
      stopOnComplete: false,
      gracefulExit: false,
      emptyOnZero: true,
      // Output scrolls through the bars' lines, so every bar is redrawn every time.
      forceRedraw: true
    })
    multibar.on('update-pre', () => {
      this.drawing = true
      this.backToBars()
    })
    multibar.on('redraw-pre', () => this.flushPending())
    multibar.on('update-post', () => {
      if (this.rl !== undefined && this.promptOn) {
        this.out.write('\n')
        this.belowBars = true
        this.drawPrompt()
      }
      this.drawing = false
    })
    const nameWidth = Math.max(...names.map((n) => n.length))
    for (const name of names) this.bars.set(name, multibar.create(0, 0, { view: undefined, nameWidth } satisfies BarPayload))
    this.multibar = multibar
  }
}

/**
 * `--json`: one JSON object per stdout line, each with a `type` (see NodeEvent) and a `time`;
 * nothing else goes to stdout. Text meant for people and log records go to stderr.
 */
export class JsonUi implements NodeUi {
  private readonly meter = new ProgressMeter()
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly out: NodeJS.WritableStream = process.stdout, private readonly intervalMs = PROGRESS_INTERVAL_PLAIN_MS, private readonly err: NodeJS.WritableStream = process.stderr) {}

  event (e: NodeEvent): void {
    this.out.write(JSON.stringify({ ...e, time: new Date().toISOString() }) + '\n')
  }

  info (text: string): void { this.err.write(text + '\n') }
  log (text: string): void { this.err.write(text) }

  watch (source: () => DownloadProgress[]): void {
    if (this.timer !== undefined) return
    this.timer = setInterval(() => {
      const downloads = source()
      this.meter.keepOnly(downloads.map((d) => d.name))
      for (const d of downloads) this.event({ type: 'progress', ...this.meter.view(d) })
    }, this.intervalMs)
    this.timer.unref()
  }

  attachPrompt (): void {}
  detachPrompt (): void {}
  inputCommitted (): void {}
  prompt (): void {}

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }
}
