import { describe, expect, it } from 'vitest'
import { bitfieldHas, PieceScheduler } from '../../src/node/piece-scheduler.js'
import { Prng } from '../../src/transport/prng.js'

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)

/** A bitfield (most significant bit first) with exactly `pieces` set. */
function bits (count: number, pieces: number[]): Uint8Array {
  const b = new Uint8Array(Math.ceil(count / 8))
  for (const p of pieces) b[p >> 3]! |= 0x80 >> (p & 7)
  return b
}

/** A swarm view: owners 1..n partial with the given pieces; random-first off unless asked. */
function swarm (count: number, have: Record<number, number[]>, init: { randomFirst?: number, seed?: number, maxDuplicates?: number } = {}): PieceScheduler {
  const prng = new Prng(init.seed ?? 1)
  const s = new PieceScheduler(range(0, count), [], { randomFirst: init.randomFirst ?? 0, random: () => prng.next(), maxDuplicates: init.maxDuplicates })
  for (const [owner, pieces] of Object.entries(have)) s.setBitfield(Number(owner), bits(count, pieces))
  return s
}

describe('bitfields', () => {
  it('bit i is bit (7 - i % 8) of byte i / 8, and bits past the end are unset', () => {
    const b = bits(12, [0, 7, 8, 11])
    expect([...b]).toEqual([0b1000_0001, 0b1001_0000])
    expect(range(0, 16).filter((i) => bitfieldHas(b, i))).toEqual([0, 7, 8, 11])
    expect(bitfieldHas(b, 100)).toBe(false)
  })
})

describe('PieceScheduler: rarest first', () => {
  it('availability counts the partial owners that have each piece', () => {
    const s = swarm(6, { 1: [0, 1, 2], 2: [1, 2], 3: [2] })
    expect(range(0, 6).map((p) => s.availabilityOf(p))).toEqual([1, 2, 3, 0, 0, 0])
    s.lacks(3, 2)
    expect(s.availabilityOf(2)).toBe(2)
    s.removeOwner(1)
    expect(range(0, 6).map((p) => s.availabilityOf(p))).toEqual([0, 1, 1, 0, 0, 0])
  })

  it('a complete owner that refuses a piece (a super-seed) is asked only for the pieces it still gives', () => {
    const s = new PieceScheduler(range(0, 4), [], { randomFirst: 0 })
    s.addOwner(9, true)
    expect(s.ownerHas(9, 2)).toBe(true)
    s.lacks(9, 2)
    s.lacks(9, 0)
    expect(range(0, 4).map((p) => s.ownerHas(9, p))).toEqual([false, true, false, true])
    expect(range(0, 4).map((p) => s.availabilityOf(p))).toEqual([0, 1, 0, 1])
    const picks = [s.next(9), s.next(9), s.next(9)]
    expect(picks.slice(0, 2).sort()).toEqual([1, 3])
    expect(picks[2]).toBeUndefined()
  })

  it('an owner gives its rarest piece first, and only pieces it has', () => {
    const s = swarm(6, { 1: [0, 1, 2, 3], 2: [1, 2, 3], 3: [2, 3], 4: [3] })
    // For owner 1: piece 0 (1 copy) < 1 (2) < 2 (3) < 3 (4).
    expect([s.next(1), s.next(1), s.next(1), s.next(1)]).toEqual([0, 1, 2, 3])
    // Owner 4 has only piece 3, which owner 1 is fetching; pieces 4 and 5 are not started (nobody
    // has them yet), so this is not the end game: owner 4's upload is not spent on a duplicate.
    expect(s.next(4)).toBeUndefined()
  })

  it('end game begins only once every missing piece is in flight, and then wakes the idle owners', () => {
    const s = swarm(6, { 1: [0, 1, 2, 3], 4: [3] })
    expect([s.next(1), s.next(1), s.next(1), s.next(1)].sort()).toEqual([0, 1, 2, 3])
    expect(s.next(4)).toBeUndefined()
    // A new owner has the two pieces nobody had: once it fetches them, everything is in flight.
    s.setBitfield(5, bits(6, [4, 5]))
    expect([s.next(5), s.next(5)].sort()).toEqual([4, 5])
    expect(s.next(4)).toBe(3)
    expect(s.fetchersOf(3).sort()).toEqual([1, 4])
    // A piece back in the pool ends the end game again: owner 1 has nothing to duplicate then.
    s.fail(4, 5)
    expect(s.next(1)).toBeUndefined()
    expect(s.next(5)).toBe(4)
  })

  it('ties between equally rare pieces are broken at random, each about equally often', () => {
    const counts = new Map<number, number>()
    for (let seed = 0; seed < 2000; seed++) {
      const s = swarm(8, { 1: [2, 4, 6], 2: [0] }, { seed })
      const p = s.next(1) as number
      counts.set(p, (counts.get(p) ?? 0) + 1)
    }
    expect([...counts.keys()].sort()).toEqual([2, 4, 6])
    for (const n of counts.values()) expect(n).toBeGreaterThan(2000 / 3 * 0.85)
  })

  it('the first randomFirst picks are random, not rarest', () => {
    // Piece 0 is the rarest; with random first, other pieces come first in most runs.
    let rarestFirst = 0
    for (let seed = 0; seed < 200; seed++) {
      const s = swarm(10, { 1: range(0, 10), 2: range(1, 10), 3: range(1, 10) }, { seed, randomFirst: 1 })
      if (s.next(1) === 0) rarestFirst++
    }
    expect(rarestFirst).toBeLessThan(50) // about 1 in 10 by chance
    // Once a piece is done, rarest first takes over.
    const s = swarm(10, { 1: range(0, 10), 2: range(1, 10), 3: range(1, 10) }, { randomFirst: 1 })
    const first = s.next(1) as number
    s.complete(first, 1)
    expect(s.next(1)).toBe(first === 0 ? s.next(1) : 0)
  })

  it('a complete owner among partial ones can give every piece, rarest first', () => {
    const t = swarm(4, { 2: [0, 1], 3: [0] })
    t.addOwner(9, true)
    const order = [t.next(9), t.next(9), t.next(9), t.next(9)]
    expect(new Set(order.slice(0, 2))).toEqual(new Set([2, 3]))
    expect(order.slice(2)).toEqual([1, 0])
  })

  it('S/N shares while every owner is complete; a partial owner joining switches to rarest first', () => {
    const s = new PieceScheduler(range(0, 8), [1, 2], { randomFirst: 0, random: () => 0.5 })
    expect(s.usesRanges).toBe(true)
    expect(s.next(1)).toBe(0)
    expect(s.next(2)).toBe(4)
    s.setBitfield(3, bits(8, [5, 6]))
    expect(s.usesRanges).toBe(false)
    // Owner 1 now takes the rarest it has: 1, 2, 3 and 7 have no copy besides the complete owners.
    const next = s.next(1) as number
    expect([1, 2, 3, 7]).toContain(next)
    expect(s.next(3)).toBeOneOf([5, 6])
  })

  it('a piece returned by a failed fetch goes to an owner that has it, not to one that lacks it', () => {
    const s = swarm(4, { 1: [0, 1], 2: [1] })
    expect(s.next(1)).toBe(0)
    s.fail(0, 1)
    expect(s.next(2)).toBe(1)
    expect(s.next(1)).toBe(0)
  })

  it('end game: with nothing unstarted left, an owner duplicates a piece it has that another is fetching', () => {
    const s = swarm(2, { 1: [0, 1], 2: [0, 1] }, { maxDuplicates: 2 })
    const a = s.next(1) as number
    const b = s.next(1) as number
    expect(new Set([a, b])).toEqual(new Set([0, 1]))
    const dup = s.next(2) as number
    expect([0, 1]).toContain(dup)
    expect(s.fetchersOf(dup).sort()).toEqual([1, 2])
    expect(s.complete(dup, 2)).toEqual([1]) // the caller cancels owner 1's copy
  })
})
