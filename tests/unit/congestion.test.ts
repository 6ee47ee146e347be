import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { INITIAL_CWND_DATAGRAMS, MAX_CWND_DATAGRAMS, MIN_CWND_DATAGRAMS } from '../../configs.js'
import { Ledbat, NewReno } from '../../src/transport/congestion.js'

/** Delivers `n` datagrams one at a time, as acks trickle in. */
function deliverOneByOne (cc: NewReno, n: number): void {
  for (let i = 0; i < n; i++) cc.onDelivered(1)
}

describe('NewReno', () => {
  it('starts at the configured initial window and is named', () => {
    expect(new NewReno().cwnd).toBe(INITIAL_CWND_DATAGRAMS)
    expect(new NewReno({ initialCwnd: 10 }).cwnd).toBe(10)
    expect(new NewReno().name).toBe('newreno')
  })

  it('slow start grows cwnd by the number delivered', () => {
    const cc = new NewReno({ initialCwnd: 10 })
    cc.onDelivered(5)
    expect(cc.cwnd).toBe(15)
    cc.onDelivered(15)
    expect(cc.cwnd).toBe(30)
    deliverOneByOne(cc, 30)
    expect(cc.cwnd).toBe(60) // doubles per window
  })

  it('onLoss halves cwnd', () => {
    const cc = new NewReno({ initialCwnd: 40 })
    cc.onLoss(10, 20)
    expect(cc.cwnd).toBe(20)
  })

  it('onLoss never goes below the minimum window', () => {
    const cc = new NewReno({ initialCwnd: 6, minCwnd: 4 })
    cc.onLoss(1, 2)
    expect(cc.cwnd).toBe(4)
    cc.onLoss(3, 4) // sent after the reduction: reduces again, but not below min
    expect(cc.cwnd).toBe(4)

    const dflt = new NewReno({ initialCwnd: MIN_CWND_DATAGRAMS + 1 })
    dflt.onLoss(1, 2)
    expect(dflt.cwnd).toBe(MIN_CWND_DATAGRAMS)
  })

  it('one reduction per round trip: a loss of a request sent before the reduction is ignored', () => {
    const cc = new NewReno({ initialCwnd: 64 })
    cc.onLoss(100, 200) // reduction at t=200
    expect(cc.cwnd).toBe(32)
    cc.onLoss(150, 210) // sent before 200: same congestion event
    expect(cc.cwnd).toBe(32)
    cc.onLoss(200, 220) // sent at the reduction instant: still the same event
    expect(cc.cwnd).toBe(32)
    cc.onLoss(201, 300) // sent after the reduction: a new event
    expect(cc.cwnd).toBe(16)
    cc.onLoss(250, 310) // before the new reduction at 300
    expect(cc.cwnd).toBe(16)
  })

  it('after a loss the window grows linearly: about one datagram per window delivered', () => {
    const cc = new NewReno({ initialCwnd: 40 })
    cc.onLoss(0, 1)
    expect(cc.cwnd).toBe(20)
    // a whole window in one call is exactly +1
    cc.onDelivered(20)
    expect(cc.cwnd).toBe(21)
    // ten windows' worth, one datagram at a time: ~+10, not the doubling of slow start
    for (let w = 0; w < 10; w++) deliverOneByOne(cc, cc.cwnd)
    expect(cc.cwnd).toBeGreaterThanOrEqual(30)
    expect(cc.cwnd).toBeLessThanOrEqual(31)
  })

  it('onTimeout drops to the minimum window, then slow start runs up to half the old window', () => {
    const cc = new NewReno({ initialCwnd: 64, minCwnd: 4 })
    cc.onTimeout(100)
    expect(cc.cwnd).toBe(4)
    cc.onDelivered(4)
    expect(cc.cwnd).toBe(8) // slow start
    cc.onDelivered(24)
    expect(cc.cwnd).toBe(32) // reached ssthresh = 32
    cc.onDelivered(32)
    expect(cc.cwnd).toBe(33) // congestion avoidance now
    // losses of requests sent before the timeout are the same event
    cc.onLoss(90, 140)
    expect(cc.cwnd).toBe(33)
  })

  it('repeated timeouts stay at the minimum', () => {
    const cc = new NewReno()
    cc.onTimeout(1)
    cc.onTimeout(2)
    cc.onTimeout(3)
    expect(cc.cwnd).toBe(MIN_CWND_DATAGRAMS)
  })

  it('never exceeds maxCwnd, in slow start or congestion avoidance', () => {
    const cc = new NewReno({ initialCwnd: 10, maxCwnd: 50 })
    cc.onDelivered(1000)
    expect(cc.cwnd).toBe(50)
    cc.onLoss(0, 2) // 25, ssthresh 25
    for (let i = 0; i < 100; i++) cc.onDelivered(100)
    expect(cc.cwnd).toBe(50)

    const dflt = new NewReno()
    dflt.onDelivered(10 * MAX_CWND_DATAGRAMS)
    expect(dflt.cwnd).toBe(MAX_CWND_DATAGRAMS)
  })

  it('property: cwnd is always an integer within [min, max] whatever the events', () => {
    const ev = fc.oneof(
      fc.record({ t: fc.constant('d' as const), n: fc.integer({ min: 1, max: 200 }) }),
      fc.record({ t: fc.constant('l' as const), back: fc.integer({ min: 0, max: 50 }) }),
      fc.record({ t: fc.constant('t' as const) })
    )
    fc.assert(fc.property(fc.array(ev, { maxLength: 200 }), (events) => {
      const cc = new NewReno({ initialCwnd: 16, minCwnd: 4, maxCwnd: 300 })
      let now = 0
      for (const e of events) {
        now += 10
        if (e.t === 'd') cc.onDelivered(e.n)
        else if (e.t === 'l') cc.onLoss(now - e.back, now)
        else cc.onTimeout(now)
        expect(Number.isInteger(cc.cwnd)).toBe(true)
        expect(cc.cwnd).toBeGreaterThanOrEqual(4)
        expect(cc.cwnd).toBeLessThanOrEqual(300)
      }
    }), { numRuns: 200 })
  })
})

describe('rescale (the datagram size changed)', () => {
  it.each([
    ['NewReno', (w: number) => new NewReno({ initialCwnd: w })],
    ['Ledbat', (w: number) => new Ledbat({ initialCwnd: w })]
  ] as const)('%s keeps the bytes in flight, within the window bounds', (_name, make) => {
    const grown = make(200)
    grown.rescale(65000 / 1200) // 200 × 1200 B is 3.7 datagrams of 65000 B
    expect(grown.cwnd).toBe(MIN_CWND_DATAGRAMS)
    const shrunk = make(40)
    shrunk.rescale(1200 / 4800) // back to a smaller size: four times as many datagrams
    expect(shrunk.cwnd).toBe(160)
    const capped = make(MAX_CWND_DATAGRAMS)
    capped.rescale(1 / 4)
    expect(capped.cwnd).toBe(MAX_CWND_DATAGRAMS)
  })

  it('NewReno keeps ssthresh in the same bytes too', () => {
    const cc = new NewReno({ initialCwnd: 64 })
    cc.onLoss(0, 1) // ssthresh = window = 32: congestion avoidance from here
    cc.rescale(2)
    expect(cc.cwnd).toBe(16)
    cc.onDelivered(16) // still in congestion avoidance (ssthresh 16): about one datagram per window
    expect(cc.cwnd).toBe(17)
  })
})
