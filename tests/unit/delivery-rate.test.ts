import { describe, expect, it } from 'vitest'
import { BTLBW_FILTER_ROUNDS, FULL_PIPE_ROUNDS } from '../../configs.js'
import { BottleneckBandwidth } from '../../src/transport/delivery-rate.js'

/** Delivers `perMs` datagrams every ms for `rounds` rounds of `roundMs`, from `t`; returns the end time. */
function steady (bw: BottleneckBandwidth, perMs: number, rounds: number, roundMs: number, t: number): number {
  for (let i = 0; i < rounds * roundMs; i++) bw.onDelivered(perMs, ++t, roundMs)
  return t
}

describe('BottleneckBandwidth', () => {
  it('has no estimate before a round ends; the first delivery only opens the round', () => {
    const bw = new BottleneckBandwidth()
    bw.onDelivered(1000, 0, 10) // arrived over an unknown time: not counted
    expect(bw.rate).toBe(0)
    for (let t = 1; t < 10; t++) bw.onDelivered(5, t, 10)
    expect(bw.rate).toBe(0)
    bw.onDelivered(5, 10, 10)
    expect(bw.rate).toBe(5) // 50 datagrams in 10 ms
    expect(bw.pipeFull).toBe(false)
  })

  it('is the maximum over the last BTLBW_FILTER_ROUNDS rounds', () => {
    const bw = new BottleneckBandwidth()
    bw.onDelivered(1, 0, 10)
    let t = steady(bw, 8, 1, 10, 0)
    expect(bw.rate).toBe(8)
    t = steady(bw, 2, BTLBW_FILTER_ROUNDS - 1, 10, t)
    expect(bw.rate).toBe(8) // the fast round is still in the window
    steady(bw, 2, 1, 10, t)
    expect(bw.rate).toBe(2) // and now it has aged out
  })

  it('declares the pipe full after FULL_PIPE_ROUNDS rounds without 25 % growth, not while it grows', () => {
    const bw = new BottleneckBandwidth()
    bw.onDelivered(1, 0, 10)
    let t = 0
    for (let r = 0; r < 8; r++) t = steady(bw, 2 ** r, 1, 10, t) // doubling: slow start
    expect(bw.pipeFull).toBe(false)
    t = steady(bw, 128 * 1.2, FULL_PIPE_ROUNDS - 1, 10, t) // +20 %: not growth enough, but not yet 3 rounds
    expect(bw.pipeFull).toBe(false)
    steady(bw, 128 * 1.2, 1, 10, t)
    expect(bw.pipeFull).toBe(true)
    expect(bw.rate).toBeCloseTo(153.6)
  })

  it('an idle gap (a round far longer than asked) does not count against growth', () => {
    const bw = new BottleneckBandwidth()
    bw.onDelivered(1, 0, 10)
    let t = steady(bw, 4, 1, 10, 0)
    for (let i = 0; i < 2 * FULL_PIPE_ROUNDS; i++) {
      t += 100 // nothing to deliver for 100 ms, then one datagram
      bw.onDelivered(1, t, 10)
    }
    expect(bw.pipeFull).toBe(false)
    expect(bw.rate).toBe(4)
    // the same slow rounds at the asked length do
    const busy = new BottleneckBandwidth()
    busy.onDelivered(1, 0, 10)
    steady(busy, 4, 1 + FULL_PIPE_ROUNDS, 10, 0)
    expect(busy.pipeFull).toBe(true)
  })

  it('rescale keeps the rate in bytes when the datagram size changes', () => {
    const bw = new BottleneckBandwidth()
    bw.onDelivered(1, 0, 10)
    steady(bw, 8, 1, 10, 0)
    bw.rescale(4) // datagrams 4 times as large
    expect(bw.rate).toBe(2)
  })
})
