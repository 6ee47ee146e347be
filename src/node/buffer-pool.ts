import { DIRECT_IO_ALIGN_BYTES } from '../../configs.js'
import { nativeAddon } from '../transport/native-addon.js'

const WASM_PAGE_BYTES = 64 * 1024
// The one part of the WebAssembly API used here; the project's TypeScript libs do not declare it.
declare const WebAssembly: { Memory: new (d: { initial: number, maximum: number, shared?: boolean }) => { buffer: ArrayBuffer | SharedArrayBuffer } }

/** Buffers whose address and length suit O_DIRECT (see isDirectIoReady). */
const aligned = new WeakSet<Uint8Array>()

/** True when `buf` starts on a DIRECT_IO_ALIGN_BYTES boundary, so the kernel can write it straight to the disk. */
export const isDirectIoReady = (buf: Uint8Array): boolean => aligned.has(buf) && buf.length % DIRECT_IO_ALIGN_BYTES === 0

/**
 * Reuses piece buffers. A download goes through a buffer per piece, hundreds of megabytes of
 * them; allocating each afresh costs page faults for new memory and, as external memory, extra
 * major collections of the V8 heap. Only buffers of the pool's size are kept, at most `maxFree`.
 *
 * The first `maxFree` buffers are carved from one page-aligned slab, so they can be written with
 * O_DIRECT. JavaScript cannot ask for aligned memory or read an address; a WebAssembly memory is
 * the one allocation that is page-aligned by construction. It is a shared one when the native
 * addon can copy into it (copyBytes): the hash worker then reads a piece where it was received,
 * instead of the receiving thread copying it into a buffer lent to the worker. Without the addon
 * it is not: V8 copies into shared memory element by element, and receiving into it cost the main
 * thread 60 ms more per 256 MB than the lent copy saves.
 */
export class BufferPool {
  private readonly free: Buffer[] = []
  private slab: Buffer | undefined
  private carved = 0

  constructor (readonly size: number, private readonly maxFree: number) {}

  /** A buffer of `length` bytes with arbitrary contents. */
  take (length: number): Buffer {
    if (length !== this.size) return Buffer.allocUnsafeSlow(length)
    // Its own memory, never a slice of Node's shared slab, so it can be kept and reused whole.
    return this.free.pop() ?? this.carve() ?? Buffer.allocUnsafeSlow(length)
  }

  /** Hands a buffer back. The caller must hold no reference to it any more. */
  give (buf: Buffer): void {
    if (buf.length !== this.size || this.free.length >= this.maxFree) return
    const ownMemory = buf.byteOffset === 0 && buf.buffer.byteLength === this.size
    if (ownMemory || (this.slab !== undefined && buf.buffer === this.slab.buffer)) this.free.push(buf)
  }

  get freeCount (): number { return this.free.length }

  private carve (): Buffer | undefined {
    if (this.size % DIRECT_IO_ALIGN_BYTES !== 0 || this.carved >= this.maxFree) return undefined
    this.slab ??= alignedSlab(this.size * this.maxFree)
    if (this.slab === undefined) return undefined
    const buf = this.slab.subarray(this.carved * this.size, (this.carved + 1) * this.size)
    this.carved++
    aligned.add(buf)
    return buf
  }
}

/**
 * Copies `source[sourceStart, sourceEnd)` into `target` at `targetStart`, as Buffer.copy does (both
 * ranges must fit; into shared memory one that does not throws a RangeError), at memcpy speed also
 * into shared memory. Returns the bytes copied.
 */
export function copyBytes (target: Buffer, targetStart: number, source: Buffer, sourceStart: number, sourceEnd: number): number {
  const copy = target.buffer instanceof SharedArrayBuffer ? nativeAddon().copyBytes : undefined
  if (copy === undefined) return source.copy(target, targetStart, sourceStart, sourceEnd)
  const copied = copy(target, targetStart, source, sourceStart, sourceEnd)
  if (copied < 0) throw new RangeError(`copyBytes: ${sourceEnd - sourceStart} bytes at ${targetStart} do not fit a target of ${target.length} (errno ${-copied})`)
  return copied
}

function alignedSlab (bytes: number): Buffer | undefined {
  const pages = Math.ceil(bytes / WASM_PAGE_BYTES)
  try {
    const shared = nativeAddon().copyBytes !== undefined
    const slab = Buffer.from(new WebAssembly.Memory({ initial: pages, maximum: pages, shared }).buffer)
    // Its pages are first touched by the receiving thread, early in a download, while the window
    // opens: on this project's VM 24 MB of 4 KiB pages took that thread 66-90 ms, in huge pages 3-57.
    nativeAddon().adviseHugePages?.(slab)
    return slab
  } catch {
    // Out of address space for it, or no WebAssembly: plain buffers still work, written through the page cache.
    return undefined
  }
}
