import { createHash } from 'node:crypto'
import { Worker } from 'node:worker_threads'
import { HASH_WORKER_SPARE_BYTES } from '../../configs.js'

/**
 * The worker's whole program. Evaluated from source rather than loaded from a file so that it runs
 * the same from `dist/` and from the TypeScript sources under test, which Node cannot load.
 * It hashes each batch of jobs it is sent (the bytes lent, or a place in shared memory) and answers
 * the batch in one message, giving lent buffers back with the digests.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const memories = new Map()
parentPort.on('message', (msg) => {
  if (msg.memory !== undefined) { memories.set(msg.memoryId, msg.memory); return }
  const replies = []
  const transfer = []
  for (const { id, buffer, memoryId, offset, length } of msg) {
    const data = buffer !== undefined ? new Uint8Array(buffer, 0, length) : new Uint8Array(memories.get(memoryId), offset, length)
    const digest = createHash('sha256').update(data).digest()
    const out = digest.buffer.slice(digest.byteOffset, digest.byteOffset + digest.length)
    replies.push({ id, buffer, digest: out })
    transfer.push(out)
    if (buffer !== undefined) transfer.push(buffer)
  }
  parentPort.postMessage(replies, transfer)
})
`

interface Reply { id: number, buffer?: ArrayBuffer, digest: ArrayBuffer }
type JobMessage = { id: number, length: number } & ({ buffer: ArrayBuffer } | { memoryId: number, offset: number })
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
 * and hashes the piece where it lies.
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
  private memoryIds = new WeakMap<SharedArrayBuffer, number>()
  private outbox: JobMessage[] = []
  private outboxTransfer: ArrayBuffer[] = []
  private outboxWorker: Worker | undefined
  private nextMemoryId = 1

  constructor (private readonly maxSpareBytes = HASH_WORKER_SPARE_BYTES) {}

  /** Bytes of buffers kept for the next pieces. */
  get spareBytes (): number { return this.lentBack }

  /** `data` must stay as it is until the digest arrives: if the worker fails, it is hashed again in place. */
  async sha256 (data: Uint8Array): Promise<Buffer> {
    const worker = this.broken ? undefined : this.start()
    if (worker === undefined) return sha256(data)
    const id = this.nextId++
    const digest = new Promise<Buffer>((resolve, reject) => this.jobs.set(id, { resolve, reject }))
    if (this.jobs.size === 1) worker.ref() // while a job is out, the process must wait for it
    if (data.buffer instanceof SharedArrayBuffer) {
      this.post(worker, { id, memoryId: this.shareMemory(worker, data.buffer), offset: data.byteOffset, length: data.length })
    } else {
      const buffer = this.lend(data.length)
      new Uint8Array(buffer, 0, data.length).set(data)
      this.post(worker, { id, buffer, length: data.length }, buffer)
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
    this.memoryIds = new WeakMap()
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

  /** Queues a job for `worker`; the queue goes in one message once the current task is done. */
  private post (worker: Worker, job: JobMessage, lent?: ArrayBuffer): void {
    if (this.outboxWorker !== worker) {
      // Jobs still queued for a worker that has gone were failed over with it.
      this.outbox = []
      this.outboxTransfer = []
      this.outboxWorker = worker
      queueMicrotask(() => this.flush(worker))
    }
    this.outbox.push(job)
    if (lent !== undefined) this.outboxTransfer.push(lent)
  }

  private flush (worker: Worker): void {
    if (this.outboxWorker !== worker) return // a newer worker's queue, with its own flush
    const jobs = this.outbox
    const transfer = this.outboxTransfer
    this.outbox = []
    this.outboxTransfer = []
    this.outboxWorker = undefined
    if (this.worker === worker) worker.postMessage(jobs, transfer)
  }

  /** The id under which `worker` knows `memory`; the first time, the worker is given it. */
  private shareMemory (worker: Worker, memory: SharedArrayBuffer): number {
    let memoryId = this.memoryIds.get(memory)
    if (memoryId === undefined) {
      memoryId = this.nextMemoryId++
      this.memoryIds.set(memory, memoryId)
      worker.postMessage({ memoryId, memory })
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
