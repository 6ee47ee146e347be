import { abortError } from '../transport/errors.js'

/**
 * A pool of bytes shared by everything that buffers received data (piece buffers of every
 * download), so the node's memory for receive state has a hard ceiling however many downloads and
 * owners there are. Waiters are served in arrival order.
 */
export class ByteBudget {
  private readonly waiters: Array<{ bytes: number, resolve: () => void }> = []

  constructor (private available: number) {}

  get free (): number { return this.available }

  async acquire (bytes: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted === true) throw abortError(signal)
    if (this.waiters.length === 0 && bytes <= this.available) {
      this.available -= bytes
      return
    }
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        bytes,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort)
          resolve()
        }
      }
      const onAbort = (): void => {
        const at = this.waiters.indexOf(waiter)
        if (at >= 0) this.waiters.splice(at, 1)
        reject(abortError(signal as AbortSignal))
        this.grant()
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiters.push(waiter)
    })
  }

  release (bytes: number): void {
    this.available += bytes
    this.grant()
  }

  private grant (): void {
    for (;;) {
      const next = this.waiters[0]
      if (next === undefined || next.bytes > this.available) return
      this.waiters.shift()
      this.available -= next.bytes
      next.resolve()
    }
  }
}
