import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { HashWorker, sha256 } from '../../src/node/hash-worker.js'

describe('HashWorker', () => {
  let hasher: HashWorker | undefined
  afterEach(async () => { await hasher?.close() })

  it('gives the same digests as hashing in place, for many pieces at once and of any length', async () => {
    hasher = new HashWorker()
    const pieces = [0, 1, 4096, 256 * 1024, 256 * 1024 + 7, 3 * 1024 * 1024].map((n) => randomBytes(n))
    const digests = await Promise.all(pieces.map(async (p) => await (hasher as HashWorker).sha256(p)))
    digests.forEach((d, i) => expect(d.equals(sha256(pieces[i] as Buffer))).toBe(true))
  })

  it('answers jobs that were out when the worker went away, and starts a new worker for the next', async () => {
    hasher = new HashWorker()
    const pieces = Array.from({ length: 8 }, () => randomBytes(512 * 1024))
    const pending = pieces.map(async (p) => await (hasher as HashWorker).sha256(p))
    await hasher.close()
    const digests = await Promise.all(pending)
    digests.forEach((d, i) => expect(d.equals(sha256(pieces[i] as Buffer))).toBe(true))
    const after = randomBytes(100_000)
    expect((await hasher.sha256(after)).equals(sha256(after))).toBe(true)
  })

  it('keeps no more lent buffers for reuse than its byte limit', async () => {
    hasher = new HashWorker(300 * 1024)
    await Promise.all(Array.from({ length: 6 }, async () => await (hasher as HashWorker).sha256(randomBytes(256 * 1024))))
    expect(hasher.spareBytes).toBeLessThanOrEqual(300 * 1024)
    expect(hasher.spareBytes).toBe(256 * 1024)
  })
})
