/**
 * Seeded pseudo-random numbers for reproducible simulations. Never use this for anything secret:
 * the whole point is that anyone holding the seed can replay the sequence.
 */

const TWO_POW_32 = 4294967296

/**
 * mulberry32 (Tommy Ettinger): 32 bits of state, one multiply-xorshift round per draw. Its period
 * (2^32) and statistical quality are far beyond what per-datagram loss decisions need, and it is
 * cheap enough to call several times per datagram on the hot path.
 */
export class Prng {
  private state: number

  constructor (seed: number) {
    if (!Number.isInteger(seed)) throw new RangeError(`Prng seed must be an integer, got ${seed}`)
    // Any integer is accepted; only its low 32 bits matter, so -1 and 2^32-1 are the same seed.
    this.state = seed >>> 0
  }

  /** Uniform in [0, 1), with 32 bits of resolution. */
  next (): number {
    // `| 0` and Math.imul keep every step in int32 arithmetic, so results are bit-identical on
    // every engine; plain `*` would go through doubles and lose the low bits.
    let t = (this.state = (this.state + 0x6d2b79f5) | 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / TWO_POW_32
  }

  /** Uniform integer in [0, maxExclusive). */
  int (maxExclusive: number): number {
    if (!Number.isInteger(maxExclusive) || maxExclusive < 1 || maxExclusive > TWO_POW_32) {
      throw new RangeError(`Prng.int bound must be an integer in 1..2^32, got ${maxExclusive}`)
    }
    return Math.floor(this.next() * maxExclusive)
  }
}

/**
 * The seed of the `index`-th independent stream under `seed` (murmur3's 32-bit finaliser over
 * seed + index * golden ratio). Plain `seed + index` would make stream 1 of seed 7 the same as
 * stream 0 of seed 8, so two "different" runs would silently share their loss pattern.
 */
export function deriveSeed (seed: number, index: number): number {
  let z = ((seed >>> 0) + Math.imul((index + 1) | 0, 0x9e3779b9)) >>> 0
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
  return (z ^ (z >>> 16)) >>> 0
}
