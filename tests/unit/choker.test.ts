import { describe, expect, it } from 'vitest'
import { Choker } from '../../src/node/choker.js'
import { Prng } from '../../src/transport/prng.js'

/** A choker on a hand-driven clock, with what each peer has sent us set by the test. */
function setup (opts: { slots?: number, downloading?: boolean, seed?: number, optimisticRounds?: number, idleSlotMs?: number } = {}) {
  const clock = { t: 0 }
  const received = new Map<string, number>()
  const state = { downloading: opts.downloading ?? true }
  const prng = new Prng(opts.seed ?? 7)
  /** The UNCHOKEs the choker asked to send, in order. */
  const told: Array<[string, number]> = []
  const choker = new Choker({
    slots: opts.slots ?? 3,
    interestTimeoutMs: 4_000,
    // Peers in these rounds all ask at one instant; a real one asks continuously.
    idleSlotMs: opts.idleSlotMs ?? 10_000,
    optimisticRounds: opts.optimisticRounds ?? 3,
    receivedFrom: (p) => received.get(p) ?? 0,
    downloading: () => state.downloading,
    random: () => prng.next(),
    onUnchoke: (peer, txid) => told.push([peer, txid]),
    now: () => clock.t
  })
  /** One round: each peer asks, then has given us `gave` bytes (and taken `took`) during it. */
  const round = (gave: Record<string, number>, took: Record<string, number> = {}): void => {
    for (const p of Object.keys(gave)) choker.allows(p)
    for (const [p, n] of Object.entries(gave)) received.set(p, (received.get(p) ?? 0) + n)
    for (const [p, n] of Object.entries(took)) choker.served(p, n)
    clock.t += 2_000
    choker.rechoke()
  }
  return { choker, clock, round, state, told }
}

describe('Choker', () => {
  it('a refused peer that gets a slot at the next round is told, naming the request it was refused; a served one is not', () => {
    const { choker, clock, told } = setup({ slots: 1 })
    expect(choker.allows('a', 1)).toBe(true)
    expect(choker.allows('b', 7)).toBe(false)
    expect(choker.allows('b', 8)).toBe(false)
    expect(told).toEqual([])
    // a stops asking; b keeps asking (and being refused) until the round.
    clock.t += 1_500
    expect(choker.allows('b', 9)).toBe(false)
    clock.t += 3_000
    choker.rechoke()
    expect(choker.state.unchoked).toEqual(['b'])
    expect(told).toEqual([['b', 9]])
    // One refusal earns one UNCHOKE: nothing more at later rounds while b keeps its slot.
    choker.allows('b', 10)
    clock.t += 2_000
    choker.rechoke()
    expect(told).toEqual([['b', 9]])
  })

  it('between rounds, a slot gone quiet goes to a refused peer at once, and that peer is told', () => {
    const { choker, clock, told } = setup({ slots: 1, idleSlotMs: 500 })
    expect(choker.allows('a', 1)).toBe(true)
    expect(choker.allows('b', 2)).toBe(false)
    clock.t += 400
    choker.reassignIdleSlots()
    expect(choker.state.unchoked).toEqual(['a'])
    expect(told).toEqual([])
    clock.t += 200 // a has been quiet for 600 ms
    choker.reassignIdleSlots()
    expect(choker.state.unchoked).toEqual(['b'])
    expect(told).toEqual([['b', 2]])
    // b is owed nothing more, and a quiet slot with nobody refused waiting stays where it is.
    clock.t += 1_000
    choker.reassignIdleSlots()
    expect(choker.state.unchoked).toEqual(['b'])
    expect(told).toEqual([['b', 2]])
  })

  it('a refused peer that takes a free slot by asking again is not told (it knows)', () => {
    const { choker, clock, told } = setup({ slots: 1, idleSlotMs: 500 })
    choker.allows('a', 1)
    expect(choker.allows('b', 2)).toBe(false)
    clock.t += 600
    expect(choker.allows('b', 3)).toBe(true)
    choker.reassignIdleSlots()
    clock.t += 2_000
    choker.rechoke()
    expect(told).toEqual([])
  })

  it('gives free slots at once, up to the limit, then refuses', () => {
    const { choker } = setup({ slots: 2 })
    expect(choker.allows('a')).toBe(true)
    expect(choker.allows('b')).toBe(true)
    expect(choker.allows('c')).toBe(false)
    expect(choker.allows('a')).toBe(true)
    expect(choker.state.unchoked.sort()).toEqual(['a', 'b'])
  })

  it('tit-for-tat: the regular slots go to the peers that sent us the most last round', () => {
    const { choker, round } = setup({ slots: 3 })
    round({ a: 10, b: 500, c: 300, d: 50, e: 1 })
    const { unchoked, optimistic } = choker.state
    expect(unchoked).toHaveLength(3)
    expect(unchoked).toContain('b')
    expect(unchoked).toContain('c')
    // The third slot is optimistic: one of the others.
    expect(['a', 'd', 'e']).toContain(optimistic)
    // Rates are per round, not totals: next round d gives the most.
    round({ a: 0, b: 0, c: 100, d: 900, e: 0 })
    expect(choker.state.unchoked).toEqual(expect.arrayContaining(['d', 'c']))
    if (choker.state.optimistic !== 'b') expect(choker.state.unchoked).not.toContain('b')
  })

  it('the optimistic slot rotates every optimisticRounds rounds and visits every choked peer', () => {
    const { choker, round } = setup({ slots: 2, optimisticRounds: 1, seed: 3 })
    const seen = new Set<string>()
    for (let i = 0; i < 40; i++) {
      round({ a: 1000, b: 0, c: 0, d: 0, e: 0 })
      expect(choker.state.unchoked).toContain('a')
      const o = choker.state.optimistic as string
      expect(o).not.toBe('a')
      seen.add(o)
    }
    expect([...seen].sort()).toEqual(['b', 'c', 'd', 'e'])
  })

  it('keeps the optimistic peer between rotations', () => {
    const { choker, round } = setup({ slots: 2, optimisticRounds: 3 })
    round({ a: 1000, b: 0, c: 0, d: 0 })
    const picks = [choker.state.optimistic]
    round({ a: 1000, b: 0, c: 0, d: 0 })
    picks.push(choker.state.optimistic)
    round({ a: 1000, b: 0, c: 0, d: 0 }) // round 3: rotates
    picks.push(choker.state.optimistic)
    expect(picks[0]).toBe(picks[1])
    expect(picks[2]).not.toBe(picks[1])
  })

  it('a seeding node serves in turns: the peers that have waited go before those it just served', () => {
    const { choker, round, state } = setup({ slots: 3 })
    state.downloading = false
    // a, b and c take the free slots and are served; d and e are choked.
    round({ a: 0, b: 0, c: 0, d: 0, e: 0 }, { a: 10, b: 5000, c: 20 })
    const { unchoked, optimistic } = choker.state
    expect(unchoked).toContain('d')
    expect(unchoked).toContain('e')
    expect(['a', 'b', 'c']).toContain(optimistic)
  })

  it('a seeding node favours, among peers with as many turns, those it serves fastest', () => {
    const { choker, round, state } = setup({ slots: 3 })
    state.downloading = false
    round({ a: 0, b: 0, c: 0, d: 0 }, { a: 10, b: 5000, c: 20 })
    // d has waited (no turn yet); of a, b and c (one turn each), b was served fastest.
    const regular = choker.state.unchoked.filter((p) => p !== choker.state.optimistic)
    expect(regular.sort()).toEqual(['b', 'd'])
  })

  it('a peer unchoked at a rechoke keeps its slot long enough to notice, though its last request was long ago', () => {
    const { choker, round, state, clock } = setup({ slots: 3, idleSlotMs: 500 })
    state.downloading = false
    round({ a: 0, b: 0, c: 0, d: 0, e: 0 }, { a: 10, b: 5000, c: 20 })
    expect(choker.state.unchoked).toContain('d')
    // d last asked a whole round ago (it was choked); its slot is new, so a must not take it yet.
    clock.t += 300
    expect(choker.allows('a')).toBe(choker.state.optimistic === 'a')
    expect(choker.state.unchoked).toContain('d')
  })

  it('peers that stop asking lose their interest and their slot', () => {
    const { choker, round, clock } = setup({ slots: 2 })
    round({ a: 100, b: 50, c: 10 })
    expect(choker.state.interested).toBe(3)
    clock.t += 5_000
    round({ c: 10 })
    expect(choker.state.interested).toBe(1)
    expect(choker.state.unchoked).toEqual(['c'])
  })

  it('the slot of a peer that stopped asking goes to the next peer that asks, without waiting for a round', () => {
    const { choker, clock } = setup({ slots: 2, idleSlotMs: 500 })
    expect(choker.allows('a')).toBe(true)
    expect(choker.allows('b')).toBe(true)
    expect(choker.allows('c')).toBe(false)
    clock.t += 400
    expect(choker.allows('a')).toBe(true)
    expect(choker.allows('c')).toBe(false) // b asked 400 ms ago: still active
    clock.t += 200
    expect(choker.allows('a')).toBe(true)
    expect(choker.allows('c')).toBe(true) // b has been quiet 600 ms: its slot is c's now
    expect(choker.state.unchoked.sort()).toEqual(['a', 'c'])
  })
})
