import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  DEFAULT_REORDER_HOLD_MS,
  Impairment,
  ImpairmentSpecError,
  formatImpairment,
  parseImpairment
} from '../../src/transport/impairment.js'
import type { ImpairmentInit } from '../../src/transport/impairment.js'
import { Prng, deriveSeed } from '../../src/transport/prng.js'

function datagram (i: number, size = 4): Buffer {
  const b = Buffer.alloc(Math.max(4, size))
  b.writeUInt32BE(i)
  return b
}

/** Pushes datagrams 0..n-1 and returns the indexes delivered, in delivery order, after draining timers. */
function run (init: ImpairmentInit, n: number): { out: number[], imp: Impairment } {
  const imp = new Impairment(init)
  const out: number[] = []
  const deliver = (d: Buffer): void => { out.push(d.readUInt32BE(0)) }
  for (let i = 0; i < n; i++) imp.push(datagram(i), deliver)
  // Only a final reorder hold can still be pending: let it time out.
  vi.advanceTimersByTime((init.reorderHoldMs ?? DEFAULT_REORDER_HOLD_MS) + 1)
  return { out, imp }
}

afterEach(() => {
  vi.useRealTimers()
})

describe('Prng', () => {
  it('is deterministic per seed and differs between seeds', () => {
    const a = new Prng(42)
    const b = new Prng(42)
    const c = new Prng(43)
    const xs = Array.from({ length: 100 }, () => a.next())
    const ys = Array.from({ length: 100 }, () => b.next())
    const zs = Array.from({ length: 100 }, () => c.next())
    expect(xs).toEqual(ys)
    expect(xs).not.toEqual(zs)
  })

  it('stays in [0, 1) with a mean near 1/2, and int() in range and roughly uniform', () => {
    const p = new Prng(7)
    let sum = 0
    let min = 1
    let max = 0
    const counts = [0, 0, 0, 0, 0, 0]
    for (let i = 0; i < 60_000; i++) {
      const x = p.next()
      sum += x
      if (x < min) min = x
      if (x > max) max = x
      const k = p.int(6)
      counts[k] = (counts[k] ?? 0) + 1
    }
    expect(min).toBeGreaterThanOrEqual(0)
    expect(max).toBeLessThan(1)
    expect(counts.length).toBe(6) // int() never produced an index outside 0..5
    expect(sum / 60_000).toBeGreaterThan(0.49)
    expect(sum / 60_000).toBeLessThan(0.51)
    for (const c of counts) {
      expect(c).toBeGreaterThan(9_000)
      expect(c).toBeLessThan(11_000)
    }
  })

  it('rejects bad seeds and bounds', () => {
    expect(() => new Prng(1.5)).toThrow(RangeError)
    expect(() => new Prng(Number.NaN)).toThrow(RangeError)
    expect(() => new Prng(1).int(0)).toThrow(RangeError)
    expect(() => new Prng(1).int(2.5)).toThrow(RangeError)
  })

  it('deriveSeed gives distinct, reproducible seeds that do not overlap between neighbouring bases', () => {
    expect(deriveSeed(7, 0)).toBe(deriveSeed(7, 0))
    const seeds = new Set<number>()
    for (let base = 0; base < 20; base++) {
      for (let i = 0; i < 20; i++) seeds.add(deriveSeed(base, i))
    }
    expect(seeds.size).toBe(400)
    expect(deriveSeed(7, 1)).not.toBe(deriveSeed(8, 0))
  })
})

describe('parseImpairment', () => {
  it('parses the documented example', () => {
    expect(parseImpairment('loss=5,dup=1,reorder=2,delay=10,jitter=2,rate=10MB/s,queue=256KB,seed=7')).toEqual({
      lossPercent: 5,
      duplicatePercent: 1,
      reorderPercent: 2,
      delayMs: 10,
      jitterMs: 2,
      rateBytesPerSecond: 10_000_000,
      queueBytes: 256_000,
      seed: 7
    })
  })

  it('returns {} for an empty spec and tolerates spaces and a trailing comma', () => {
    expect(parseImpairment('')).toEqual({})
    expect(parseImpairment('   ')).toEqual({})
    expect(parseImpairment(' loss = 5 , dup=1 ,')).toEqual({ lossPercent: 5, duplicatePercent: 1 })
  })

  it('parses percentages, with or without %, including fractions and the bounds', () => {
    expect(parseImpairment('loss=0')).toEqual({ lossPercent: 0 })
    expect(parseImpairment('loss=100')).toEqual({ lossPercent: 100 })
    expect(parseImpairment('loss=2.5%')).toEqual({ lossPercent: 2.5 })
    expect(parseImpairment('dup=.5')).toEqual({ duplicatePercent: 0.5 })
    expect(parseImpairment('reorder=30%')).toEqual({ reorderPercent: 30 })
  })

  it('parses durations in ms (default) or s', () => {
    expect(parseImpairment('delay=10')).toEqual({ delayMs: 10 })
    expect(parseImpairment('delay=10ms')).toEqual({ delayMs: 10 })
    expect(parseImpairment('delay=1.5s')).toEqual({ delayMs: 1500 })
    expect(parseImpairment('jitter=2')).toEqual({ jitterMs: 2 })
    expect(parseImpairment('jitter=0.25ms')).toEqual({ jitterMs: 0.25 })
    expect(parseImpairment('hold=20')).toEqual({ reorderHoldMs: 20 })
  })

  it.each([
    ['500', 500],
    ['500B/s', 500],
    ['500b/s', 500],
    ['10KB/s', 10_000],
    ['10kb/s', 10_000],
    ['10k', 10_000],
    ['10K', 10_000],
    ['10MB/s', 10_000_000],
    ['10mb/s', 10_000_000],
    ['10M', 10_000_000],
    ['10MBps', 10_000_000],
    ['2.5MB/s', 2_500_000],
    ['1GB/s', 1_000_000_000],
    ['1gb/s', 1_000_000_000],
    ['1G', 1_000_000_000],
    ['1KiB/s', 1024],
    ['2MiB/s', 2 * 1024 * 1024],
    ['1mib/s', 1024 * 1024],
    ['1GiB/s', 1024 ** 3],
    ['0', 0]
  ])('parses rate=%s', (value, bytes) => {
    expect(parseImpairment(`rate=${value}`)).toEqual({ rateBytesPerSecond: bytes })
  })

  it.each([
    ['256KB', 256_000],
    ['256kb', 256_000],
    ['64KiB', 65_536],
    ['1M', 1_000_000],
    ['1MiB', 1024 * 1024],
    ['1500', 1500],
    ['1500B', 1500]
  ])('parses queue=%s', (value, bytes) => {
    expect(parseImpairment(`queue=${value}`)).toEqual({ queueBytes: bytes })
  })

  it('parses mtu=, formats it, and rejects zero', () => {
    expect(parseImpairment('mtu=1500')).toEqual({ maxDatagramBytes: 1500 })
    expect(formatImpairment({ maxDatagramBytes: 1500 })).toBe('mtu 1500B')
    expect(() => parseImpairment('mtu=0')).toThrow(ImpairmentSpecError)
  })

  it('drops datagrams larger than maxDatagramBytes and nothing else', () => {
    const imp = new Impairment({ maxDatagramBytes: 100 })
    expect(imp.isNoop).toBe(false)
    const out: number[] = []
    for (const [i, size] of [[0, 100], [1, 101], [2, 50], [3, 9000]] as const) imp.push(datagram(i, size), (d) => out.push(d.readUInt32BE(0)))
    expect(out).toEqual([0, 2])
    expect(imp.stats.dropped).toBe(2)
  })

  it('parses seeds up to 2^32-1', () => {
    expect(parseImpairment('seed=0')).toEqual({ seed: 0 })
    expect(parseImpairment('seed=4294967295')).toEqual({ seed: 4294967295 })
  })

  it.each([
    ['bogus=1', /unknown key "bogus"/],
    ['loss', /expected key=value/],
    ['loss=', /not a non-negative number/],
    ['loss=abc', /not a non-negative number/],
    ['loss=-1', /not a non-negative number/],
    ['loss=101', /more than 100%/],
    ['loss=1e1', /not a non-negative number/],
    ['loss=5x', /unknown unit "x"/],
    ['loss=0x10', /not a non-negative number/],
    ['delay=10min', /unknown unit "min"/],
    ['delay=5000000000', /exceeds/],
    ['rate=10XB/s', /unknown unit "xb\/s"/],
    ['rate=fast', /not a non-negative number/],
    ['queue=10MB/s', /unknown unit/],
    ['queue=0', /at least 1 byte/],
    ['seed=1.5', /non-negative integer/],
    ['seed=-3', /non-negative integer/],
    ['seed=4294967296', /32 bits/],
    ['loss=1,loss=2', /more than once/]
  ])('rejects %s', (spec, message) => {
    let caught: unknown
    try {
      parseImpairment(spec)
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(ImpairmentSpecError)
    expect((caught as Error).name).toBe('ImpairmentSpecError')
    expect((caught as Error).message).toMatch(message)
  })
})

describe('formatImpairment', () => {
  it('says none when nothing impairs', () => {
    expect(formatImpairment({})).toBe('none')
    expect(formatImpairment({ seed: 3, lossPercent: 0, queueBytes: 1000 })).toBe('none')
  })

  it('summarises every setting', () => {
    expect(formatImpairment({ lossPercent: 5, duplicatePercent: 1, reorderPercent: 2, delayMs: 10 }))
      .toBe('loss 5% dup 1% reorder 2% delay 10ms')
    expect(formatImpairment(parseImpairment('loss=5,dup=1,reorder=2,delay=10,jitter=2,rate=10MB/s,queue=256KB,seed=7')))
      .toBe('loss 5% dup 1% reorder 2% delay 10ms jitter 2ms rate 10MB/s queue 256KB seed 7')
    expect(formatImpairment({ rateBytesPerSecond: 1024 * 1024, queueBytes: 1234567 })).toBe('rate 1MiB/s queue 1.23MB')
    expect(formatImpairment({ rateBytesPerSecond: 999 })).toBe('rate 999B/s')
  })
})

describe('Impairment', () => {
  beforeEach(() => {
    vi.useFakeTimers()
  })

  it('is a synchronous pass-through when nothing is configured', () => {
    for (const init of [{}, { seed: 9 }, { lossPercent: 0, queueBytes: 10 }] satisfies ImpairmentInit[]) {
      const imp = new Impairment(init)
      expect(imp.isNoop).toBe(true)
      const got: Buffer[] = []
      const d = datagram(1)
      imp.push(d, x => { got.push(x) })
      expect(got).toEqual([d])
      expect(got[0]).toBe(d)
      expect(imp.stats).toMatchObject({ seen: 1, delivered: 1 })
    }
    for (const init of [{ lossPercent: 1 }, { duplicatePercent: 1 }, { reorderPercent: 1 }, { delayMs: 1 }, { jitterMs: 1 }, { rateBytesPerSecond: 1 }] satisfies ImpairmentInit[]) {
      expect(new Impairment(init).isNoop).toBe(false)
    }
  })

  it('rejects out-of-range settings', () => {
    expect(() => new Impairment({ lossPercent: 101 })).toThrow(RangeError)
    expect(() => new Impairment({ duplicatePercent: -1 })).toThrow(RangeError)
    expect(() => new Impairment({ delayMs: Number.NaN })).toThrow(RangeError)
    expect(() => new Impairment({ queueBytes: 0 })).toThrow(RangeError)
    expect(() => new Impairment({ seed: 0.5 })).toThrow(RangeError)
  })

  it('replays the same delivered sequence for the same seed, and a different one for another seed', () => {
    const init = { lossPercent: 5, duplicatePercent: 3, reorderPercent: 4 }
    const a = run({ ...init, seed: 11 }, 10_000)
    const b = run({ ...init, seed: 11 }, 10_000)
    const c = run({ ...init, seed: 12 }, 10_000)
    expect(a.out.length).toBeGreaterThan(9_000)
    expect(b.out).toEqual(a.out)
    expect(b.imp.stats).toEqual(a.imp.stats)
    expect(c.out).not.toEqual(a.out)
    // Every impairment actually fired, so the comparison above covers all three decisions.
    expect(a.imp.stats.dropped).toBeGreaterThan(0)
    expect(a.imp.stats.duplicated).toBeGreaterThan(0)
    expect(a.imp.stats.reordered).toBeGreaterThan(0)
  })

  it('draws the same random numbers per datagram whichever branches apply', () => {
    // With the same seed, the loss decisions must not depend on whether dup/reorder are enabled.
    const lossOnly = run({ seed: 5, lossPercent: 20 }, 2_000)
    const all = run({ seed: 5, lossPercent: 20, duplicatePercent: 50, reorderPercent: 30 }, 2_000)
    expect([...new Set(all.out)].sort((x, y) => x - y)).toEqual(lossOnly.out)
  })

  it('loses about lossPercent of datagrams', () => {
    const { out, imp } = run({ lossPercent: 5, seed: 3 }, 20_000)
    const rate = imp.stats.dropped / 20_000
    expect(rate).toBeGreaterThanOrEqual(0.04)
    expect(rate).toBeLessThanOrEqual(0.06)
    expect(out.length).toBe(20_000 - imp.stats.dropped)
    expect(imp.stats).toMatchObject({ seen: 20_000, delivered: out.length, duplicated: 0, reordered: 0 })
    // Losses are spread out, not a suffix or prefix.
    expect(out).toEqual([...out].sort((x, y) => x - y))
    expect(out[0]).toBeLessThan(100)
    expect(out[out.length - 1]).toBeGreaterThan(19_900)
  })

  it('duplicates about duplicatePercent of datagrams, back to back', () => {
    const { out, imp } = run({ duplicatePercent: 10, seed: 4 }, 20_000)
    const rate = imp.stats.duplicated / 20_000
    expect(rate).toBeGreaterThan(0.09)
    expect(rate).toBeLessThan(0.11)
    expect(out.length).toBe(20_000 + imp.stats.duplicated)
    expect(imp.stats.delivered).toBe(out.length)
    let twice = 0
    for (let i = 1; i < out.length; i++) if (out[i] === out[i - 1]) twice++
    expect(twice).toBe(imp.stats.duplicated)
    expect(new Set(out).size).toBe(20_000)
  })

  it('reorders about reorderPercent of datagrams by swapping with the next one', () => {
    const { out, imp } = run({ reorderPercent: 10, seed: 5 }, 20_000)
    expect([...out].sort((x, y) => x - y)).toEqual(Array.from({ length: 20_000 }, (_, i) => i))
    let inversions = 0
    for (let i = 1; i < out.length; i++) {
      const prev = out[i - 1] as number
      const cur = out[i] as number
      if (cur < prev) {
        inversions++
        expect(prev - cur).toBe(1)
      }
    }
    expect(inversions).toBe(imp.stats.reordered)
    // A hold lasts one successor, which is never held itself: p / (1 + p) = 9.1% for 10%.
    expect(inversions / 20_000).toBeGreaterThan(0.08)
    expect(inversions / 20_000).toBeLessThan(0.10)
  })

  it('releases a held datagram after reorderHoldMs when nothing follows', () => {
    const imp = new Impairment({ reorderPercent: 100, reorderHoldMs: 30 })
    const got: number[] = []
    imp.push(datagram(1), d => { got.push(d.readUInt32BE(0)) })
    expect(got).toEqual([])
    vi.advanceTimersByTime(29)
    expect(got).toEqual([])
    vi.advanceTimersByTime(1)
    expect(got).toEqual([1])
    expect(imp.stats.reordered).toBe(0)
    imp.push(datagram(2), d => { got.push(d.readUInt32BE(0)) })
    imp.push(datagram(3), d => { got.push(d.readUInt32BE(0)) })
    expect(got).toEqual([1, 3, 2])
    expect(imp.stats.reordered).toBe(1)
  })

  it('delays delivery by delayMs', () => {
    const imp = new Impairment({ delayMs: 50 })
    const got: number[] = []
    imp.push(datagram(1), d => { got.push(d.readUInt32BE(0)) })
    vi.advanceTimersByTime(20)
    imp.push(datagram(2), d => { got.push(d.readUInt32BE(0)) })
    expect(got).toEqual([])
    vi.advanceTimersByTime(29)
    expect(got).toEqual([])
    vi.advanceTimersByTime(1)
    expect(got).toEqual([1])
    vi.advanceTimersByTime(19)
    expect(got).toEqual([1])
    vi.advanceTimersByTime(1)
    expect(got).toEqual([1, 2])
    expect(imp.stats).toMatchObject({ seen: 2, delivered: 2 })
  })

  it('adds jitter uniformly within [delayMs, delayMs + jitterMs]', () => {
    const imp = new Impairment({ delayMs: 10, jitterMs: 20, seed: 8 })
    let got = 0
    for (let i = 0; i < 1_000; i++) imp.push(datagram(i), () => { got++ })
    vi.advanceTimersByTime(9)
    expect(got).toBe(0)
    vi.advanceTimersByTime(11) // t = 20: about half
    expect(got).toBeGreaterThan(400)
    expect(got).toBeLessThan(600)
    vi.advanceTimersByTime(11) // t = 31: everything (due times round up to the next ms)
    expect(got).toBe(1_000)
  })

  it('serialises through the bottleneck at rateBytesPerSecond', () => {
    const imp = new Impairment({ rateBytesPerSecond: 1000 })
    let got = 0
    for (let i = 0; i < 10; i++) imp.push(datagram(i, 100), () => { got++ })
    expect(got).toBe(0)
    vi.advanceTimersByTime(500)
    expect(got).toBeGreaterThanOrEqual(4)
    expect(got).toBeLessThanOrEqual(6)
    vi.advanceTimersByTime(600)
    expect(got).toBe(10)
    expect(imp.stats.queueDrops).toBe(0)
  })

  it('keeps a high rate exact even though timers have 1 ms resolution', () => {
    // 1200-byte datagrams at 12 MB/s are 0.1 ms each: 10,000 of them take one second.
    const imp = new Impairment({ rateBytesPerSecond: 12_000_000, queueBytes: 100_000_000 })
    let got = 0
    for (let i = 0; i < 10_000; i++) imp.push(datagram(i, 1200), () => { got++ })
    vi.advanceTimersByTime(500)
    expect(got).toBeGreaterThanOrEqual(4_990)
    expect(got).toBeLessThanOrEqual(5_010)
    vi.advanceTimersByTime(501)
    expect(got).toBe(10_000)
  })

  it('drops at the tail when the bottleneck queue is full, and counts it', () => {
    const imp = new Impairment({ rateBytesPerSecond: 1000, queueBytes: 500 })
    const got: number[] = []
    for (let i = 0; i < 10; i++) imp.push(datagram(i, 100), d => { got.push(d.readUInt32BE(0)) })
    expect(imp.stats.queueDrops).toBe(5)
    expect(imp.stats.dropped).toBe(0)
    vi.advanceTimersByTime(200) // two sent: room for two more
    imp.push(datagram(10, 100), d => { got.push(d.readUInt32BE(0)) })
    imp.push(datagram(11, 100), d => { got.push(d.readUInt32BE(0)) })
    imp.push(datagram(12, 100), d => { got.push(d.readUInt32BE(0)) })
    expect(imp.stats.queueDrops).toBe(6)
    vi.advanceTimersByTime(10_000)
    expect(got).toEqual([0, 1, 2, 3, 4, 10, 11])
    expect(imp.stats).toMatchObject({ seen: 13, delivered: 7, queueDrops: 6 })
  })

  it('close() cancels pending timers, drops what is queued, and ignores later pushes', () => {
    const imp = new Impairment({ delayMs: 10, reorderPercent: 100 })
    let got = 0
    imp.push(datagram(1), () => { got++ }) // held
    imp.push(datagram(2), () => { got++ }) // overtakes; both now delayed
    imp.push(datagram(3), () => { got++ }) // held again
    expect(vi.getTimerCount()).toBeGreaterThan(0)
    imp.close()
    expect(vi.getTimerCount()).toBe(0)
    imp.push(datagram(4), () => { got++ })
    vi.advanceTimersByTime(1_000)
    expect(got).toBe(0)
    expect(imp.stats.seen).toBe(3)
  })

  it('does not keep the process alive with its timers', () => {
    vi.useRealTimers()
    // Real timers, observed through the active-resource list so the test needs no private fields.
    const refTimers = (): number => process.getActiveResourcesInfo().filter(r => r === 'Timeout').length
    const before = refTimers()
    const imp = new Impairment({ delayMs: 60_000, reorderPercent: 100, reorderHoldMs: 60_000 })
    imp.push(datagram(1), () => {})
    imp.push(datagram(2), () => {})
    imp.push(datagram(3), () => {})
    // Node lists only ref'd timers as active resources.
    expect(refTimers()).toBe(before)
    imp.close()
  })
})
