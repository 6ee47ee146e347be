/**
 * Which piece each owner fetches next. Pure bookkeeping, no I/O.
 *
 * - Start: with N owners, owner i gets the i-th contiguous S/N share of the missing pieces.
 * - Returned pieces (a failed fetch, a bad hash, an owner gone) go to a pool anyone takes from first.
 * - An owner whose share is done steals from the tail of the longest remaining share.
 * - End game: when nothing is left unstarted, an idle owner duplicates a piece another owner is
 *   still fetching (at most `maxDuplicates` fetchers per piece); the first to verify wins.
 */
export class PieceScheduler {
  private readonly queues = new Map<number, number[]>()
  private readonly pool: number[] = []
  private readonly fetchers = new Map<number, Set<number>>()
  private readonly done = new Set<number>()
  private readonly total: number

  constructor (pieces: readonly number[], owners: readonly number[], private readonly maxDuplicates = 2) {
    this.total = pieces.length
    const n = owners.length
    owners.forEach((owner, i) => {
      const from = Math.floor((i * pieces.length) / n)
      const to = Math.floor(((i + 1) * pieces.length) / n)
      this.queues.set(owner, pieces.slice(from, to))
    })
    if (n === 0) this.pool.push(...pieces)
  }

  get isComplete (): boolean { return this.done.size === this.total }
  get remaining (): number { return this.total - this.done.size }
  get owners (): number[] { return [...this.queues.keys()] }
  isDone (piece: number): boolean { return this.done.has(piece) }
  fetchersOf (piece: number): number[] { return [...(this.fetchers.get(piece) ?? [])] }

  addOwner (owner: number): void {
    if (!this.queues.has(owner)) this.queues.set(owner, [])
  }

  /** Drops an owner; its unstarted share goes to the pool. Its in-flight pieces are failed by the caller. */
  removeOwner (owner: number): void {
    const q = this.queues.get(owner)
    if (q === undefined) return
    this.queues.delete(owner)
    this.pool.push(...q.filter((p) => !this.done.has(p)))
  }

  next (owner: number): number | undefined {
    const own = this.queues.get(owner)
    if (own === undefined) return undefined
    const piece = this.takeFrom(this.pool, 'front') ?? this.takeFrom(own, 'front') ?? this.steal(owner) ?? this.duplicate(owner)
    if (piece !== undefined) this.start(piece, owner)
    return piece
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
    if (!this.done.has(piece) && (set === undefined || set.size === 0)) this.pool.unshift(piece)
  }

  private start (piece: number, owner: number): void {
    let set = this.fetchers.get(piece)
    if (set === undefined) this.fetchers.set(piece, set = new Set())
    set.add(owner)
  }

  private takeFrom (q: number[], end: 'front' | 'back'): number | undefined {
    while (q.length > 0) {
      const p = (end === 'front' ? q.shift() : q.pop()) as number
      if (!this.done.has(p) && !this.fetchers.has(p)) return p
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

  private duplicate (owner: number): number | undefined {
    let best: number | undefined
    let bestCount = Infinity
    for (const [piece, set] of this.fetchers) {
      if (set.has(owner) || set.size >= this.maxDuplicates) continue
      if (set.size < bestCount || (set.size === bestCount && piece < (best as number))) {
        best = piece
        bestCount = set.size
      }
    }
    return best
  }
}
