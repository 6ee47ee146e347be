/**
 * Reuses piece buffers. A download goes through a buffer per piece, hundreds of megabytes of
 * them; allocating each afresh costs page faults for new memory and, as external memory, extra
 * major collections of the V8 heap. Only buffers of the pool's size are kept, at most `maxFree`.
 */
export class BufferPool {
  private readonly free: Buffer[] = []

  constructor (readonly size: number, private readonly maxFree: number) {}

  /** A buffer of `length` bytes with arbitrary contents. */
  take (length: number): Buffer {
    if (length === this.size) {
      const buf = this.free.pop()
      if (buf !== undefined) return buf
    }
    // Its own memory, never a slice of a shared slab, so it can be kept and reused whole.
    return Buffer.allocUnsafeSlow(length)
  }

  /** Hands a buffer back. The caller must hold no reference to it any more. */
  give (buf: Buffer): void {
    if (buf.length === this.size && buf.byteOffset === 0 && buf.buffer.byteLength === this.size && this.free.length < this.maxFree) this.free.push(buf)
  }

  get freeCount (): number { return this.free.length }
}
