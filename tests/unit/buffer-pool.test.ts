import { describe, expect, it } from 'vitest'
import { BufferPool } from '../../src/node/buffer-pool.js'

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
