/**
 * A token bucket in bytes: `rate` bytes per second, up to `burst` bytes saved up. Callers ask how
 * long until `n` bytes may go, then take them; taking more than is there leaves a debt, which
 * keeps a stream of large sends at the average rate without splitting them.
 */
export class TokenBucket {
  private tokens: number
  private last: number

  constructor (private rate: number, private burst: number, private readonly now: () => number = () => performance.now()) {
    if (!(rate > 0)) throw new RangeError(`token bucket rate must be positive, got ${rate}`)
    this.tokens = burst
    this.last = now()
  }

  get bytesPerSecond (): number { return this.rate }

  setRate (rate: number, burst = this.burst): void {
    this.refill()
    if (rate > 0) this.rate = rate
    this.burst = burst
    this.tokens = Math.min(this.tokens, burst)
  }

  /** Milliseconds until `n` bytes may be taken (0 when they may go now). */
  delayFor (n: number): number {
    this.refill()
    const short = Math.min(n, this.burst) - this.tokens
    return short <= 0 ? 0 : (short / this.rate) * 1000
  }

  take (n: number): void {
    this.refill()
    this.tokens -= n
  }

  private refill (): void {
    const t = this.now()
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate)
    this.last = t
  }
}

/** Burst of a rate limiter: enough for smooth sending without letting a long idle period become a flood. */
export function limiterBurst (bytesPerSecond: number, minBurst: number): number {
  return Math.max(minBurst, bytesPerSecond / 20)
}

/**
 * One token bucket per source IP, for counting requests (1 token each). At most `maxAddresses`
 * are remembered (least recently used forgotten first), so a flood from many sources cannot grow it.
 */
export class PerAddressLimiter {
  private readonly buckets = new Map<string, TokenBucket>()

  constructor (private readonly perSecond: number, private readonly burst: number, private readonly maxAddresses: number) {}

  allow (host: string): boolean {
    let b = this.buckets.get(host)
    if (b === undefined) {
      if (this.buckets.size >= this.maxAddresses) this.buckets.delete(this.buckets.keys().next().value as string)
      b = new TokenBucket(this.perSecond, this.burst)
    } else {
      this.buckets.delete(host)
    }
    this.buckets.set(host, b)
    if (b.delayFor(1) > 0) return false
    b.take(1)
    return true
  }
}
