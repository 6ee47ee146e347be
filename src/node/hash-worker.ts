import { createHash } from 'node:crypto'
import { Worker } from 'node:worker_threads'
import { HASH_WORKER_SHARED_MEMORIES, HASH_WORKER_SPARE_BYTES } from '../../configs.js'

/**
 * The worker's whole program. Evaluated from source rather than loaded from a file so that it runs
 * the same from `dist/` and from the TypeScript sources under test, which Node cannot load.
 * Each message is a batch: shared memories to know from now on, jobs (the bytes lent, or a place in
 * a shared memory), then memories to let go of. It answers the batch in one message, giving lent
 * buffers back with the digests.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const memories = new Map()
parentPort.on('message', ({ share, jobs, forget }) => {
  for (const [memoryId, memory] of share) memories.set(memoryId, memory)
  const replies = []
  const transfer = []
  for (const { id, buffer, memoryId, offset, length } of jobs) {
    const memory = buffer ?? memories.get(memoryId)
    // Never a digest of the wrong bytes (a piece would fail and its owner be blamed): fail, and be hashed in place.
    if (memory === undefined) throw new Error('hash job for a shared memory this worker does not hold: ' + memoryId)
    const data = new Uint8Array(memory, buffer !== undefined ? 0 : offset, length)
    const digest = createHash('sha256').update(data).digest()
    const out = digest.buffer.slice(digest.byteOffset, digest.byteOffset + digest.length)
    replies.push({ id, buffer, digest: out })
    transfer.push(out)
    if (buffer !== undefined) transfer.push(buffer)
  }
  for (const memoryId of forget) memories.delete(memoryId)
  parentPort.postMessage(replies, transfer)
})
`

interface Reply { id: number, buffer?: ArrayBuffer, digest: ArrayBuffer }
type JobMessage = { id: number, length: number } & ({ buffer: ArrayBuffer } | { memoryId: number, offset: number })
interface Outbox {
  worker: Worker
  share: Array<[number, SharedArrayBuffer]>
  jobs: JobMessage[]
  forget: number[]
  transfer: ArrayBuffer[]
}
interface Job { resolve: (digest: Buffer) => void, reject: (err: Error) => void }

/** The hash worker died or could not start; its jobs are hashed in place instead. */
export class HashWorkerError extends Error {
  override name = 'HashWorkerError'
}

/**
 * SHA-256 on a worker thread, so the thread that receives datagrams never stops to hash a piece.
 *
 * Why not WebCrypto: on Node 20 `subtle.digest` copies its input into freshly allocated memory on
 * the calling thread, and in a 256 MB loopback download that copy and its job set-up took 28 % of
 * the main thread, more than hashing in place would. Here the piece is copied instead into a buffer
 * that has been lent to the worker before (its pages already mapped), moved to the worker without
 * a copy, and moved back with the digest for the next piece. A piece in shared memory (the piece
 * buffers' slab, src/node/buffer-pool.ts) is not copied at all: the worker is given the memory once
 * and hashes the piece where it lies. It holds the HASH_WORKER_SHARED_MEMORIES most recently used.
 *
 * Jobs asked for in one turn of the event loop (the pieces of one received run) go in one message:
 * each message wakes the worker, and on this project's two cores the wake-up preempted the
 * receiving thread, whose postMessage calls took 72 ms of a 100 MB netlab download, a message per piece.
 */
export class HashWorker {
  private worker: Worker | undefined
  private broken = false
  private nextId = 1
  private readonly jobs = new Map<number, Job>()
  private readonly spare: ArrayBuffer[] = []
  private lentBack = 0
  /** The shared memories the worker holds, least recently used first. */
  private readonly memoryIds = new Map<SharedArrayBuffer, number>()
  private outbox: Outbox | undefined
  private nextMemoryId = 1

  constructor (private readonly maxSpareBytes = HASH_WORKER_SPARE_BYTES) {}

  /** Shared memories the worker holds (it lets go of the ones this side forgets, in the same order). */
  get sharedMemories (): number { return this.memoryIds.size }

  /** Bytes of buffers kept for the next pieces. */
  get spareBytes (): number { return this.lentBack }

  /** `data` must stay as it is until the digest arrives: if the worker fails, it is hashed again in place. */
  async sha256 (data: Uint8Array): Promise<Buffer> {
    const worker = this.broken ? undefined : this.start()
    if (worker === undefined) return sha256(data)
    const id = this.nextId++
    const digest = new Promise<Buffer>((resolve, reject) => this.jobs.set(id, { resolve, reject }))
    if (this.jobs.size === 1) worker.ref() // while a job is out, the process must wait for it
    const outbox = this.outboxFor(worker)
    if (data.buffer instanceof SharedArrayBuffer) {
      outbox.jobs.push({ id, memoryId: this.shareMemory(outbox, data.buffer), offset: data.byteOffset, length: data.length })
    } else {
      const buffer = this.lend(data.length)
      new Uint8Array(buffer, 0, data.length).set(data)
      outbox.jobs.push({ id, buffer, length: data.length })
      outbox.transfer.push(buffer)
    }
    return await digest.catch((err: unknown) => {
      if (err instanceof HashWorkerError) return sha256(data)
      throw err
    })
  }

  /** Ends the worker; jobs still out are hashed in place by their callers. */
  async close (): Promise<void> {
    const worker = this.worker
    this.worker = undefined
    this.failAll(new HashWorkerError('hash worker closed'))
    await worker?.terminate()
  }

  private start (): Worker | undefined {
    if (this.worker !== undefined) return this.worker
    // A new worker knows no shared memory yet.
    this.memoryIds.clear()
    try {
      const worker = new Worker(WORKER_SOURCE, { eval: true })
      worker.unref()
      worker.on('message', (replies: Reply[]) => { for (const reply of replies) this.onReply(reply) })
      worker.on('error', (err) => this.fail(worker, err))
      worker.on('exit', (code) => this.fail(worker, new HashWorkerError(`hash worker exited with code ${code}`)))
      this.worker = worker
      return worker
    } catch {
      this.broken = true
      return undefined
    }
  }

  /** The batch that goes to `worker` once the current task is done. */
  private outboxFor (worker: Worker): Outbox {
    // A batch still queued for a worker that has gone was failed over with it.
    if (this.outbox?.worker === worker) return this.outbox
    const outbox: Outbox = { worker, share: [], jobs: [], forget: [], transfer: [] }
    this.outbox = outbox
    queueMicrotask(() => {
      if (this.outbox === outbox) this.outbox = undefined
      if (this.worker === worker) worker.postMessage({ share: outbox.share, jobs: outbox.jobs, forget: outbox.forget }, outbox.transfer)
    })
    return outbox
  }

  /**
   * The id under which the worker knows `memory`, shared with this batch the first time. The worker
   * lets go of the least recently used one past HASH_WORKER_SHARED_MEMORIES, after this batch's jobs.
   */
  private shareMemory (outbox: Outbox, memory: SharedArrayBuffer): number {
    let memoryId = this.memoryIds.get(memory)
    if (memoryId !== undefined) {
      this.memoryIds.delete(memory)
      this.memoryIds.set(memory, memoryId)
      return memoryId
    }
    memoryId = this.nextMemoryId++
    this.memoryIds.set(memory, memoryId)
    outbox.share.push([memoryId, memory])
    if (this.memoryIds.size > HASH_WORKER_SHARED_MEMORIES) {
      const [oldest, oldestId] = this.memoryIds.entries().next().value as [SharedArrayBuffer, number]
      this.memoryIds.delete(oldest)
      outbox.forget.push(oldestId)
    }
    return memoryId
  }

  private onReply (reply: Reply): void {
    if (reply.buffer !== undefined && this.lentBack + reply.buffer.byteLength <= this.maxSpareBytes) {
      this.spare.push(reply.buffer)
      this.lentBack += reply.buffer.byteLength
    }
    const job = this.jobs.get(reply.id)
    if (job === undefined) return
    this.jobs.delete(reply.id)
    if (this.jobs.size === 0) this.worker?.unref()
    job.resolve(Buffer.from(reply.digest))
  }

  private fail (worker: Worker, err: Error): void {
    if (this.worker !== worker) return
    this.worker = undefined
    this.broken = true
    this.failAll(new HashWorkerError(`hash worker failed: ${err.message}`))
  }

  private failAll (err: HashWorkerError): void {
    const jobs = [...this.jobs.values()]
    this.jobs.clear()
    for (const job of jobs) job.reject(err)
  }

  /** A spare buffer of at least `length` bytes, or a new one. */
  private lend (length: number): ArrayBuffer {
    const i = this.spare.findIndex((b) => b.byteLength >= length)
    if (i < 0) return new ArrayBuffer(length)
    const buffer = this.spare.splice(i, 1)[0] as ArrayBuffer
    this.lentBack -= buffer.byteLength
    return buffer
  }
}

/** SHA-256 on the calling thread. */
export const sha256 = (data: Uint8Array): Buffer => createHash('sha256').update(data).digest()
