import { INITIAL_RTO_MS, MAX_RTO_MS, MIN_RTO_MS } from '../../configs.js'

export interface RttEstimatorInit {
  initialRtoMs?: number
  minRtoMs?: number
  maxRtoMs?: number
}

/**
 * RFC 6298 smoothed RTT and retransmission timeout. Samples must be unambiguous (Karn's rule):
 * the fetcher only samples the first datagram of a response to a request whose txid was used once,
 * so a reply can never be matched to the wrong transmission.
 */
export class RttEstimator {
  private srttMs: number | undefined
  private rttvarMs = 0
  private rtoMs: number
  private backoffFactor = 1
  private minMs = Infinity
  private latestMs = 0
  private readonly minRto: number
  private readonly maxRto: number

  constructor (init: RttEstimatorInit = {}) {
    this.rtoMs = init.initialRtoMs ?? INITIAL_RTO_MS
    this.minRto = init.minRtoMs ?? MIN_RTO_MS
    this.maxRto = init.maxRtoMs ?? MAX_RTO_MS
  }

  sample (rttMs: number): void {
    if (!(rttMs >= 0) || !Number.isFinite(rttMs)) return
    this.latestMs = rttMs
    this.minMs = Math.min(this.minMs, rttMs)
    if (this.srttMs === undefined) {
      // RFC 6298 §2.2
      this.srttMs = rttMs
      this.rttvarMs = rttMs / 2
    } else {
      // RFC 6298 §2.3, alpha = 1/8, beta = 1/4
      this.rttvarMs = 0.75 * this.rttvarMs + 0.25 * Math.abs(this.srttMs - rttMs)
      this.srttMs = 0.875 * this.srttMs + 0.125 * rttMs
    }
    this.rtoMs = this.srttMs + Math.max(1, 4 * this.rttvarMs) // G = 1 ms timer granularity
    this.backoffFactor = 1 // a fresh sample ends exponential backoff (RFC 6298 §5.7)
  }

  /** RFC 6298 §5.5: double the timeout after it expires, up to the maximum. */
  backoff (): void {
    this.backoffFactor = Math.min(this.backoffFactor * 2, 64)
  }

  get rto (): number {
    return Math.min(this.maxRto, Math.max(this.minRto, this.rtoMs) * this.backoffFactor)
  }

  get srtt (): number | undefined { return this.srttMs }
  get rttvar (): number { return this.rttvarMs }
  get minRtt (): number | undefined { return Number.isFinite(this.minMs) ? this.minMs : undefined }
  get latestRtt (): number { return this.latestMs }
  /** The RTT to reason with before and after the first sample. */
  get smoothedOrInitial (): number { return this.srttMs ?? this.rtoMs }
}
