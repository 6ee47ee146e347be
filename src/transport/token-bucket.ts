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
