import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { PieceScheduler } from '../../src/node/piece-scheduler.js'

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)

/** Calls next(owner) n times and returns what it gave. */
function take (s: PieceScheduler, owner: number, n: number): Array<number | undefined> {
  return Array.from({ length: n }, () => s.next(owner))
}

describe('PieceScheduler: initial split', () => {
  it('with pieces 0..99 and 4 owners, each owner starts at the head of its S/N share', () => {
    const s = new PieceScheduler(range(0, 100), [1, 2, 3, 4])
    expect([1, 2, 3, 4].map((o) => s.next(o))).toEqual([0, 25, 50, 75])
    expect(s.owners).toEqual([1, 2, 3, 4])
  })

  it('uneven splits use floor boundaries: 10 pieces over 3 owners -> [0..2], [3..5], [6..9]', () => {
    const s = new PieceScheduler(range(0, 10), [7, 8, 9])
    expect([7, 8, 9].map((o) => s.next(o))).toEqual([0, 3, 6])
    expect(take(s, 7, 2)).toEqual([1, 2])
    expect(take(s, 8, 2)).toEqual([4, 5])
    expect(take(s, 9, 3)).toEqual([7, 8, 9])
  })

  it('shares are of the given (missing) pieces, not of 0..n', () => {
    const missing = [3, 4, 10, 11, 12, 40, 41, 90]
    const s = new PieceScheduler(missing, [1, 2])
    expect(s.next(1)).toBe(3)
    expect(s.next(2)).toBe(12)
    expect(s.remaining).toBe(8)
  })

  it('consecutive next() calls for one owner walk its range in order', () => {
    const s = new PieceScheduler(range(0, 100), [1, 2, 3, 4])
    expect(take(s, 3, 25)).toEqual(range(50, 75))
    expect(s.fetchersOf(60)).toEqual([3])
  })

  it('next() for an owner the scheduler does not know returns undefined', () => {
    const s = new PieceScheduler(range(0, 10), [1])
    expect(s.next(99)).toBeUndefined()
  })

  it('with no owners at the start, the first added owner is offered every piece, once each', () => {
    const s = new PieceScheduler(range(0, 4), [])
    s.addOwner(5)
    expect(take(s, 5, 4).sort()).toEqual([0, 1, 2, 3])
    expect(s.next(5)).toBeUndefined()
  })

  it('no pieces: complete from the start', () => {
    const s = new PieceScheduler([], [1, 2])
    expect(s.isComplete).toBe(true)
    expect(s.remaining).toBe(0)
    expect(s.next(1)).toBeUndefined()
  })
})

describe('PieceScheduler: pool, stealing and removal', () => {
  // Regression (fixed): next() takes from the owner's own share before the pool (takeFrom(own) ?? takeFrom(pool) ...),
  // although the class doc says returned pieces "go to a pool anyone takes from first". A failed piece
  // (or a dropped owner's whole share) is retried only once some owner has exhausted its own share.
  it('a failed piece goes to the pool and is taken next by any owner before its own range', () => {
    const s = new PieceScheduler(range(0, 100), [1, 2, 3, 4])
    expect(s.next(1)).toBe(0)
    expect(s.next(1)).toBe(1)
    s.fail(0, 1)
    expect(s.fetchersOf(0)).toEqual([])
    // owner 2's own range starts at 25, but the pool comes first
    expect(s.next(2)).toBe(0)
    expect(s.next(2)).toBe(25)
    expect(s.fetchersOf(0)).toEqual([2])
  })

  it('a failed piece is released (no fetcher) and served again, before any stealing', () => {
    const s = new PieceScheduler(range(0, 8), [1, 2])
    expect(take(s, 1, 2)).toEqual([0, 1])
    s.fail(0, 1)
    expect(s.fetchersOf(0)).toEqual([])
    expect(s.isDone(0)).toBe(false)
    // owner 1's remaining share is 2..3; then the failed piece, and only then a steal from owner 2's tail (7)
    const got = take(s, 1, 4)
    expect(new Set(got.slice(0, 3))).toEqual(new Set([0, 2, 3]))
    expect(got[3]).toBe(7)
    expect(s.fetchersOf(0)).toEqual([1])
  })

  it('a piece failed by one of two fetchers stays with the other and is not pooled', () => {
    const s = new PieceScheduler([0, 1], [1, 2])
    expect(s.next(1)).toBe(0)
    expect(s.next(2)).toBe(1)
    expect(s.next(1)).toBe(1) // end game duplicate
    s.fail(1, 2)
    expect(s.fetchersOf(1)).toEqual([1])
    // the pool is empty: owner 2 duplicates piece 0 rather than taking 1 from a pool
    expect(s.next(2)).toBe(0)
  })

  // Regression (fixed): with pool-first, failed pieces would be served before the owner's share.
  it('failed pieces are served before the rest of the owner\'s own share', () => {
    const s = new PieceScheduler(range(0, 10), [1])
    take(s, 1, 3)
    s.fail(0, 1)
    s.fail(2, 1)
    expect(new Set(take(s, 1, 2))).toEqual(new Set([0, 2]))
  })

  it('an owner whose range is exhausted steals from the TAIL of the longest other queue', () => {
    const s = new PieceScheduler(range(0, 100), [1, 2, 3, 4])
    take(s, 1, 25) // 0..24: owner 1's range is done
    take(s, 2, 5) // owner 2 has 20 left (30..49)
    take(s, 4, 3) // owner 4 has 22 left (78..99)
    // owner 3 has 25 left (50..74): the longest
    expect(s.next(1)).toBe(74)
    expect(s.next(1)).toBe(73)
    // owner 3 still walks its range from the front
    expect(s.next(3)).toBe(50)
    take(s, 3, 3) // owner 3: 20 left (54..72), owner 4 now longest with 22
    expect(s.next(1)).toBe(99)
  })

  it('stealing prefers the pool: failed pieces come before stolen ones', () => {
    const s = new PieceScheduler(range(0, 8), [1, 2])
    take(s, 1, 4)
    s.fail(2, 1)
    expect(s.next(1)).toBe(2)
    expect(s.next(1)).toBe(7)
  })

  it('removeOwner puts its unstarted pieces in the pool; in-flight ones come back when failed', () => {
    const s = new PieceScheduler(range(0, 100), [1, 2, 3, 4])
    take(s, 2, 3) // 25, 26, 27 in flight
    s.removeOwner(2)
    expect(s.owners).toEqual([1, 3, 4])
    expect(s.next(2)).toBeUndefined()
    // owner 1 gets its own share and the pooled 28..49 before it steals anything from 3 or 4
    const got = take(s, 1, 47)
    expect(new Set(got)).toEqual(new Set([...range(0, 25), ...range(28, 50)]))
    expect([74, 99]).toContain(s.next(1)) // now a steal from the tail of a longest queue (owner 3 or 4, 25 each)
    // the caller fails the removed owner's in-flight pieces: they are served again
    s.fail(26, 2)
    expect(s.fetchersOf(26)).toEqual([])
    expect(take(s, 1, 1)).toEqual([26])
  })

  // Regression (fixed): a dropped owner's share should be picked up at once by the others.
  it('a removed owner\'s share is taken by the others before their own shares', () => {
    const s = new PieceScheduler(range(0, 100), [1, 2, 3, 4])
    take(s, 2, 3)
    s.removeOwner(2)
    expect(s.next(1)).toBe(28)
  })

  it('removeOwner does not pool pieces already done, and an unknown owner is a no-op', () => {
    const s = new PieceScheduler([0, 1, 2, 3], [1])
    s.removeOwner(42)
    s.addOwner(2)
    s.removeOwner(1)
    expect(take(s, 2, 5)).toEqual([0, 1, 2, 3, undefined])
  })

  it('addOwner of a known owner keeps its share', () => {
    const s = new PieceScheduler(range(0, 4), [1, 2])
    s.addOwner(1)
    expect(s.next(1)).toBe(0)
    expect(s.next(1)).toBe(1)
  })
})

describe('PieceScheduler: end game and completion', () => {
  it('when nothing is unstarted, an idle owner duplicates another owner\'s piece, never its own, at most maxDuplicates', () => {
    const s = new PieceScheduler([0, 1, 2], [1, 2, 3], { maxDuplicates: 2 })
    expect([1, 2, 3].map((o) => s.next(o))).toEqual([0, 1, 2])
    // owner 1 is already fetching 0: it gets the lowest piece it is not on
    expect(s.next(1)).toBe(1)
    expect(s.fetchersOf(1).sort()).toEqual([1, 2])
    // owner 1 again: 1 is full and already its, 0 is its own; only 2 is left
    expect(s.next(1)).toBe(2)
    // owner 1 is now on every piece
    expect(s.next(1)).toBeUndefined()
    // owner 2 is on 1; 0 has one fetcher (1), 2 has two (3 and 1)
    expect(s.next(2)).toBe(0)
    // everything has two fetchers: nobody gets anything
    expect(s.next(3)).toBeUndefined()
    expect(s.next(2)).toBeUndefined()
    for (const p of [0, 1, 2]) expect(s.fetchersOf(p)).toHaveLength(2)
  })

  it('end game prefers the piece with the fewest fetchers', () => {
    const s = new PieceScheduler([0, 1, 2], [1, 2, 3, 4], { maxDuplicates: 3 })
    // shares: 1:[], 2:[0], 3:[1], 4:[2] -> owner 1 has nothing of its own and steals
    expect(s.next(2)).toBe(0)
    expect(s.next(3)).toBe(1)
    expect(s.next(4)).toBe(2)
    expect(s.next(1)).toBe(0) // all have one fetcher: the lowest id
    expect(s.next(3)).toBe(2) // 0 has two fetchers, 2 has one
    expect(s.next(4)).toBe(1)
    expect(s.next(2)).toBe(1) // 1 and 2 have 2, 0 has 2 and includes owner 2: lowest of {1, 2}
    expect(s.fetchersOf(1).sort()).toEqual([2, 3, 4])
  })

  it('maxDuplicates = 1 disables end-game duplication', () => {
    const s = new PieceScheduler([0, 1], [1, 2], { maxDuplicates: 1 })
    expect(s.next(1)).toBe(0)
    expect(s.next(2)).toBe(1)
    expect(s.next(1)).toBeUndefined()
  })

  it('complete() returns the other fetchers the first time and undefined the second time', () => {
    const s = new PieceScheduler([0, 1], [1, 2])
    s.next(1) // 0
    s.next(2) // 1
    s.next(2) // duplicates 0
    expect(s.fetchersOf(0).sort()).toEqual([1, 2])
    expect(s.complete(0, 2)).toEqual([1])
    expect(s.isDone(0)).toBe(true)
    expect(s.fetchersOf(0)).toEqual([])
    expect(s.complete(0, 1)).toBeUndefined()
    // a late failure of a done piece does not put it back
    s.fail(0, 1)
    expect(s.complete(1, 2)).toEqual([])
    expect(s.isComplete).toBe(true)
    expect(s.next(1)).toBeUndefined()
    expect(s.next(2)).toBeUndefined()
  })

  it('isComplete and remaining follow completions, counting each piece once', () => {
    const s = new PieceScheduler(range(0, 5), [1])
    expect(s.isComplete).toBe(false)
    expect(s.remaining).toBe(5)
    for (let i = 0; i < 5; i++) {
      const p = s.next(1) as number
      expect(s.isDone(p)).toBe(false)
      s.complete(p, 1)
      s.complete(p, 1)
      expect(s.remaining).toBe(4 - i)
    }
    expect(s.isComplete).toBe(true)
  })

  it('a piece done elsewhere is skipped when its owner reaches it', () => {
    const s = new PieceScheduler(range(0, 4), [1, 2])
    // owner 2 (share 2..3) finishes its share, then steals 1 from owner 1's tail
    s.complete(s.next(2) as number, 2)
    s.complete(s.next(2) as number, 2)
    expect(s.next(2)).toBe(1)
    s.complete(1, 2)
    expect(s.next(1)).toBe(0)
    expect(s.next(1)).toBeUndefined()
  })
})

// ---- property: no piece is ever lost ------------------------------------------------------------

type Op =
  | { t: 'next', o: number, run: number }
  | { t: 'complete', o: number, k: number }
  | { t: 'fail', o: number, k: number }
  | { t: 'remove', o: number }
  | { t: 'add', o: number }

const OWNER_IDS = [1, 2, 3, 4, 5, 6]

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('next' as const), o: fc.constantFrom(...OWNER_IDS), run: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('complete' as const), o: fc.constantFrom(...OWNER_IDS), k: fc.nat(50) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('fail' as const), o: fc.constantFrom(...OWNER_IDS), k: fc.nat(50) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('remove' as const), o: fc.constantFrom(...OWNER_IDS) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('add' as const), o: fc.constantFrom(...OWNER_IDS) }) }
)

describe('PieceScheduler: property', () => {
  it('for any sequence of next/nextRun/complete/fail/removeOwner, driving the owners to completion completes every piece', () => {
    fc.assert(fc.property(
      fc.uniqueArray(fc.nat(300), { maxLength: 60 }),
      fc.uniqueArray(fc.constantFrom(...OWNER_IDS), { minLength: 1, maxLength: 4 }),
      fc.integer({ min: 1, max: 3 }),
      fc.array(opArb, { maxLength: 150 }),
      (pieces, owners, maxDup, ops) => {
        const s = new PieceScheduler(pieces, owners, { maxDuplicates: maxDup })
        const pieceSet = new Set(pieces)
        /** What each present owner is fetching, as the caller tracks it. */
        const inFlight = new Map<number, Set<number>>(owners.map((o) => [o, new Set()]))
        const done = new Set<number>()

        /** next() for run 1, else nextRun(): the run's pieces are adjacent, and each obeys what next() does. */
        const nextFor = (o: number, run = 1): number | undefined => {
          const got = run === 1 ? [s.next(o)].filter((p) => p !== undefined) : s.nextRun(o, run)
          expect(got.length).toBeLessThanOrEqual(run)
          const mine = inFlight.get(o) as Set<number>
          got.forEach((p, i) => {
            expect(p).toBe((got[0] as number) + i)
            expect(pieceSet.has(p)).toBe(true)
            expect(done.has(p)).toBe(false)
            expect(mine.has(p)).toBe(false) // never a piece it already fetches
            mine.add(p)
            expect(s.fetchersOf(p).length).toBeLessThanOrEqual(Math.max(1, maxDup))
          })
          return got[0]
        }
        const completeBy = (o: number, p: number): void => {
          const others = s.complete(p, o)
          inFlight.get(o)?.delete(p)
          if (done.has(p)) {
            expect(others).toBeUndefined()
          } else {
            expect(others).toBeDefined()
            const expected = [...inFlight.entries()].filter(([x, set]) => x !== o && set.has(p)).map(([x]) => x).sort()
            expect([...(others ?? [])].sort()).toEqual(expected)
            // the caller cancels those fetches
            for (const x of others ?? []) inFlight.get(x)?.delete(p)
            done.add(p)
          }
          expect(s.remaining).toBe(pieces.length - done.size)
        }
        const pick = (o: number, k: number): number | undefined => {
          const mine = [...(inFlight.get(o) ?? [])]
          return mine.length === 0 ? undefined : mine[k % mine.length]
        }

        for (const op of ops) {
          const present = inFlight.has(op.o)
          switch (op.t) {
            case 'next':
              if (present) nextFor(op.o, op.run)
              else expect(s.next(op.o)).toBeUndefined()
              break
            case 'complete': {
              const p = pick(op.o, op.k)
              if (p !== undefined) completeBy(op.o, p)
              break
            }
            case 'fail': {
              const p = pick(op.o, op.k)
              if (p !== undefined) {
                s.fail(p, op.o)
                inFlight.get(op.o)?.delete(p)
              }
              break
            }
            case 'remove':
              if (present && inFlight.size > 1) {
                s.removeOwner(op.o)
                // as the downloader does: the removed owner's in-flight pieces are failed
                for (const p of inFlight.get(op.o) ?? []) s.fail(p, op.o)
                inFlight.delete(op.o)
              }
              break
            case 'add':
              if (!present) {
                s.addOwner(op.o)
                inFlight.set(op.o, new Set())
              }
              break
          }
        }

        // drive every remaining owner to completion
        let guard = 0
        while (!s.isComplete) {
          expect(++guard).toBeLessThan(10 * (pieces.length + 10))
          let progressed = false
          for (const [o, mine] of inFlight) {
            for (const p of [...mine]) { completeBy(o, p); progressed = true }
            const p = nextFor(o)
            if (p !== undefined) { completeBy(o, p); progressed = true }
          }
          expect(progressed, 'stuck: pieces remain but no owner gets one').toBe(true)
        }
        expect(done).toEqual(pieceSet)
        expect(s.remaining).toBe(0)
        for (const o of inFlight.keys()) expect(s.next(o)).toBeUndefined()
      }
    ), { numRuns: 300 })
  })
})

describe('PieceScheduler: runs of adjacent pieces', () => {
  it('nextRun takes up to max adjacent pieces from the front of the owner\'s share, each started', () => {
    const s = new PieceScheduler(range(0, 10), [1, 2])
    expect(s.nextRun(1, 4)).toEqual([0, 1, 2, 3])
    expect(s.nextRun(1, 4)).toEqual([4])
    expect(s.fetchersOf(2)).toEqual([1])
    expect(s.nextRun(2, 3)).toEqual([5, 6, 7])
  })

  it('a run stops at a gap in the missing pieces and at a piece someone else has started', () => {
    const s = new PieceScheduler([0, 1, 3, 4, 5], [1])
    expect(s.nextRun(1, 8)).toEqual([0, 1])
    s.addOwner(2)
    expect(s.nextRun(1, 8)).toEqual([3, 4, 5])
  })

  it('a failed run comes back whole, from the pool and on into the share', () => {
    const s = new PieceScheduler(range(0, 8), [1, 2])
    expect(s.nextRun(2, 2)).toEqual([4, 5])
    for (const p of [5, 4]) s.fail(p, 2)
    expect(s.nextRun(2, 4)).toEqual([4, 5, 6, 7])
    expect(s.nextRun(1, 2)).toEqual([0, 1])
    s.fail(1, 1)
    s.fail(0, 1)
    expect(s.nextRun(1, 3)).toEqual([0, 1, 2])
    expect(s.nextRun(1, 3)).toEqual([3])
  })

  it('rarest first (a partial owner is known) hands out single pieces', () => {
    const s = new PieceScheduler(range(0, 8), [1], { random: () => 0.5 })
    s.addOwner(2, false)
    expect(s.usesRanges).toBe(false)
    expect(s.nextRun(1, 4)).toHaveLength(1)
  })

  it('an owner with nothing left gets an empty run', () => {
    const s = new PieceScheduler([0], [1])
    expect(s.nextRun(1, 4)).toEqual([0])
    expect(s.nextRun(1, 4)).toEqual([])
  })
})
