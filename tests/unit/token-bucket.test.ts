import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { limiterBurst, TokenBucket } from '../../src/transport/token-bucket.js'

/** A bucket on a hand-driven clock (ms). */
function bucket (rate: number, burst: number): { b: TokenBucket, advance: (ms: number) => void } {
  let t = 1_000 // any origin: only differences matter
  const b = new TokenBucket(rate, burst, () => t)
  return { b, advance: (ms) => { t += ms } }
}

describe('TokenBucket', () => {
  it('starts full: up to `burst` bytes may go at once', () => {
    const { b } = bucket(1000, 500)
    expect(b.bytesPerSecond).toBe(1000)
    expect(b.delayFor(500)).toBe(0)
    expect(b.delayFor(1)).toBe(0)
    b.take(300)
    expect(b.delayFor(200)).toBe(0)
    expect(b.delayFor(201)).toBeCloseTo(1, 9) // one byte short at 1000 B/s
    b.take(200)
    expect(b.delayFor(100)).toBeCloseTo(100, 9) // empty: 100 B at 1000 B/s
  })

  it('taking more than is there leaves a debt: delayFor(n) = (debt + n) / rate', () => {
    const { b } = bucket(1000, 500)
    b.take(800) // debt 300
    expect(b.delayFor(100)).toBeCloseTo(400, 9)
    expect(b.delayFor(1)).toBeCloseTo(301, 9)
    b.take(200) // debt 500
    expect(b.delayFor(50)).toBeCloseTo(550, 9)
  })

  it('refills at `rate` over time and never saves up more than `burst`', () => {
    const { b, advance } = bucket(1000, 500)
    b.take(800) // debt 300
    advance(200) // +200
    expect(b.delayFor(100)).toBeCloseTo(200, 9)
    advance(200) // +200: 100 tokens
    expect(b.delayFor(100)).toBe(0)
    expect(b.delayFor(150)).toBeCloseTo(50, 9)
    advance(60_000) // long idle: still only `burst`
    expect(b.delayFor(500)).toBe(0)
    b.take(500)
    expect(b.delayFor(1)).toBeCloseTo(1, 9)
    expect(b.delayFor(500)).toBeCloseTo(500, 9)
    // no time passing means no refill
    expect(b.delayFor(500)).toBeCloseTo(500, 9)
  })

  it('setRate changes the rate from now on (time before it refilled at the old rate)', () => {
    const { b, advance } = bucket(1000, 500)
    b.take(500)
    advance(250) // 250 tokens at the old rate
    b.setRate(4000)
    expect(b.bytesPerSecond).toBe(4000)
    expect(b.delayFor(500)).toBeCloseTo(62.5, 9) // 250 short at 4000 B/s
    advance(62.5)
    expect(b.delayFor(500)).toBeCloseTo(0, 9)
    // and slower again
    b.take(500)
    b.setRate(100)
    expect(b.delayFor(50)).toBeCloseTo(500, 9)
  })

  it('setRate can shrink the burst, dropping saved-up tokens above it', () => {
    const { b, advance } = bucket(1000, 500)
    b.setRate(1000, 100)
    expect(b.delayFor(100)).toBe(0)
    b.take(100)
    expect(b.delayFor(100)).toBeCloseTo(100, 9) // not 0: the 400 other tokens are gone
    advance(10_000)
    b.take(100)
    expect(b.delayFor(1)).toBeCloseTo(1, 9) // refill is capped at the new burst
    // a larger burst is not a gift of tokens: it fills at `rate`
    b.setRate(1000, 1000)
    expect(b.delayFor(1000)).toBeCloseTo(1000, 9)
    advance(600)
    expect(b.delayFor(1000)).toBeCloseTo(400, 9)
  })

  it('delayFor(n) with n > burst waits only for `burst` tokens (the rest goes on debt)', () => {
    const { b, advance } = bucket(1000, 500)
    expect(b.delayFor(5000)).toBe(0) // full bucket: a large send may go now...
    b.take(5000) // ...on a debt of 4500
    expect(b.delayFor(5000)).toBeCloseTo(5000, 9) // repay 4500, then save up 500
    b.take(500)
    advance(100)
    b.take(400) // tokens: -4500 +100 -400... checked below
    expect(b.delayFor(1)).toBeCloseTo(5301, 9)
    const empty = bucket(1000, 500)
    empty.b.take(500)
    expect(empty.b.delayFor(2000)).toBeCloseTo(500, 9) // not 2000
  })

  it('property: waiting delayFor(n) then take(n) for a simulated minute sends ≈ rate × 60 s', () => {
    fc.assert(fc.property(
      fc.integer({ min: 10_000, max: 10_000_000 }), // bytes per second
      fc.double({ min: 0.001, max: 0.5, noNaN: true }), // send size, in seconds' worth of the rate
      fc.double({ min: 0, max: 0.2, noNaN: true }), // minimum burst, in seconds' worth
      (rate, sizeSec, minBurstSec) => {
        const n = Math.max(1, Math.round(rate * sizeSec))
        const { b, advance } = bucket(rate, limiterBurst(rate, rate * minBurstSec))
        let elapsed = 0
        let sent = 0
        for (;;) {
          const d = b.delayFor(n)
          if (!(d >= 0)) throw new Error(`negative delay ${d}`)
          advance(d)
          elapsed += d
          if (elapsed > 60_000) break
          b.take(n)
          sent += n
        }
        const ideal = rate * 60
        expect(Math.abs(sent - ideal) / ideal).toBeLessThan(0.03)
      }
    ), { numRuns: 60 })
  })

  it('rejects a rate that is not positive', () => {
    for (const rate of [0, -1, -1000, Number.NaN]) {
      expect(() => new TokenBucket(rate, 100, () => 0)).toThrow(RangeError)
    }
    expect(() => new TokenBucket(1, 100, () => 0)).not.toThrow()
  })

  it('uses the injected clock, not the wall clock', () => {
    let t = 0
    const b = new TokenBucket(1000, 500, () => t)
    b.take(500)
    expect(b.delayFor(500)).toBeCloseTo(500, 9)
    t = 250
    expect(b.delayFor(500)).toBeCloseTo(250, 9)
  })
})

describe('limiterBurst', () => {
  it('is max(minBurst, rate / 20)', () => {
    expect(limiterBurst(100_000, 1000)).toBe(5000)
    expect(limiterBurst(10_000, 1000)).toBe(1000)
    expect(limiterBurst(20_000, 1000)).toBe(1000)
    expect(limiterBurst(20_020, 1000)).toBe(1001)
    expect(limiterBurst(1_000_000, 76_800)).toBe(76_800)
    fc.assert(fc.property(fc.double({ min: 1, max: 1e12, noNaN: true }), fc.double({ min: 0, max: 1e9, noNaN: true }), (rate, min) => {
      expect(limiterBurst(rate, min)).toBe(Math.max(min, rate / 20))
    }))
  })
})
