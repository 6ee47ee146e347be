import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  INITIAL_CWND_DATAGRAMS, LEDBAT_BASE_HISTORY_MS, LEDBAT_GAIN, LEDBAT_LOSS_BETA, LEDBAT_LOSS_DELAY_FRACTION,
  BDP_CWND_FLOOR_DATAGRAMS, BDP_CWND_GAIN, FULL_PIPE_ROUNDS,
  LEDBAT_MIN_TARGET_MS, LEDBAT_PROPORTIONAL_GAIN, LEDBAT_TARGET_RTT_FRACTION, MAX_CWND_DATAGRAMS, MIN_CWND_DATAGRAMS
} from '../../configs.js'
import { createCongestionController, Ledbat, NewReno } from '../../src/transport/congestion.js'

/**
 * Deliveries in these tests happen at one instant unless a test says otherwise: no delivery-rate
 * round ever ends, so the bandwidth-delay cap stays off and only the delay-based rules act.
 */
const AT = 0

/**
 * Feeds `count` RTT samples of `rtt` ms, one per round trip starting at `t`; returns the time after
 * the last one. Three samples are enough for the per-round minimum to settle on `rtt`.
 */
function samples (cc: Ledbat, rtt: number, t: number, count = 3): number {
  for (let i = 0; i < count; i++) {
    cc.onRttSample(rtt, t)
    t += rtt
  }
  return t
}

/**
 * The target and loss rule the figures in these tests are worked out for (a 100 ms base RTT has a
 * 25 ms target, and a loss is congestion from 25 ms of queue on), whatever configs.ts tunes them to.
 */
const PINNED = { targetRttFraction: 0.25, lossDelayFraction: 1 }

/** A Ledbat with base RTT `base` and, afterwards, a steady queueing delay of `queue` ms. */
function withQueue (init: ConstructorParameters<typeof Ledbat>[0], base: number, queue: number): { cc: Ledbat, t: number } {
  const cc = new Ledbat({ ...PINNED, ...init })
  let t = samples(cc, base, 0)
  if (queue > 0) t = samples(cc, base + queue, t, 4)
  expect(cc.baseRtt).toBe(base)
  expect(cc.queueDelay).toBe(queue)
  return { cc, t }
}

/** Delivers `n` datagrams one at a time, as the fetcher reports them. */
function deliverOneByOne (cc: Ledbat, n: number): void {
  for (let i = 0; i < n; i++) cc.onDelivered(1, AT)
}

/** Ends slow start by a round of queueing at the target, then empties the queue again. */
function leaveSlowStart (cc: Ledbat, base: number, t: number): number {
  const before = cc.cwnd
  t = samples(cc, base + cc.target, t, 4)
  expect(cc.queueDelay).toBe(cc.target)
  cc.onDelivered(1, AT) // this delivery only switches the mode
  expect(cc.cwnd).toBe(before)
  t = samples(cc, base, t, 1)
  expect(cc.queueDelay).toBe(0)
  return t
}

describe('Ledbat', () => {
  it('is named, starts at the initial window, and is what createCongestionController builds', () => {
    const cc = new Ledbat()
    expect(cc.name).toBe('ledbat')
    expect(cc.cwnd).toBe(INITIAL_CWND_DATAGRAMS)
    expect(new Ledbat({ initialCwnd: 10 }).cwnd).toBe(10)
    expect(createCongestionController('ledbat')).toBeInstanceOf(Ledbat)
    expect(createCongestionController('newreno')).toBeInstanceOf(NewReno)
    // no samples yet: no queueing delay, and the minimum target
    expect(cc.queueDelay).toBe(0)
    expect(cc.target).toBe(LEDBAT_MIN_TARGET_MS)
  })

  it('slow start: with RTT samples at the base, cwnd grows by the number delivered', () => {
    const { cc } = withQueue({ initialCwnd: 10 }, 50, 0)
    cc.onDelivered(5, AT)
    expect(cc.cwnd).toBe(15)
    cc.onDelivered(15, AT)
    expect(cc.cwnd).toBe(30)
    deliverOneByOne(cc, 30)
    expect(cc.cwnd).toBe(60) // doubles per window
    // a queueing delay just below half the target keeps slow start going
    const below = withQueue({ initialCwnd: 10 }, 100, 12) // target 25, half = 12.5
    below.cc.onDelivered(10, AT)
    expect(below.cc.cwnd).toBe(20)
  })

  it('slow start ends once queueing delay reaches half the target', () => {
    const { cc, t } = withQueue({ initialCwnd: 64 }, 100, 13) // target 25: 13 > 12.5
    cc.onDelivered(1, AT)
    cc.onDelivered(64, AT)
    // not slow start: 64 delivered at offTarget (25-13)/25 = 0.48 adds 0.48 × 64/8, not 64
    expect(cc.cwnd).toBe(Math.floor(64 + 0.48 * 64 * LEDBAT_PROPORTIONAL_GAIN))
    // the mode sticks: an empty queue again does not restart slow start
    samples(cc, 100, t, 1)
    expect(cc.queueDelay).toBe(0)
    const w = cc.cwnd
    cc.onDelivered(w, AT)
    expect(cc.cwnd).toBeLessThan(w + w / 4)
  })

  it('after slow start, growth per window at zero queueing delay is max(GAIN, window × PROPORTIONAL_GAIN)', () => {
    // large window: the proportional term dominates
    const big = withQueue({ initialCwnd: 64 }, 100, 0)
    leaveSlowStart(big.cc, 100, big.t)
    big.cc.onDelivered(64, AT)
    expect(big.cc.cwnd).toBe(64 + Math.max(LEDBAT_GAIN, 64 * LEDBAT_PROPORTIONAL_GAIN)) // 72, not 128
    // the same, a datagram at a time (as the fetcher reports): still ~+1/8 per window
    deliverOneByOne(big.cc, 72)
    expect(big.cc.cwnd).toBe(81)
    // ten more windows: compounding about 12.5 % per window, far below doubling
    for (let w = 0; w < 10; w++) deliverOneByOne(big.cc, big.cc.cwnd)
    expect(big.cc.cwnd).toBeGreaterThanOrEqual(Math.floor(81 * 1.125 ** 10) - 3)
    expect(big.cc.cwnd).toBeLessThanOrEqual(Math.ceil(81 * 1.125 ** 10) + 1)

    // small window: the GAIN floor dominates (6/8 < 1)
    const small = withQueue({ initialCwnd: 6 }, 100, 0)
    leaveSlowStart(small.cc, 100, small.t)
    small.cc.onDelivered(6, AT)
    expect(small.cc.cwnd).toBe(6 + LEDBAT_GAIN)

    // half the target's worth of queueing: half the growth
    const half = withQueue({ initialCwnd: 64 }, 100, 0)
    const t = leaveSlowStart(half.cc, 100, half.t)
    samples(half.cc, 112.5, t, 4)
    expect(half.cc.queueDelay).toBe(12.5)
    half.cc.onDelivered(64, AT)
    expect(half.cc.cwnd).toBe(68)
  })

  it('above the target, delivering shrinks the window (never below the minimum)', () => {
    const { cc, t } = withQueue({ initialCwnd: 64 }, 100, 0)
    samples(cc, 150, leaveSlowStart(cc, 100, t), 4) // queueing delay 50 = 2 × target: offTarget = -1
    expect(cc.queueDelay).toBe(50)
    cc.onDelivered(64, AT)
    expect(cc.cwnd).toBe(56)
    deliverOneByOne(cc, 10)
    expect(cc.cwnd).toBeLessThan(56)
    deliverOneByOne(cc, 2000)
    expect(cc.cwnd).toBe(MIN_CWND_DATAGRAMS)

    // slightly above target (30 > 25): a slight decrease
    const slight = withQueue({ initialCwnd: 64 }, 100, 0)
    const t2 = leaveSlowStart(slight.cc, 100, slight.t)
    samples(slight.cc, 130, t2, 4)
    slight.cc.onDelivered(64, AT)
    expect(slight.cc.cwnd).toBe(62) // 64 - 0.2 × 8
  })

  it('random loss: a loss with no queueing delay does not reduce cwnd (or end slow start)', () => {
    const { cc, t } = withQueue({ initialCwnd: 40 }, 50, 0)
    for (let i = 0; i < 100; i++) cc.onLoss(t + i - 50, t + i)
    expect(cc.cwnd).toBe(40)
    cc.onDelivered(40, AT)
    expect(cc.cwnd).toBe(80) // still slow start

    // queueing just below the loss threshold (lossDelayFraction × target 25): still random loss
    const q = withQueue({ initialCwnd: 40 }, 100, PINNED.lossDelayFraction * 25 - 0.5)
    expect(q.cc.queueDelay).toBeLessThan(PINNED.lossDelayFraction * q.cc.target)
    q.cc.onLoss(q.t - 100, q.t)
    expect(q.cc.cwnd).toBe(40)

    // by default the threshold is LEDBAT_LOSS_DELAY_FRACTION × the default target, both from configs.ts
    const configured = { initialCwnd: 40, targetRttFraction: undefined, lossDelayFraction: undefined } // unpinned: the constructor's defaults
    const threshold = LEDBAT_LOSS_DELAY_FRACTION * Math.max(LEDBAT_MIN_TARGET_MS, 100 * LEDBAT_TARGET_RTT_FRACTION)
    const under = withQueue(configured, 100, threshold - 0.5)
    under.cc.onLoss(under.t - 100, under.t)
    expect(under.cc.cwnd).toBe(40)
    const over = withQueue(configured, 100, threshold)
    over.cc.onLoss(over.t - 100, over.t)
    expect(over.cc.cwnd).toBe(Math.floor(40 * LEDBAT_LOSS_BETA))

    // what a loss-based controller would do with the same event
    const reno = new NewReno({ initialCwnd: 40 })
    reno.onLoss(t - 50, t)
    expect(reno.cwnd).toBe(20)
  })

  it('congestion loss: reduces by LEDBAT_LOSS_BETA, at most once per round trip', () => {
    const { cc, t } = withQueue({ initialCwnd: 100 }, 100, 25) // queue = target
    cc.onLoss(t - 100, t) // reduction at time t
    expect(cc.cwnd).toBe(Math.floor(100 * LEDBAT_LOSS_BETA))
    cc.onLoss(t - 50, t + 10) // sent before the reduction: same congestion event
    expect(cc.cwnd).toBe(Math.floor(100 * LEDBAT_LOSS_BETA))
    cc.onLoss(t, t + 20) // sent at the reduction instant: same event
    expect(cc.cwnd).toBe(Math.floor(100 * LEDBAT_LOSS_BETA))
    cc.onLoss(t + 1, t + 150) // sent after it: a new event
    expect(cc.cwnd).toBe(Math.floor(100 * LEDBAT_LOSS_BETA * LEDBAT_LOSS_BETA))
    cc.onLoss(t + 100, t + 160) // before the second reduction at t+150
    expect(cc.cwnd).toBe(Math.floor(100 * LEDBAT_LOSS_BETA * LEDBAT_LOSS_BETA))

    // exactly at the threshold fraction of the target counts as congestion
    const edge = withQueue({ initialCwnd: 100 }, 100, PINNED.lossDelayFraction * 25)
    expect(edge.cc.queueDelay).toBe(PINNED.lossDelayFraction * edge.cc.target)
    edge.cc.onLoss(edge.t - 1, edge.t)
    expect(edge.cc.cwnd).toBe(70)

    // a congestion loss during slow start ends it
    const ss = withQueue({ initialCwnd: 20 }, 100, 0)
    // at the loss threshold: congestion, but slow start has not noticed yet
    const now = samples(ss.cc, 100 + PINNED.lossDelayFraction * 25, ss.t, 4)
    ss.cc.onLoss(now - 1, now)
    expect(ss.cc.cwnd).toBe(14)
    samples(ss.cc, 100, now, 1)
    ss.cc.onDelivered(14, AT)
    expect(ss.cc.cwnd).toBe(15) // +max(GAIN, 14/8), not +14

    // never below the minimum window
    const low = withQueue({ initialCwnd: MIN_CWND_DATAGRAMS + 1 }, 100, 40)
    for (let i = 1; i <= 5; i++) low.cc.onLoss(low.t + i * 1000 - 1, low.t + i * 1000)
    expect(low.cc.cwnd).toBe(MIN_CWND_DATAGRAMS)
  })

  it('target = max(LEDBAT_MIN_TARGET_MS, base RTT × LEDBAT_TARGET_RTT_FRACTION)', () => {
    const cases: Array<[number, number]> = [[100, 25], [40, 10], [20, 5], [10, 5], [1, 5], [400, 100]]
    for (const [base, target] of cases) {
      const cc = new Ledbat(PINNED)
      samples(cc, base, 0)
      expect(cc.target).toBe(target)
      const dflt = new Ledbat()
      samples(dflt, base, 0)
      expect(dflt.target).toBe(Math.max(LEDBAT_MIN_TARGET_MS, base * LEDBAT_TARGET_RTT_FRACTION))
    }
    // the target governs control: 20 ms of queueing on a 100 ms path is below target (grows),
    // the same 20 ms on a 10 ms path is far above its 5 ms target (shrinks)
    const long = withQueue({ initialCwnd: 64 }, 100, 0)
    samples(long.cc, 120, leaveSlowStart(long.cc, 100, long.t), 4)
    long.cc.onDelivered(64, AT)
    expect(long.cc.cwnd).toBeGreaterThan(64)
    const short = withQueue({ initialCwnd: 64 }, 10, 0)
    samples(short.cc, 30, leaveSlowStart(short.cc, 10, short.t), 4)
    expect(short.cc.queueDelay).toBe(20)
    short.cc.onDelivered(64, AT)
    expect(short.cc.cwnd).toBeLessThan(64)
  })

  it('the base RTT ages out after LEDBAT_BASE_HISTORY_MS (route change)', () => {
    const cc = new Ledbat({ ...PINNED, initialCwnd: 100 })
    cc.onRttSample(50, 0)
    // the route changes: from now on every sample is 80 ms, one every 100 ms
    let t = 100
    const until = (end: number): void => {
      for (; t <= end; t += 100) cc.onRttSample(80, t)
    }
    until(LEDBAT_BASE_HISTORY_MS * 0.9 - 100)
    expect(cc.baseRtt).toBe(50) // the old minimum is still within the history
    expect(cc.queueDelay).toBe(30)
    // so a loss now counts as congestion (30 ≥ lossDelayFraction × 12.5)
    const twin = new Ledbat({ ...PINNED, initialCwnd: 100 })
    twin.onRttSample(50, 0)
    for (let s = 100; s < t; s += 100) twin.onRttSample(80, s)
    twin.onLoss(t - 100, t)
    expect(twin.cwnd).toBe(70)

    until(LEDBAT_BASE_HISTORY_MS + 100)
    expect(cc.baseRtt).toBe(80)
    expect(cc.queueDelay).toBe(0)
    expect(cc.target).toBe(20)
    cc.onLoss(t - 100, t) // no queue against the new base: random loss
    expect(cc.cwnd).toBe(100)
  })

  // Regression (fixed): the base history ages by the number of 1-second slots that received samples, not by time.
  // After an idle gap longer than LEDBAT_BASE_HISTORY_MS the old minimum is still the base, although
  // configs.ts documents the base as "the minimum over this long". Sample 50 ms at t=0, then 80 ms at
  // t=20000 (20 s later): expected baseRtt 80 / queueDelay 0, actual baseRtt 50 / queueDelay 30, so a
  // loss right after the idle period is taken for congestion and the window is cut.
  it('the base RTT ages out by time even when samples are sparse (idle gap)', () => {
    const cc = new Ledbat({ initialCwnd: 100 })
    cc.onRttSample(50, 0)
    const t = 2 * LEDBAT_BASE_HISTORY_MS
    cc.onRttSample(80, t)
    expect(cc.baseRtt).toBe(80)
    cc.onLoss(t - 1, t)
    expect(cc.cwnd).toBe(100)
  })

  it('onTimeout with no queue drops to MIN_CWND_DATAGRAMS, then slow-starts past half the old window until the delay rises', () => {
    const { cc, t } = withQueue({ initialCwnd: 64 }, 50, 0)
    cc.onTimeout(t)
    expect(cc.cwnd).toBe(MIN_CWND_DATAGRAMS)
    deliverOneByOne(cc, 100 - MIN_CWND_DATAGRAMS)
    expect(cc.cwnd).toBe(100) // still doubling: the silence was not congestion
    leaveSlowStart(cc, 50, t)
    const before = cc.cwnd
    cc.onDelivered(1, AT)
    expect(cc.cwnd - before).toBeLessThan(1) // proportional growth from here on
  })

  it('onTimeout with a queue drops to MIN_CWND_DATAGRAMS; slow start resumes only up to half the old window', () => {
    const { cc, t } = withQueue({ initialCwnd: 64 }, 50, 20)
    cc.onTimeout(t)
    samples(cc, 50, t, 4) // the queue drains while the link is quiet
    expect(cc.queueDelay).toBe(0)
    expect(cc.cwnd).toBe(MIN_CWND_DATAGRAMS)
    cc.onDelivered(MIN_CWND_DATAGRAMS, AT)
    expect(cc.cwnd).toBe(2 * MIN_CWND_DATAGRAMS) // slow start again
    deliverOneByOne(cc, 32 - 2 * MIN_CWND_DATAGRAMS)
    expect(cc.cwnd).toBe(32) // ssthresh = 64 / 2
    deliverOneByOne(cc, 32)
    // one delivery ends slow start, the other 31 add 1/8 each
    expect(cc.cwnd).toBe(Math.floor(32 + 31 * LEDBAT_PROPORTIONAL_GAIN))

    // a loss of a request sent before the timeout belongs to the same event, even with queueing
    const q = withQueue({ initialCwnd: 64 }, 100, 0)
    q.cc.onTimeout(q.t)
    q.cc.onDelivered(12, AT)
    expect(q.cc.cwnd).toBe(MIN_CWND_DATAGRAMS + 12)
    const later = samples(q.cc, 130, q.t, 4)
    expect(q.cc.queueDelay).toBe(30) // congestion-level queueing
    q.cc.onLoss(q.t - 10, later)
    expect(q.cc.cwnd).toBe(MIN_CWND_DATAGRAMS + 12)
    q.cc.onLoss(q.t + 10, later) // sent after the timeout: a new event
    expect(q.cc.cwnd).toBe(Math.floor((MIN_CWND_DATAGRAMS + 12) * LEDBAT_LOSS_BETA))

    // repeated timeouts behind a queue stay at the minimum, and then there is no slow start to resume
    const r = withQueue({}, 50, 20)
    r.cc.onTimeout(r.t)
    r.cc.onTimeout(r.t + 100)
    r.cc.onTimeout(r.t + 200)
    samples(r.cc, 50, r.t + 300, 4)
    expect(r.cc.queueDelay).toBe(0)
    expect(r.cc.cwnd).toBe(MIN_CWND_DATAGRAMS)
    r.cc.onDelivered(1, AT) // ends slow start: window already at ssthresh
    r.cc.onDelivered(MIN_CWND_DATAGRAMS, AT)
    expect(r.cc.cwnd).toBe(MIN_CWND_DATAGRAMS + LEDBAT_GAIN)
  })

  it('after a timeout, the RTT of requests sent before it neither ends the slow start nor counts as queueing', () => {
    // The link went silent because something stalled: the answers to what was asked before the
    // timeout come late, and read as a queue that is not there any more.
    const { cc, t } = withQueue({ initialCwnd: 64 }, 50, 0)
    cc.onTimeout(t)
    for (let i = 1; i <= 4; i++) cc.onRttSample(200, t + i) // sent at t - 199 .. t - 196
    expect(cc.queueDelay).toBe(0)
    cc.onDelivered(MIN_CWND_DATAGRAMS, AT)
    expect(cc.cwnd).toBe(2 * MIN_CWND_DATAGRAMS) // still slow start
    // A request sent after the timeout that meets a queue does end it.
    samples(cc, 50 + cc.target, t + 10, 4)
    expect(cc.queueDelay).toBe(cc.target)
    const before = cc.cwnd
    cc.onDelivered(MIN_CWND_DATAGRAMS, AT)
    expect(cc.cwnd).toBe(before)
  })

  it('never exceeds the maximum window', () => {
    const cc = new Ledbat({ initialCwnd: 10, maxCwnd: 50 })
    samples(cc, 20, 0)
    cc.onDelivered(1000, AT)
    expect(cc.cwnd).toBe(50)
    const dflt = new Ledbat()
    dflt.onDelivered(10 * MAX_CWND_DATAGRAMS, AT)
    expect(dflt.cwnd).toBe(MAX_CWND_DATAGRAMS)
    leaveSlowStart(dflt, 20, samples(dflt, 20, 0))
    for (let i = 0; i < 50; i++) dflt.onDelivered(MAX_CWND_DATAGRAMS, AT)
    expect(dflt.cwnd).toBe(MAX_CWND_DATAGRAMS)
  })

  it('once the delivery rate stops growing, the window is capped at BDP_CWND_GAIN × rate × base RTT', () => {
    // A path with a 20 ms RTT and no visible queue (a short drop-tail queue), carrying 40 datagrams/ms:
    // without the cap, slow start would never end and the window would run to MAX_CWND_DATAGRAMS.
    const run = (init: ConstructorParameters<typeof Ledbat>[0], base: number, perMs: number): Ledbat => {
      const cc = new Ledbat(init)
      let t = samples(cc, base, 0)
      for (let ms = 0; ms < 40 * base; ms++) {
        cc.onRttSample(base, ++t)
        cc.onDelivered(perMs, t)
      }
      return cc
    }
    const capped = run({}, 20, 40)
    expect(capped.bottleneckRate).toBe(40)
    expect(capped.queueDelay).toBe(0)
    expect(capped.bdpCap).toBe(BDP_CWND_GAIN * 40 * 20)
    expect(capped.cwnd).toBe(Math.floor(BDP_CWND_GAIN * 40 * 20))
    expect(run({ bdpGain: Infinity }, 20, 40).cwnd).toBe(MAX_CWND_DATAGRAMS)
    // the gain is the headroom the estimate grows by
    expect(run({ bdpGain: 1.25 }, 20, 40).cwnd).toBe(1.25 * 40 * 20)
    // a path whose RTT is mostly our own event loop: the floor holds
    const loopback = run({}, 0.5, 40)
    expect(loopback.bdpCap).toBe(BDP_CWND_FLOOR_DATAGRAMS)
    expect(loopback.cwnd).toBe(BDP_CWND_FLOOR_DATAGRAMS)
  })

  it('the cap is off while the rate still grows, and follows the estimate when the path speeds up', () => {
    const cc = new Ledbat({ initialCwnd: 16 })
    let t = samples(cc, 20, 0)
    let perMs = 1
    // the rate doubles every round: slow start as usual
    for (let round = 0; round < 8; round++, perMs *= 2) {
      for (let ms = 0; ms < 20; ms++) {
        cc.onRttSample(20, ++t)
        cc.onDelivered(perMs / 20, t) // the window's worth over a round, spread out
      }
    }
    expect(cc.bdpCap).toBe(Infinity)
    // flat (after the first round that doubled) for FULL_PIPE_ROUNDS more: capped
    const flat = perMs / 20
    for (let ms = 0; ms < 20 * (FULL_PIPE_ROUNDS + 2); ms++) {
      cc.onRttSample(20, ++t)
      cc.onDelivered(flat, t)
    }
    const cap = cc.bdpCap
    expect(cap).toBeCloseTo(Math.max(BDP_CWND_FLOOR_DATAGRAMS, BDP_CWND_GAIN * flat * 20))
    expect(cc.cwnd).toBeLessThanOrEqual(cap)
    // the path gets faster: the cap rises with the measured rate
    for (let ms = 0; ms < 40; ms++) {
      cc.onRttSample(20, ++t)
      cc.onDelivered(2 * flat, t)
    }
    expect(cc.bdpCap).toBeCloseTo(BDP_CWND_GAIN * 2 * flat * 20)
  })

  it('property: cwnd is always an integer within [min, max] whatever the events', () => {
    const ev = fc.oneof(
      fc.record({ t: fc.constant('d' as const), n: fc.integer({ min: 1, max: 3000 }) }),
      fc.record({ t: fc.constant('r' as const), rtt: fc.double({ min: 0, max: 2000, noNaN: true }) }),
      fc.record({ t: fc.constant('l' as const), back: fc.integer({ min: 0, max: 500 }) }),
      fc.record({ t: fc.constant('t' as const) })
    )
    const step = fc.record({ dt: fc.integer({ min: 0, max: 3000 }), e: ev })
    const bounds = fc.constantFrom(
      { minCwnd: MIN_CWND_DATAGRAMS, maxCwnd: MAX_CWND_DATAGRAMS, initialCwnd: INITIAL_CWND_DATAGRAMS },
      { minCwnd: 4, maxCwnd: 300, initialCwnd: 16 },
      { minCwnd: 2, maxCwnd: 40, initialCwnd: 2 }
    )
    fc.assert(fc.property(bounds, fc.array(step, { maxLength: 300 }), (b, steps) => {
      const cc = new Ledbat(b)
      let now = 0
      for (const { dt, e } of steps) {
        now += dt
        if (e.t === 'd') cc.onDelivered(e.n, now)
        else if (e.t === 'r') cc.onRttSample(e.rtt, now)
        else if (e.t === 'l') cc.onLoss(now - e.back, now)
        else cc.onTimeout(now)
        expect(Number.isInteger(cc.cwnd)).toBe(true)
        expect(cc.cwnd).toBeGreaterThanOrEqual(b.minCwnd)
        expect(cc.cwnd).toBeLessThanOrEqual(b.maxCwnd)
      }
    }), { numRuns: 300 })
  })

  it('property: with 5 % random loss and no queueing, Ledbat keeps a window that covers the BDP, ≥ 4× NewReno\'s', () => {
    const RTT = 50
    fc.assert(fc.property(
      fc.array(fc.noBias(fc.integer({ min: 0, max: 99 })), { minLength: 3000, maxLength: 3000 }),
      (dice) => {
        const ledbat = new Ledbat()
        const reno = new NewReno()
        let losses = 0
        dice.forEach((d, i) => {
          const now = i // one datagram per ms, each answered one RTT after it was requested
          ledbat.onRttSample(RTT, now)
          reno.onRttSample()
          if (d < 5) {
            losses++
            ledbat.onLoss(now - RTT, now)
            reno.onLoss(now - RTT, now)
          } else {
            ledbat.onDelivered(1, now)
            reno.onDelivered(1)
          }
        })
        expect(losses).toBeGreaterThan(0.02 * dice.length) // about 5 %
        expect(losses).toBeLessThan(0.08 * dice.length)
        expect(ledbat.queueDelay).toBe(0)
        // one datagram per ms for RTT ms: a window of RTT datagrams keeps the path full
        expect(ledbat.cwnd).toBeGreaterThanOrEqual(RTT)
        expect(ledbat.cwnd).toBeGreaterThanOrEqual(4 * reno.cwnd)
      }
    ), { numRuns: 50 })
  })
})
