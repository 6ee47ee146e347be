import {
  BDP_CWND_GAIN, BDP_CWND_FLOOR_DATAGRAMS, DELIVERY_ROUND_MIN_MS, INITIAL_CWND_DATAGRAMS, LEDBAT_BASE_HISTORY_MS, LEDBAT_GAIN, LEDBAT_LOSS_BETA, LEDBAT_LOSS_DELAY_FRACTION,
  LEDBAT_MIN_TARGET_MS, LEDBAT_PROPORTIONAL_GAIN, LEDBAT_TARGET_RTT_FRACTION, MAX_CWND_DATAGRAMS, MIN_CWND_DATAGRAMS
} from '../../configs.js'
import { BottleneckBandwidth } from './delivery-rate.js'

/**
 * Sizes the window of datagrams a receiver keeps outstanding towards one owner. The fetcher calls
 * these hooks; the controller owns only the window arithmetic, so algorithms can be swapped.
 */
export interface CongestionController {
  /** The window, in datagrams. */
  readonly cwnd: number
  readonly name: string
  onDelivered: (datagrams: number, now: number) => void
  /** An RTT sample (ms) taken at `now`; delay-based controllers use it, others ignore it. */
  onRttSample: (rttMs: number, now: number) => void
  /** Datagrams from a request sent at `sentAt` were declared lost. */
  onLoss: (sentAt: number, now: number) => void
  /** A request timed out with nothing at all arriving. */
  onTimeout: (now: number) => void
  /**
   * The datagram size changed by `factor` (new / old): the window, counted in datagrams, is
   * rescaled so that it stands for the same bytes in flight.
   */
  rescale: (factor: number) => void
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

  onRttSample (): void {}

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

  rescale (factor: number): void {
    this.window = Math.min(this.max, Math.max(this.min, this.window / factor))
    if (Number.isFinite(this.ssthresh)) this.ssthresh = Math.max(this.min, this.ssthresh / factor)
  }
}

export interface LedbatInit extends NewRenoInit {
  minTargetMs?: number
  targetRttFraction?: number
  gain?: number
  baseHistoryMs?: number
  /** The window is capped at this multiple of the estimated bandwidth-delay product... */
  bdpGain?: number
  /** ...but never below this many datagrams. */
  bdpFloor?: number
  /** A loss counts as congestion with queueing delay at or above this multiple of the target. */
  lossDelayFraction?: number
}

/**
 * Delay-based control in the manner of LEDBAT (RFC 6817), made to tell random loss from congestion.
 * Queueing delay is the smallest RTT seen in the last round trip minus the base RTT (the minimum over
 * a sliding history). Below the target the window grows (exponentially until the first sign of
 * queueing, then in proportion to how far below target it is); above it, the window shrinks in
 * proportion. A loss cuts the window only when it comes with queueing delay: a loss on an empty
 * queue is noise on the path, and retransmitting it is all it needs. That is what keeps goodput on
 * a link with 5 % random loss, where loss-based AIMD collapses to a handful of datagrams.
 *
 * Delay alone does not bound the window on a path whose queue is short or counted in packets: the
 * queue overflows before its delay shows, the drops look random, and the window grows until every
 * third datagram is lost. So, as in BBR, once the delivery rate stops growing the window is capped
 * at a small multiple of the bandwidth-delay product (bottleneck rate × base RTT).
 */
export class Ledbat implements CongestionController {
  readonly name = 'ledbat'
  private window: number
  private slowStart = true
  private readonly min: number
  private readonly max: number
  private readonly minTarget: number
  private readonly targetFraction: number
  private readonly gain: number
  private readonly historyMs: number
  /** Per-history-slot minima of RTT, oldest first: a base that can rise again after a route change. */
  private readonly baseSlots: Array<{ start: number, min: number }> = []
  private base = Infinity
  /** Minimum RTT within the current round trip, and when that round trip started. */
  private roundMin = Infinity
  private roundStart = 0
  private lastRoundMin = Infinity
  private lastReduction = -Infinity
  /** When the last timeout was: the delay seen by requests sent before it is not the queue's now. */
  private lastTimeout = -Infinity
  private ssthresh = Infinity
  private readonly bandwidth = new BottleneckBandwidth()
  private readonly bdpGain: number
  private readonly bdpFloor: number
  private readonly lossDelayFraction: number

  constructor (init: LedbatInit = {}) {
    this.window = init.initialCwnd ?? INITIAL_CWND_DATAGRAMS
    this.min = init.minCwnd ?? MIN_CWND_DATAGRAMS
    this.max = init.maxCwnd ?? MAX_CWND_DATAGRAMS
    this.minTarget = init.minTargetMs ?? LEDBAT_MIN_TARGET_MS
    this.targetFraction = init.targetRttFraction ?? LEDBAT_TARGET_RTT_FRACTION
    this.gain = init.gain ?? LEDBAT_GAIN
    this.historyMs = init.baseHistoryMs ?? LEDBAT_BASE_HISTORY_MS
    this.bdpGain = init.bdpGain ?? BDP_CWND_GAIN
    this.bdpFloor = init.bdpFloor ?? BDP_CWND_FLOOR_DATAGRAMS
    this.lossDelayFraction = init.lossDelayFraction ?? LEDBAT_LOSS_DELAY_FRACTION
  }

  get cwnd (): number { return Math.floor(this.window) }

  /** The minimum over the history's slots; it changes only with a sample, so it is kept, not recomputed per delivery. */
  get baseRtt (): number { return this.base }

  /** Current queueing delay estimate in ms (0 until there are samples). */
  get queueDelay (): number {
    const base = this.baseRtt
    const current = Math.min(this.lastRoundMin, this.roundMin)
    return Number.isFinite(base) && Number.isFinite(current) ? Math.max(0, current - base) : 0
  }

  /** The window's ceiling from the bandwidth-delay product; Infinity until the pipe is known full. */
  get bdpCap (): number {
    if (!this.bandwidth.pipeFull) return Infinity
    const base = this.baseRtt
    if (!Number.isFinite(base)) return Infinity
    return Math.max(this.bdpFloor, this.bdpGain * this.bandwidth.rate * base)
  }

  /** The bottleneck bandwidth estimate, in datagrams per ms. */
  get bottleneckRate (): number { return this.bandwidth.rate }

  get target (): number {
    const base = this.baseRtt
    return Math.max(this.minTarget, Number.isFinite(base) ? base * this.targetFraction : 0)
  }

  onRttSample (rttMs: number, now: number): void {
    // A request sent before the last timeout waited out whatever made the link go silent (an owner
    // or a receiver that stalled, a queue that has drained since): its RTT says nothing about the
    // queue the window is growing back into, and taken for it, ends that slow start at a handful
    // of datagrams.
    if (now - rttMs < this.lastTimeout) return
    const slotMs = this.historyMs / 10
    // Age the base by time, not by sample count: after a long idle gap the old minimum is stale.
    while (this.baseSlots.length > 0 && (this.baseSlots[0] as { start: number }).start <= now - this.historyMs) this.baseSlots.shift()
    const last = this.baseSlots[this.baseSlots.length - 1]
    if (last === undefined || now - last.start >= slotMs) {
      this.baseSlots.push({ start: now, min: rttMs })
      while (this.baseSlots.length > 10) this.baseSlots.shift()
    } else {
      last.min = Math.min(last.min, rttMs)
    }
    let base = Infinity
    for (const s of this.baseSlots) base = Math.min(base, s.min)
    this.base = base
    // A "round" lasts one RTT: its minimum filters out the jitter of individual samples.
    const roundLength = Math.max(this.lastRoundMin === Infinity ? rttMs : this.lastRoundMin, 1)
    if (now - this.roundStart >= roundLength) {
      this.lastRoundMin = this.roundMin === Infinity ? rttMs : this.roundMin
      this.roundMin = rttMs
      this.roundStart = now
    } else {
      this.roundMin = Math.min(this.roundMin, rttMs)
    }
  }

  onDelivered (datagrams: number, now: number): void {
    if (Number.isFinite(this.lastRoundMin)) this.bandwidth.onDelivered(datagrams, now, Math.max(DELIVERY_ROUND_MIN_MS, this.lastRoundMin))
    const target = this.target
    const offTarget = (target - this.queueDelay) / target // 1 with an empty queue, negative above target
    if (this.slowStart) {
      if (offTarget > 0.5 && this.window < this.ssthresh) {
        this.window += datagrams
      } else {
        this.slowStart = false
      }
    } else {
      // Per round trip (a window's worth of deliveries): max(GAIN, window/8) × offTarget datagrams.
      const perRtt = Math.max(this.gain, this.window * LEDBAT_PROPORTIONAL_GAIN)
      this.window += (perRtt * offTarget * datagrams) / this.window
    }
    this.window = Math.min(this.max, this.bdpCap, Math.max(this.min, this.window))
  }

  onLoss (sentAt: number, now: number): void {
    // Random loss on an empty queue: not congestion.
    if (this.queueDelay < this.lossDelayFraction * this.target) return
    if (sentAt <= this.lastReduction) return // same congestion event
    this.lastReduction = now
    this.slowStart = false
    this.window = Math.max(this.min, this.window * LEDBAT_LOSS_BETA)
  }

  onTimeout (now: number): void {
    // The link went silent: start small. With a queue behind it, slow-start back to half of where
    // it was (RFC 5681 §3.1); with none, the silence was not congestion (a lost tail, an outage), so
    // slow start runs until the delay says stop, as at the start. Otherwise one lost tail early in
    // a transfer would leave the window to grow linearly from a handful of datagrams.
    this.lastReduction = now
    this.lastTimeout = now
    // With no sample since a previous timeout, that timeout's verdict stands.
    const measured = Number.isFinite(this.roundMin) || Number.isFinite(this.lastRoundMin)
    const congested = measured ? this.queueDelay >= this.lossDelayFraction * this.target : Number.isFinite(this.ssthresh)
    this.ssthresh = congested ? Math.max(this.min, this.window / 2) : Infinity
    this.slowStart = true
    this.window = this.min
    // The queueing delay is measured afresh, from requests sent from now on.
    this.roundMin = Infinity
    this.lastRoundMin = Infinity
    this.roundStart = now
  }

  rescale (factor: number): void {
    this.window = Math.min(this.max, Math.max(this.min, this.window / factor))
    if (Number.isFinite(this.ssthresh)) this.ssthresh = Math.max(this.min, this.ssthresh / factor)
    this.bandwidth.rescale(factor)
  }
}

export function createCongestionController (name: 'ledbat' | 'newreno'): CongestionController {
  return name === 'ledbat' ? new Ledbat() : new NewReno()
}
