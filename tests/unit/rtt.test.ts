import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { INITIAL_RTO_MS, MAX_RTO_MS, MIN_RTO_MS } from '../../configs.js'
import { RttEstimator } from '../../src/transport/rtt.js'

describe('RttEstimator', () => {
  it('before any sample: no srtt, no minRtt, rto is the initial RTO from configs', () => {
    const e = new RttEstimator()
    expect(e.srtt).toBeUndefined()
    expect(e.minRtt).toBeUndefined()
    expect(e.rttvar).toBe(0)
    expect(e.rto).toBe(INITIAL_RTO_MS)
    expect(e.smoothedOrInitial).toBe(INITIAL_RTO_MS)
  })

  it('honours a custom initial RTO', () => {
    expect(new RttEstimator({ initialRtoMs: 777 }).rto).toBe(777)
  })

  it('first sample: srtt = R, rttvar = R/2, rto = R + 4*R/2 (RFC 6298 2.2)', () => {
    const e = new RttEstimator()
    e.sample(100)
    expect(e.srtt).toBe(100)
    expect(e.rttvar).toBe(50)
    expect(e.rto).toBe(300)
    expect(e.latestRtt).toBe(100)
    expect(e.smoothedOrInitial).toBe(100)
  })

  it('second sample follows RFC 6298 2.3 with alpha = 1/8, beta = 1/4, using the old srtt for rttvar', () => {
    const e = new RttEstimator()
    e.sample(100)
    e.sample(60)
    // rttvar = 3/4 * 50 + 1/4 * |100 - 60| = 37.5 + 10 = 47.5
    // srtt   = 7/8 * 100 + 1/8 * 60 = 87.5 + 7.5 = 95
    expect(e.rttvar).toBe(47.5)
    expect(e.srtt).toBe(95)
    expect(e.rto).toBe(95 + 4 * 47.5) // 285
    e.sample(200)
    // rttvar = 0.75 * 47.5 + 0.25 * |95 - 200| = 35.625 + 26.25 = 61.875
    // srtt   = 0.875 * 95 + 0.125 * 200 = 83.125 + 25 = 108.125
    expect(e.rttvar).toBeCloseTo(61.875, 10)
    expect(e.srtt).toBeCloseTo(108.125, 10)
    expect(e.rto).toBeCloseTo(108.125 + 247.5, 10)
  })

  it('matches a reference RFC 6298 model over random sample sequences', () => {
    fc.assert(fc.property(fc.array(fc.double({ min: 0, max: 3000, noNaN: true }), { minLength: 1, maxLength: 40 }), (samples) => {
      const e = new RttEstimator({ minRtoMs: 0, maxRtoMs: 1e9 })
      let srtt: number | undefined
      let rttvar = 0
      for (const r of samples) {
        e.sample(r)
        if (srtt === undefined) {
          srtt = r
          rttvar = r / 2
        } else {
          rttvar = (1 - 1 / 4) * rttvar + (1 / 4) * Math.abs(srtt - r)
          srtt = (1 - 1 / 8) * srtt + (1 / 8) * r
        }
      }
      expect(e.srtt).toBeCloseTo(srtt as number, 6)
      expect(e.rttvar).toBeCloseTo(rttvar, 6)
      expect(e.rto).toBeCloseTo((srtt as number) + Math.max(1, 4 * rttvar), 6)
      expect(e.minRtt).toBe(Math.min(...samples))
      expect(e.latestRtt).toBe(samples[samples.length - 1])
    }), { numRuns: 200 })
  })

  it('the variance term is at least the clock granularity G = 1 ms', () => {
    const e = new RttEstimator()
    for (let i = 0; i < 60; i++) e.sample(100)
    // rttvar decays to 50 * 0.75^59 < 0.25, so 4*rttvar < 1 and G wins
    expect(e.rttvar).toBeLessThan(0.25)
    expect(e.srtt).toBe(100)
    expect(e.rto).toBe(101)

    const z = new RttEstimator({ minRtoMs: 0 })
    z.sample(0)
    expect(z.rto).toBe(1)
  })

  it('rto is clamped to [minRtoMs, maxRtoMs] (defaults from configs)', () => {
    const low = new RttEstimator()
    low.sample(1) // 1 + max(1, 2) = 3 ms
    expect(low.rto).toBe(MIN_RTO_MS)

    const high = new RttEstimator()
    high.sample(3000) // 3000 + 6000
    expect(high.rto).toBe(MAX_RTO_MS)

    const custom = new RttEstimator({ minRtoMs: 50, maxRtoMs: 250 })
    custom.sample(10) // 30
    expect(custom.rto).toBe(50)
    custom.sample(1000)
    expect(custom.rto).toBe(250)
  })

  it('backoff doubles rto, capped at maxRtoMs', () => {
    const e = new RttEstimator()
    e.sample(100) // rto 300
    e.backoff()
    expect(e.rto).toBe(600)
    e.backoff()
    expect(e.rto).toBe(1200)
    e.backoff()
    expect(e.rto).toBe(2400)
    e.backoff()
    expect(e.rto).toBe(MAX_RTO_MS)
    for (let i = 0; i < 20; i++) e.backoff()
    expect(e.rto).toBe(MAX_RTO_MS)
  })

  it('backoff applies to the clamped rto and before the first sample too', () => {
    const e = new RttEstimator()
    e.backoff()
    expect(e.rto).toBe(2 * INITIAL_RTO_MS)

    const tiny = new RttEstimator()
    tiny.sample(1) // raw 3 ms, clamped to MIN_RTO_MS
    tiny.backoff()
    expect(tiny.rto).toBe(2 * MIN_RTO_MS)
  })

  it('a new sample resets the backoff', () => {
    const e = new RttEstimator()
    e.sample(100)
    e.backoff()
    e.backoff()
    expect(e.rto).toBe(1200)
    e.sample(100)
    // srtt 100, rttvar 0.75*50 = 37.5: rto = 250, no doubling
    expect(e.rto).toBe(250)
  })

  it('negative, NaN and infinite samples are ignored entirely', () => {
    const e = new RttEstimator()
    e.sample(100)
    e.backoff()
    for (const bad of [-1, -0.001, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) e.sample(bad)
    expect(e.srtt).toBe(100)
    expect(e.rttvar).toBe(50)
    expect(e.minRtt).toBe(100)
    expect(e.latestRtt).toBe(100)
    expect(e.rto).toBe(600) // the backoff was not reset either

    const fresh = new RttEstimator()
    fresh.sample(Number.NaN)
    fresh.sample(-5)
    expect(fresh.srtt).toBeUndefined()
    expect(fresh.minRtt).toBeUndefined()
    expect(fresh.rto).toBe(INITIAL_RTO_MS)
  })

  it('minRtt tracks the minimum sample; latestRtt the last one', () => {
    const e = new RttEstimator()
    e.sample(50)
    expect(e.minRtt).toBe(50)
    e.sample(80)
    expect(e.minRtt).toBe(50)
    e.sample(20)
    expect(e.minRtt).toBe(20)
    e.sample(30)
    expect(e.minRtt).toBe(20)
    expect(e.latestRtt).toBe(30)
    e.sample(0)
    expect(e.minRtt).toBe(0)
  })
})
