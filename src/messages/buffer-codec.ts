import { MalformedMessageError } from './errors.js'

// ignoreBOM: a leading U+FEFF is content, not a marker to strip; otherwise two wire names would decode alike.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * Reads big-endian fields from a datagram, checking every length against what is left.
 * Every failure is a MalformedMessageError; nothing else escapes.
 */
export class BufferReader {
  private pos: number
  constructor (private readonly buf: Buffer, start = 0) {
    this.pos = start
  }

  get offset (): number { return this.pos }
  get remaining (): number { return this.buf.length - this.pos }

  private need (n: number, what: string): void {
    if (this.remaining < n) throw new MalformedMessageError('truncated', `${what} needs ${n} bytes, ${this.remaining} left`)
  }

  u8 (what: string): number {
    this.need(1, what)
    return this.buf.readUInt8(this.pos++)
  }

  u16 (what: string): number {
    this.need(2, what)
    const v = this.buf.readUInt16BE(this.pos)
    this.pos += 2
    return v
  }

  u32 (what: string): number {
    this.need(4, what)
    const v = this.buf.readUInt32BE(this.pos)
    this.pos += 4
    return v
  }

  /** A u64 that must stay within `max` (and so within Number.MAX_SAFE_INTEGER). */
  u64 (what: string, max: number): number {
    this.need(8, what)
    // Two u32 halves, not a BigInt: every DATA datagram carries one, and the BigInt was an
    // allocation per datagram. Below 2^21 the high half keeps the value exact (a safe integer).
    const high = this.buf.readUInt32BE(this.pos)
    const v = high * 0x1_0000_0000 + this.buf.readUInt32BE(this.pos + 4)
    if (high >= 0x20_0000 || v > max) throw new MalformedMessageError('out-of-bounds', `${what} ${this.buf.readBigUInt64BE(this.pos)} exceeds ${max}`)
    this.pos += 8
    return v
  }

  /** A copy, so the message never aliases the socket's receive buffer. */
  bytes (n: number, what: string): Buffer {
    this.need(n, what)
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + n))
    this.pos += n
    return out
  }

  /** Padding must be zero, so every message has exactly one encoding and carries nothing hidden. */
  zeros (n: number, what: string): void {
    this.need(n, what)
    for (let i = this.pos; i < this.pos + n; i++) {
      if (this.buf[i] !== 0) throw new MalformedMessageError('out-of-bounds', `${what} is not zero`)
    }
    this.pos += n
  }

  /** The rest of the datagram, without copying (used for bulk data on the hot path). */
  rest (): Buffer {
    const out = this.buf.subarray(this.pos)
    this.pos = this.buf.length
    return out
  }

  /** A UTF-8 string with a u8 length prefix, bounded by `maxBytes`. */
  string8 (what: string, maxBytes: number): string {
    const n = this.u8(`${what} length`)
    if (n > maxBytes) throw new MalformedMessageError('out-of-bounds', `${what} is ${n} bytes, limit ${maxBytes}`)
    this.need(n, what)
    let s: string
    try {
      s = utf8.decode(this.buf.subarray(this.pos, this.pos + n))
    } catch {
      throw new MalformedMessageError('bad-utf8', `${what} is not valid UTF-8`)
    }
    this.pos += n
    return s
  }

  end (): void {
    if (this.remaining !== 0) throw new MalformedMessageError('trailing-bytes', `${this.remaining} unexpected trailing bytes`)
  }
}

/** Builds a datagram. Callers pass values already validated; the writer still refuses out-of-range ones. */
export class BufferWriter {
  private readonly chunks: Buffer[] = []
  private size = 0

  private push (b: Buffer): this {
    this.chunks.push(b)
    this.size += b.length
    return this
  }

  u8 (v: number): this {
    const b = Buffer.allocUnsafe(1)
    b.writeUInt8(v)
    return this.push(b)
  }

  u16 (v: number): this {
    const b = Buffer.allocUnsafe(2)
    b.writeUInt16BE(v)
    return this.push(b)
  }

  u32 (v: number): this {
    const b = Buffer.allocUnsafe(4)
    b.writeUInt32BE(v)
    return this.push(b)
  }

  u64 (v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`u64 field out of range: ${v}`)
    const b = Buffer.allocUnsafe(8)
    b.writeBigUInt64BE(BigInt(v))
    return this.push(b)
  }

  bytes (b: Uint8Array): this {
    return this.push(Buffer.from(b))
  }

  string8 (s: string, maxBytes: number): this {
    const b = Buffer.from(s, 'utf8')
    if (b.length > maxBytes || b.length > 255) throw new RangeError(`string of ${b.length} bytes exceeds ${maxBytes}`)
    return this.u8(b.length).push(b)
  }

  finish (): Buffer {
    return Buffer.concat(this.chunks, this.size)
  }
}
