/**
 * The bytes of one span that have been covered, as sorted, disjoint [start, end) intervals. A
 * super-seed asks "has every byte of this piece gone out?": an answer sent twice (a re-request
 * after a timeout) must not count twice, or a piece half sent would look whole.
 */
export class CoveredBytes {
  private intervals: Array<[number, number]> = []

  /** Bytes covered so far, each counted once. */
  get bytes (): number { return this.intervals.reduce((sum, [a, b]) => sum + b - a, 0) }

  /** Covers [start, end); overlapping or touching intervals merge. */
  add (start: number, end: number): void {
    if (end <= start) return
    let s = start
    let e = end
    const kept: Array<[number, number]> = []
    for (const [a, b] of this.intervals) {
      if (b < s || a > e) kept.push([a, b])
      else {
        s = Math.min(s, a)
        e = Math.max(e, b)
      }
    }
    kept.push([s, e])
    this.intervals = kept.sort((x, y) => x[0] - y[0])
  }
}
