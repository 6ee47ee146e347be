import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { HASH_WORKER_SHARED_MEMORIES } from '../../configs.js'
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

  it('a job asked for in the same turn as a close goes to the next worker, not with the closed one', async () => {
    hasher = new HashWorker()
    const before = randomBytes(300_000)
    const pending = hasher.sha256(before)
    const closed = hasher.close()
    const after = randomBytes(200_000)
    const next = hasher.sha256(after)
    expect((await pending).equals(sha256(before))).toBe(true)
    expect((await next).equals(sha256(after))).toBe(true)
    await closed
  })

  it('answers pieces asked for together, each with its own digest, whichever way each is sent', async () => {
    hasher = new HashWorker()
    const memory = Buffer.from(new SharedArrayBuffer(64 * 1024))
    randomBytes(memory.length).copy(memory)
    const pieces: Buffer[] = [memory.subarray(0, 1000), randomBytes(5000), memory.subarray(1000, 40_000), randomBytes(1)]
    const digests = await Promise.all(pieces.map(async (p) => await (hasher as HashWorker).sha256(p)))
    digests.forEach((d, i) => expect(d.toString('hex')).toBe(sha256(Buffer.from(pieces[i] as Buffer)).toString('hex')))
  })

  it('holds only the most recently used shared memories, and shares one again when it is used after it was let go', async () => {
    hasher = new HashWorker()
    const memories = Array.from({ length: HASH_WORKER_SHARED_MEMORIES + 2 }, (_, i) => Buffer.from(new SharedArrayBuffer(8192)).fill(i + 1))
    for (const m of memories) expect((await (hasher as HashWorker).sha256(m)).equals(sha256(Buffer.from(m)))).toBe(true)
    expect(hasher.sharedMemories).toBe(HASH_WORKER_SHARED_MEMORIES)
    // The first was let go of; asked for in the same batch as the newest ones, it is shared again.
    const again = await Promise.all([memories[0], memories[memories.length - 1], memories[1]].map(async (m) => await (hasher as HashWorker).sha256(m as Buffer)))
    expect(again.map((d) => d.toString('hex'))).toEqual([1, memories.length, 2].map((v) => sha256(Buffer.alloc(8192, v)).toString('hex')))
    expect(hasher.sharedMemories).toBe(HASH_WORKER_SHARED_MEMORIES)
  })

  it('a job for a shared memory the worker does not hold fails over to hashing in place, never to a wrong digest', async () => {
    hasher = new HashWorker()
    await hasher.sha256(randomBytes(100)) // the worker runs, and holds no shared memory
    const memory = Buffer.from(new SharedArrayBuffer(4096)).fill(3)
    // As if this side believed the worker held it (a bug): the worker must not hash some other bytes.
    const held = (hasher as unknown as { memoryIds: Map<SharedArrayBuffer, number> }).memoryIds
    held.set(memory.buffer as SharedArrayBuffer, 999)
    expect((await hasher.sha256(memory)).equals(sha256(Buffer.alloc(4096, 3)))).toBe(true)
  })

  it('keeps no more lent buffers for reuse than its byte limit', async () => {
    hasher = new HashWorker(300 * 1024)
    await Promise.all(Array.from({ length: 6 }, async () => await (hasher as HashWorker).sha256(randomBytes(256 * 1024))))
    expect(hasher.spareBytes).toBeLessThanOrEqual(300 * 1024)
    expect(hasher.spareBytes).toBe(256 * 1024)
  })

  it('hashes pieces in shared memory where they lie, at any offset, lending no buffer', async () => {
    hasher = new HashWorker()
    const memory = Buffer.from(new SharedArrayBuffer(1024 * 1024))
    randomBytes(memory.length).copy(memory)
    const pieces = [memory.subarray(0, 256 * 1024), memory.subarray(256 * 1024 + 13, 700 * 1024), memory.subarray(1024 * 1024 - 1)]
    const digests = await Promise.all(pieces.map(async (p) => await (hasher as HashWorker).sha256(p)))
    digests.forEach((d, i) => expect(d.toString('hex')).toBe(sha256(Buffer.from(pieces[i] as Buffer)).toString('hex')))
    expect(hasher.spareBytes).toBe(0)
    // The worker reads the memory as it is now, not a copy it was given earlier.
    memory.fill(7, 0, 256 * 1024)
    expect((await hasher.sha256(pieces[0] as Buffer)).equals(sha256(Buffer.alloc(256 * 1024, 7)))).toBe(true)
  })

  it('hashes a second shared memory apart from the first', async () => {
    hasher = new HashWorker()
    const a = Buffer.from(new SharedArrayBuffer(4096)).fill(1)
    const b = Buffer.from(new SharedArrayBuffer(4096)).fill(2)
    const [da, db] = await Promise.all([hasher.sha256(a), hasher.sha256(b)])
    expect(da?.equals(sha256(Buffer.alloc(4096, 1)))).toBe(true)
    expect(db?.equals(sha256(Buffer.alloc(4096, 2)))).toBe(true)
  })
})
