import { PROGRESS_INTERVAL_PLAIN_MS, PROGRESS_INTERVAL_TTY_MS } from '../../configs.js'
import type { DownloadProgress } from './download.js'
import { formatBytes, formatDuration } from './format.js'

/** Time constant of the rate average: long enough that the ETA does not jump, short enough to follow real changes. */
const RATE_SMOOTHING_SECONDS = 5

interface RateState { bytes: number, at: number, rate: number | undefined }

/**
 * What a person sees: messages, and a progress line per download (redrawn in place on a TTY, a
 * plain line every few seconds otherwise). It never writes to the log file.
 */
export class ConsoleUi {
  private readonly tty: boolean
  private timer: NodeJS.Timeout | undefined
  private lastLine = ''
  private readonly rates = new Map<string, RateState>()

  constructor (private readonly out: NodeJS.WriteStream = process.stdout, private readonly intervalMs?: number) {
    this.tty = out.isTTY === true
  }

  say (line: string): void {
    this.clearLine()
    this.out.write(line + '\n')
  }

  /** Starts reporting progress of whatever `source` returns, until stop(). */
  watch (source: () => DownloadProgress[]): void {
    if (this.timer !== undefined) return
    const interval = this.intervalMs ?? (this.tty ? PROGRESS_INTERVAL_TTY_MS : PROGRESS_INTERVAL_PLAIN_MS)
    this.timer = setInterval(() => this.render(source()), interval)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    this.clearLine()
  }

  /** One line for a download: bytes, percent, rate, ETA, owners, pieces. */
  describe (p: DownloadProgress): string {
    const now = Date.now()
    const state = this.rates.get(p.name) ?? { bytes: p.bytesThisRun, at: now, rate: undefined }
    const dt = (now - state.at) / 1000
    if (dt > 0) {
      const inst = (p.bytesThisRun - state.bytes) / dt
      const alpha = 1 - Math.exp(-dt / RATE_SMOOTHING_SECONDS)
      state.rate = state.rate === undefined ? inst : state.rate + alpha * (inst - state.rate)
    }
    state.bytes = p.bytesThisRun
    state.at = now
    this.rates.set(p.name, state)
    if (p.phase === 'locating' || p.phase === 'manifest') return `${p.name}: ${p.phase === 'locating' ? 'looking for owners' : 'fetching manifest'}…`
    const pct = p.size === 0 ? 100 : (100 * p.bytesDone) / p.size
    const rate = state.rate ?? 0
    const eta = rate > 0 ? (p.size - p.bytesDone) / rate : Infinity
    const owners = p.owners.filter((o) => o.state === 'active').length
    return `${p.name}: ${pct.toFixed(1)}% ${formatBytes(p.bytesDone)}/${formatBytes(p.size)} ${formatBytes(rate)}/s ETA ${formatDuration(eta)} owners ${owners} pieces ${p.piecesDone}/${p.pieces}`
  }

  private render (downloads: DownloadProgress[]): void {
    for (const name of this.rates.keys()) if (!downloads.some((d) => d.name === name)) this.rates.delete(name)
    if (downloads.length === 0) {
      this.clearLine()
      return
    }
    const lines = downloads.map((d) => this.describe(d))
    if (this.tty) {
      this.clearLine()
      this.lastLine = lines.join(' | ').slice(0, Math.max(20, (this.out.columns ?? 120) - 1))
      this.out.write(this.lastLine)
    } else {
      for (const l of lines) this.out.write(`progress ${l}\n`)
    }
  }

  private clearLine (): void {
    if (this.tty && this.lastLine !== '') {
      this.out.write('\r\x1b[K')
      this.lastLine = ''
    }
  }
}
