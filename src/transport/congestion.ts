import { INITIAL_CWND_DATAGRAMS, MAX_CWND_DATAGRAMS, MIN_CWND_DATAGRAMS } from '../../configs.js'

/**
 * Sizes the window of datagrams a receiver keeps outstanding towards one owner. The fetcher calls
 * these hooks; the controller owns only the window arithmetic, so algorithms can be swapped.
 */
export interface CongestionController {
  /** The window, in datagrams. */
  readonly cwnd: number
  readonly name: string
  onDelivered: (datagrams: number, now: number) => void
  /** Datagrams from a request sent at `sentAt` were declared lost. */
  onLoss: (sentAt: number, now: number) => void
  /** A request timed out with nothing at all arriving. */
  onTimeout: (now: number) => void
}

export interface NewRenoInit {
  initialCwnd?: number
  minCwnd?: number
  maxCwnd?: number
}

/**
 * NewReno-style AIMD (RFC 5681 / RFC 9002 §7) counted in datagrams: slow start, congestion
 * avoidance, and at most one reduction per round trip (a loss of a request sent before the last
 * reduction belongs to the same congestion event).
 */
export class NewReno implements CongestionController {
  readonly name = 'newreno'
  private window: number
  private ssthresh = Infinity
  private recoveryStart = -Infinity
  private readonly min: number
  private readonly max: number

  constructor (init: NewRenoInit = {}) {
    this.window = init.initialCwnd ?? INITIAL_CWND_DATAGRAMS
    this.min = init.minCwnd ?? MIN_CWND_DATAGRAMS
    this.max = init.maxCwnd ?? MAX_CWND_DATAGRAMS
  }

  get cwnd (): number { return Math.floor(this.window) }

  onDelivered (datagrams: number): void {
    if (this.window < this.ssthresh) this.window += datagrams
    else this.window += datagrams / this.window
    if (this.window > this.max) this.window = this.max
  }

  onLoss (sentAt: number, now: number): void {
    if (sentAt <= this.recoveryStart) return
    this.recoveryStart = now
    this.ssthresh = Math.max(this.min, this.window / 2)
    this.window = this.ssthresh
  }

  onTimeout (now: number): void {
    this.recoveryStart = now
    this.ssthresh = Math.max(this.min, this.window / 2)
    this.window = this.min
  }
}
