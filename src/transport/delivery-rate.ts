import { BTLBW_FILTER_ROUNDS, FULL_PIPE_GROWTH, FULL_PIPE_ROUNDS } from '../../configs.js'

export interface BottleneckBandwidthInit {
  /** Rounds the maximum is taken over. */
  filterRounds?: number
  /** The pipe is full once the estimate stops growing by this factor... */
  fullPipeGrowth?: number
  /** ...for this many rounds in a row. */
  fullPipeRounds?: number
}

/**
 * The bottleneck bandwidth of a path as BBR estimates it: the largest delivery rate seen over the
 * last few rounds, and whether the pipe is full (the estimate stopped growing while the window
 * kept growing). A receiver sees its deliveries directly, so a round is simply an interval of about
 * one RTT, and its rate is what was delivered in it. Rates are in datagrams per ms.
 */
export class BottleneckBandwidth {
  private readonly filterRounds: number
  private readonly fullPipeGrowth: number
  private readonly fullPipeRounds: number
  /** Per-round delivery rates, oldest first. */
  private readonly rates: number[] = []
  /** Their maximum, kept as rounds end: the controller reads it on every delivery. */
  private maxRate = 0
  private roundStart = NaN
  private delivered = 0
  private fullBw = 0
  private roundsWithoutGrowth = 0
  private full = false

  constructor (init: BottleneckBandwidthInit = {}) {
    this.filterRounds = init.filterRounds ?? BTLBW_FILTER_ROUNDS
    this.fullPipeGrowth = init.fullPipeGrowth ?? FULL_PIPE_GROWTH
    this.fullPipeRounds = init.fullPipeRounds ?? FULL_PIPE_ROUNDS
  }

  /** The estimate, in datagrams per ms; 0 before the first round ended. */
  get rate (): number { return this.maxRate }

  get pipeFull (): boolean { return this.full }

  /** `datagrams` were delivered at `now`; a round ends once `roundMs` passed since it began. */
  onDelivered (datagrams: number, now: number, roundMs: number): void {
    if (Number.isNaN(this.roundStart)) {
      // The first delivery only opens the round: what arrived before it took an unknown time.
      this.roundStart = now
      return
    }
    this.delivered += datagrams
    const elapsed = now - this.roundStart
    if (elapsed < roundMs) return
    this.rates.push(this.delivered / elapsed)
    if (this.rates.length > this.filterRounds) this.rates.shift()
    this.maxRate = Math.max(...this.rates)
    this.roundStart = now
    this.delivered = 0
    // A round much longer than asked had a gap with nothing to deliver: the sender was idle, not the
    // pipe full, so it says nothing about growth (BBR's application-limited samples).
    if (elapsed <= 2 * roundMs) this.checkFullPipe()
  }

  /** The datagram size changed by `factor` (new / old): rates count datagrams of the new size. */
  rescale (factor: number): void {
    for (let i = 0; i < this.rates.length; i++) this.rates[i] = (this.rates[i] as number) / factor
    this.maxRate /= factor
    this.delivered /= factor
    this.fullBw /= factor
  }

  private checkFullPipe (): void {
    if (this.full) return
    const rate = this.rate
    if (rate >= this.fullBw * this.fullPipeGrowth) {
      this.fullBw = rate
      this.roundsWithoutGrowth = 0
      return
    }
    if (++this.roundsWithoutGrowth >= this.fullPipeRounds) this.full = true
  }
}
