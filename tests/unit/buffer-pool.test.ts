import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { DIRECT_IO_ALIGN_BYTES } from '../../configs.js'
import { BufferPool, copyBytes, isDirectIoReady } from '../../src/node/buffer-pool.js'
import { nativeAddon } from '../../src/transport/native-addon.js'

/** Mappings of this process the kernel marks as advised for transparent huge pages (VmFlags "hg"). */
const hugePageAdvised = (): number => readFileSync('/proc/self/smaps', 'utf8').split('\n')
  .filter((line) => line.startsWith('VmFlags:') && line.split(/\s+/).includes('hg')).length
const THP_ADVISABLE = process.platform === 'linux' && nativeAddon().adviseHugePages !== undefined
const NATIVE_COPY = nativeAddon().copyBytes !== undefined

describe('BufferPool', () => {
  it('hands back a returned buffer of its size instead of allocating', () => {
    const pool = new BufferPool(1024, 2)
    const a = pool.take(1024)
    expect(a.length).toBe(1024)
    pool.give(a)
    expect(pool.freeCount).toBe(1)
    expect(pool.take(1024)).toBe(a)
    expect(pool.freeCount).toBe(0)
  })

  it('keeps at most maxFree buffers', () => {
    const pool = new BufferPool(64, 2)
    const bufs = [pool.take(64), pool.take(64), pool.take(64)]
    for (const b of bufs) pool.give(b)
    expect(pool.freeCount).toBe(2)
  })

  it('neither keeps nor hands out buffers of another length (the short last piece of a file)', () => {
    const pool = new BufferPool(64, 4)
    const short = pool.take(10)
    expect(short.length).toBe(10)
    pool.give(short)
    expect(pool.freeCount).toBe(0)
    pool.give(pool.take(64))
    const again = pool.take(10)
    expect(again.length).toBe(10)
    expect(pool.freeCount).toBe(1)
  })

  it('does not keep a view into a larger allocation, which others may still be using', () => {
    const pool = new BufferPool(64, 4)
    const backing = Buffer.alloc(256)
    pool.give(backing.subarray(0, 64))
    pool.give(Buffer.from('x'.repeat(64))) // small Buffers come from Node's shared slab
    expect(pool.freeCount).toBe(0)
  })
})

describe('BufferPool: aligned buffers for O_DIRECT', () => {
  it('carves its first maxFree buffers of an aligned size from one slab, each ready for O_DIRECT', () => {
    const pool = new BufferPool(2 * DIRECT_IO_ALIGN_BYTES, 3)
    const bufs = [pool.take(2 * DIRECT_IO_ALIGN_BYTES), pool.take(2 * DIRECT_IO_ALIGN_BYTES), pool.take(2 * DIRECT_IO_ALIGN_BYTES)]
    for (const b of bufs) expect(isDirectIoReady(b)).toBe(true)
    expect(new Set(bufs.map((b) => b.buffer)).size).toBe(1)
    expect(bufs.map((b) => b.byteOffset)).toEqual([0, 2 * DIRECT_IO_ALIGN_BYTES, 4 * DIRECT_IO_ALIGN_BYTES])
    // Past the slab: plain memory, still usable, not promised aligned.
    const extra = pool.take(2 * DIRECT_IO_ALIGN_BYTES)
    expect(isDirectIoReady(extra)).toBe(false)
    for (const b of bufs) pool.give(b)
    expect(pool.freeCount).toBe(3)
    expect(isDirectIoReady(pool.take(2 * DIRECT_IO_ALIGN_BYTES))).toBe(true)
  })

  it('gives no aligned buffers for a size that is not a multiple of the alignment, nor for the short last piece', () => {
    const odd = new BufferPool(DIRECT_IO_ALIGN_BYTES + 512, 2)
    expect(isDirectIoReady(odd.take(DIRECT_IO_ALIGN_BYTES + 512))).toBe(false)
    const pool = new BufferPool(DIRECT_IO_ALIGN_BYTES, 2)
    expect(isDirectIoReady(pool.take(100))).toBe(false)
    expect(isDirectIoReady(Buffer.alloc(DIRECT_IO_ALIGN_BYTES))).toBe(false)
  })

  it('does not keep a slab buffer of another pool', () => {
    const a = new BufferPool(DIRECT_IO_ALIGN_BYTES, 2)
    const b = new BufferPool(DIRECT_IO_ALIGN_BYTES, 2)
    b.give(a.take(DIRECT_IO_ALIGN_BYTES))
    expect(b.freeCount).toBe(0)
  })

  it.runIf(THP_ADVISABLE)('its slab is advised for huge pages, which a receiving thread then touches at a fault per 2 MiB, not per 4 KiB', () => {
    const before = hugePageAdvised()
    const pool = new BufferPool(DIRECT_IO_ALIGN_BYTES * 256, 16) // a 16 MiB slab
    pool.take(DIRECT_IO_ALIGN_BYTES * 256)
    expect(hugePageAdvised()).toBeGreaterThan(before)
  })

  it.runIf(THP_ADVISABLE)('the hint refuses what is not a buffer, and is a no-op for one smaller than a huge page', () => {
    const advise = nativeAddon().adviseHugePages as (b: unknown) => number
    expect(advise('not a buffer')).toBeLessThan(0)
    expect(advise(Buffer.alloc(4096))).toBe(0)
  })
})

describe('BufferPool: a slab the hash worker can read', () => {
  it.runIf(NATIVE_COPY)('is shared memory when the addon can copy into it, and copyBytes fills it as Buffer.copy would', () => {
    const pool = new BufferPool(DIRECT_IO_ALIGN_BYTES, 4)
    const piece = pool.take(DIRECT_IO_ALIGN_BYTES)
    expect(piece.buffer).toBeInstanceOf(SharedArrayBuffer)
    piece.fill(0)
    const datagram = Buffer.from(Array.from({ length: 300 }, (_, i) => i % 251))
    expect(copyBytes(piece, 1000, datagram, 17, 300)).toBe(283)
    const expected = Buffer.alloc(DIRECT_IO_ALIGN_BYTES)
    datagram.copy(expected, 1000, 17, 300)
    expect(piece.equals(expected)).toBe(true)
    // Only the piece: the next buffer carved from the same slab is untouched.
    const next = pool.take(DIRECT_IO_ALIGN_BYTES)
    next.fill(9)
    expect(copyBytes(piece, DIRECT_IO_ALIGN_BYTES - 3, datagram, 0, 3)).toBe(3)
    expect(next.every((b) => b === 9)).toBe(true)
  })

  it.runIf(NATIVE_COPY)('refuses a copy that would run past either buffer, instead of writing outside it', () => {
    const pool = new BufferPool(DIRECT_IO_ALIGN_BYTES, 2)
    const piece = pool.take(DIRECT_IO_ALIGN_BYTES)
    const neighbour = pool.take(DIRECT_IO_ALIGN_BYTES).fill(5)
    const datagram = Buffer.alloc(100, 1)
    expect(() => copyBytes(piece, DIRECT_IO_ALIGN_BYTES - 10, datagram, 0, 100)).toThrow(RangeError)
    expect(() => copyBytes(piece, 0, datagram, 50, 101)).toThrow(RangeError)
    expect(() => copyBytes(piece, -1, datagram, 0, 10)).toThrow(RangeError)
    expect(() => copyBytes(piece, 0, datagram, 20, 10)).toThrow(RangeError)
    expect(neighbour.every((b) => b === 5)).toBe(true)
  })

  it('copies into plain memory too', () => {
    const target = Buffer.alloc(10)
    expect(copyBytes(target, 2, Buffer.from('abcdef'), 1, 4)).toBe(3)
    expect(target.toString('latin1', 2, 5)).toBe('bcd')
  })
})
