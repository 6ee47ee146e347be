import { TokenBucket } from './transport/token-bucket.js'

/**
 * Lets log records through at a bounded rate (a burst, then `perSecond`) and counts the rest.
 * Anyone can make a process log by sending it garbage; without this, a flood of bad datagrams
 * becomes a flood of disk writes. The burst keeps the first few records of an incident whole.
 */
export class LogThrottle {
  private readonly bucket: TokenBucket
  private suppressed = 0

  constructor (perSecond: number, burst: number, now?: () => number) {
    this.bucket = new TokenBucket(perSecond, burst, now)
  }

  /** The number of records suppressed since the last one let through, or undefined to stay quiet. */
  admit (): number | undefined {
    if (this.bucket.delayFor(1) > 0) {
      this.suppressed++
      return undefined
    }
    this.bucket.take(1)
    const suppressed = this.suppressed
    this.suppressed = 0
    return suppressed
  }
}
