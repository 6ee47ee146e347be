import { RANDOM_FIRST_PIECES } from '../../configs.js'

export interface PieceSchedulerInit {
  /** Most owners fetching one piece at once in end game. */
  maxDuplicates?: number
  /** Pieces picked at random before rarest first takes over. */
  randomFirst?: number
  /** Uniform in [0, 1); seeded in tests. */
  random?: () => number
  /** 'sequential' picks the lowest piece an owner has (for comparison with rarest first in the simulator). */
  order?: PieceOrder
}

export type PieceOrder = 'rarest' | 'sequential'

/** Whether bit `piece` is set in a BitTorrent-style bitfield (most significant bit first). */
export function bitfieldHas (bits: Uint8Array, piece: number): boolean {
  return ((bits[piece >> 3] ?? 0) & (0x80 >> (piece & 7))) !== 0
}

/**
 * Which piece each owner fetches next. Pure bookkeeping, no I/O.
 *
 * - Start, when every owner has the whole file: owner i gets the i-th contiguous S/N share of the
 *   missing pieces, and an owner whose share is done steals from the tail of the longest one.
 * - Once a partial owner is known (a swarm), shares are dropped and each pick is the rarest piece
 *   that owner has, by how many known owners have it, ties broken at random; the first
 *   `randomFirst` pieces are picked at random instead, so a newcomer soon has something to trade.
 * - Returned pieces (a failed fetch, a bad hash, an owner gone) go to a pool taken from first.
 * - End game: once every missing piece is being fetched, an owner with nothing left to give
 *   duplicates a piece another owner is still fetching (at most `maxDuplicates` fetchers per
 *   piece); the first to verify wins. Not earlier: in a swarm a partial owner often has nothing
 *   unstarted for us, and a duplicate then spends its upload, which others need, on bytes that
 *   are thrown away (at N = 8 in the simulator, 9 % of what the swarm uploaded).
 */
export class PieceScheduler {
  private readonly queues = new Map<number, number[]>()
  private readonly pool: number[] = []
  private readonly fetchers = new Map<number, Set<number>>()
  private readonly done = new Set<number>()
  private readonly wanted: readonly number[]
  /** Per owner: undefined for a complete owner, else its bitfield. */
  private readonly have = new Map<number, Uint8Array | undefined>()
  /** Per piece: how many partial owners have it (complete owners add the same to every piece). */
  private readonly availability = new Map<number, number>()
  private ranges: boolean
  /**
   * Owners for which next() found nothing, until something that could change that happens (a piece
   * returned, a fetch started, new bits). Many idle workers then ask in O(1), not by a full scan.
   */
  private readonly exhausted = new Set<number>()
  private readonly maxDuplicates: number
  private readonly randomFirst: number
  private readonly random: () => number
  private readonly order: PieceOrder

  constructor (pieces: readonly number[], owners: readonly number[], init: PieceSchedulerInit = {}) {
    this.wanted = [...pieces]
    this.maxDuplicates = init.maxDuplicates ?? 2
    this.randomFirst = init.randomFirst ?? RANDOM_FIRST_PIECES
    this.random = init.random ?? Math.random
    this.order = init.order ?? 'rarest'
    const n = owners.length
    this.ranges = n > 0
    owners.forEach((owner, i) => {
      const from = Math.floor((i * pieces.length) / n)
      const to = Math.floor(((i + 1) * pieces.length) / n)
      this.queues.set(owner, pieces.slice(from, to))
      this.have.set(owner, undefined)
    })
  }

  get isComplete (): boolean { return this.done.size === this.wanted.length }
  get remaining (): number { return this.wanted.length - this.done.size }
  get owners (): number[] { return [...this.have.keys()] }
  /** Whether picks are by S/N shares (every owner complete) rather than rarest first. */
  get usesRanges (): boolean { return this.ranges }
  isDone (piece: number): boolean { return this.done.has(piece) }
  fetchersOf (piece: number): number[] { return [...(this.fetchers.get(piece) ?? [])] }
  availabilityOf (piece: number): number { return this.availability.get(piece) ?? 0 }

  /** Adds an owner: complete, or partial with no pieces known yet (see setBitfield). */
  addOwner (owner: number, complete = true): void {
    this.exhausted.delete(owner)
    if (this.have.has(owner)) {
      if (complete) this.setComplete(owner)
      return
    }
    this.have.set(owner, complete ? undefined : new Uint8Array(0))
    if (!complete) this.leaveRanges()
    if (this.ranges) this.queues.set(owner, [])
  }

  /** A partial owner's current bitfield (bits only ever get set, but any value is accepted). */
  setBitfield (owner: number, bits: Uint8Array): void {
    if (!this.have.has(owner)) this.addOwner(owner, false)
    const old = this.have.get(owner)
    if (old === undefined) return // complete already: nothing to learn
    for (const piece of this.wanted) {
      const was = bitfieldHas(old, piece)
      const is = bitfieldHas(bits, piece)
      if (was === is) continue
      this.availability.set(piece, this.availabilityOf(piece) + (is ? 1 : -1))
      if (is) this.exhausted.delete(owner)
    }
    this.have.set(owner, Uint8Array.from(bits))
  }

  /** The owner turned out not to have `piece` (its bitfield was stale). */
  lacks (owner: number, piece: number): void {
    if (!this.have.has(owner)) return
    let bits = this.have.get(owner)
    if (bits === undefined) {
      // A complete owner that refuses a piece (a super-seed) is from now on one with every piece but those.
      this.leaveRanges()
      this.have.set(owner, new Uint8Array(0))
      bits = new Uint8Array(Math.ceil((this.wanted.reduce((m, p) => Math.max(m, p), -1) + 1) / 8)).fill(0xff)
      this.setBitfield(owner, bits)
    }
    if (!bitfieldHas(bits, piece)) return
    const copy = Uint8Array.from(bits)
    copy[piece >> 3] = (copy[piece >> 3] ?? 0) & ~(0x80 >> (piece & 7))
    this.setBitfield(owner, copy)
  }

  ownerHas (owner: number, piece: number): boolean {
    if (!this.have.has(owner)) return false
    const bits = this.have.get(owner)
    return bits === undefined || bitfieldHas(bits, piece)
  }

  /** Drops an owner; its unstarted share goes to the pool. Its in-flight pieces are failed by the caller. */
  removeOwner (owner: number): void {
    if (!this.have.has(owner)) return
    const bits = this.have.get(owner)
    if (bits !== undefined) this.setBitfield(owner, new Uint8Array(0))
    this.have.delete(owner)
    this.exhausted.delete(owner)
    const q = this.queues.get(owner)
    this.queues.delete(owner)
    if (q !== undefined && q.length > 0) {
      this.pool.push(...q.filter((p) => !this.done.has(p)))
      this.exhausted.clear()
    }
  }

  next (owner: number): number | undefined {
    if (!this.have.has(owner) || this.exhausted.has(owner)) return undefined
    const piece = this.fromPool(owner) ??
      (this.ranges ? this.takeFrom(this.queues.get(owner) ?? [], 'front') ?? this.steal(owner) : this.pick(owner)) ??
      this.duplicate(owner)
    if (piece === undefined) {
      this.exhausted.add(owner)
      return undefined
    }
    this.start(piece, owner)
    return piece
  }

  /**
   * The next piece for this owner and, while picks follow S/N shares, up to `max - 1` more that
   * follow it in the file, from its share or the pool: one fetch then asks for them all, in
   * full-size datagrams across piece boundaries. Rarest first, steals and end game go piece by piece.
   */
  nextRun (owner: number, max: number): number[] {
    const first = this.next(owner)
    if (first === undefined) return []
    const run = [first]
    const q = this.ranges ? this.queues.get(owner) : undefined
    while (q !== undefined && run.length < max) {
      const piece = first + run.length
      if (!this.available(piece)) break
      // Where a failed run's pieces went back (the pool), or where the share goes on.
      const pooled = this.pool.indexOf(piece)
      if (pooled >= 0) this.pool.splice(pooled, 1)
      else if (q[0] === piece) q.shift()
      else break
      this.start(piece, owner)
      run.push(piece)
    }
    return run
  }

  /** Marks a piece verified. Returns the other owners still fetching it (to cancel), or undefined if it was already done. */
  complete (piece: number, owner: number): number[] | undefined {
    const others = this.fetchersOf(piece).filter((o) => o !== owner)
    this.fetchers.delete(piece)
    if (this.done.has(piece)) return undefined
    this.done.add(piece)
    return others
  }

  /** A fetch ended without a verified piece: unless someone else is on it, it is up for grabs again. */
  fail (piece: number, owner: number): void {
    const set = this.fetchers.get(piece)
    set?.delete(owner)
    if (set !== undefined && set.size === 0) this.fetchers.delete(piece)
    if (this.done.has(piece)) return
    if (set === undefined || set.size === 0) {
      if (!this.pool.includes(piece)) this.pool.unshift(piece)
      this.wakeOwnersOf(piece)
    } else if (set.size < this.maxDuplicates) {
      this.wakeOwnersOf(piece)
    }
  }

  private setComplete (owner: number): void {
    const bits = this.have.get(owner)
    if (bits === undefined) return
    this.setBitfield(owner, new Uint8Array(0))
    this.have.set(owner, undefined)
    this.exhausted.delete(owner)
  }

  /** A swarm: shares made for complete owners no longer make sense; rarest first decides. */
  private leaveRanges (): void {
    if (!this.ranges) return
    this.ranges = false
    this.queues.clear()
  }

  private start (piece: number, owner: number): void {
    let set = this.fetchers.get(piece)
    if (set === undefined) this.fetchers.set(piece, set = new Set())
    set.add(owner)
    // The last piece started begins the end game: every idle owner may now duplicate.
    if (set.size === 1 && this.inEndGame) this.exhausted.clear()
    // A piece in flight is one others may duplicate in end game.
    else if (set.size < this.maxDuplicates && this.inEndGame) this.wakeOwnersOf(piece)
  }

  /** Every missing piece is verified or in flight (BitTorrent's end game). */
  private get inEndGame (): boolean {
    return this.wanted.length - this.done.size - this.fetchers.size <= 0
  }

  private wakeOwnersOf (piece: number): void {
    for (const o of this.exhausted) if (this.ownerHas(o, piece)) this.exhausted.delete(o)
  }

  private available (piece: number): boolean {
    return !this.done.has(piece) && !this.fetchers.has(piece)
  }

  /** The first pooled piece this owner can give; pieces it lacks stay for others. */
  private fromPool (owner: number): number | undefined {
    for (let i = 0; i < this.pool.length; i++) {
      const p = this.pool[i] as number
      if (!this.available(p)) {
        this.pool.splice(i--, 1)
        continue
      }
      if (this.ownerHas(owner, p)) {
        this.pool.splice(i, 1)
        return p
      }
    }
    return undefined
  }

  private takeFrom (q: number[], end: 'front' | 'back'): number | undefined {
    while (q.length > 0) {
      const p = (end === 'front' ? q.shift() : q.pop()) as number
      if (this.available(p)) return p
    }
    return undefined
  }

  private steal (thief: number): number | undefined {
    let victim: number[] | undefined
    for (const [owner, q] of this.queues) {
      if (owner !== thief && q.length > 0 && (victim === undefined || q.length > victim.length)) victim = q
    }
    return victim === undefined ? undefined : this.takeFrom(victim, 'back')
  }

  /** Rarest first among the pieces this owner has (random while the node has fewer than randomFirst pieces). */
  private pick (owner: number): number | undefined {
    const sequential = this.order === 'sequential'
    const randomly = !sequential && this.done.size < this.randomFirst
    let best: number | undefined
    let bestAvailability = Infinity
    let ties = 0
    for (const p of this.wanted) {
      if (!this.available(p) || !this.ownerHas(owner, p)) continue
      if (sequential) return p
      const a = randomly ? 0 : this.availabilityOf(p)
      if (a < bestAvailability) {
        best = p
        bestAvailability = a
        ties = 1
      } else if (a === bestAvailability && this.random() * ++ties < 1) {
        // Reservoir sampling: each of the equally rare pieces ends up chosen with equal chance.
        best = p
      }
    }
    return best
  }

  private duplicate (owner: number): number | undefined {
    if (!this.inEndGame) return undefined
    let best: number | undefined
    let bestCount = Infinity
    for (const [piece, set] of this.fetchers) {
      if (set.has(owner) || set.size >= this.maxDuplicates || !this.ownerHas(owner, piece)) continue
      if (set.size < bestCount || (set.size === bestCount && piece < (best as number))) {
        best = piece
        bestCount = set.size
      }
    }
    return best
  }
}
