import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { CoveredBytes } from '../../src/node/covered-bytes.js'

describe('CoveredBytes', () => {
  it('counts overlapping, repeated and touching ranges once', () => {
    const c = new CoveredBytes()
    c.add(0, 10)
    c.add(0, 10)
    expect(c.bytes).toBe(10)
    c.add(20, 30)
    c.add(5, 25)
    expect(c.bytes).toBe(30)
    c.add(30, 40)
    c.add(40, 40)
    expect(c.bytes).toBe(40)
  })

  it('agrees with a byte map for any sequence of ranges', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 60 }))), (ranges) => {
      const c = new CoveredBytes()
      const bytes = new Uint8Array(260)
      for (const [start, length] of ranges) {
        c.add(start, start + length)
        bytes.fill(1, start, start + length)
      }
      expect(c.bytes).toBe(bytes.reduce((a, b) => a + b, 0))
    }))
  })
})
