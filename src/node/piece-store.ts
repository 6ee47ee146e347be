import { constants as fsConstants } from 'node:fs'
import { mkdir, open, readFile, rename, rm, writeFile, type FileHandle } from 'node:fs/promises'
import path from 'node:path'
import { BACKGROUND_SYNC_BYTES, DIRECT_IO_ALIGN_BYTES, DIRECT_IO_WRITES, HASH_BYTES, RESUME_STATE_FLUSH_MS } from '../../configs.js'
import { isDirectIoReady } from './buffer-pool.js'
import { pieceCount, pieceHash, pieceLength, readFully, sha256Off, type Manifest } from './manifest.js'

export interface PieceStoreInit {
  /** The sparse file the pieces are written into: `<name>.part`. */
  partPath: string
  /** Where the verified-pieces bitfield is kept between runs. */
  statePath: string
  manifest: Manifest
  /** Write aligned pieces with O_DIRECT where the file system allows it (default DIRECT_IO_WRITES). */
  directIo?: boolean
  /** Start a background fdatasync after this many bytes written (default BACKGROUND_SYNC_BYTES). */
  syncEveryBytes?: number
}

const STATE_MAGIC = Buffer.from('UTRS1')

interface QueuedWrite {
  index: number
  data: Uint8Array
  /** Every caller that asked for this piece while it was queued. */
  waiters: Array<{ resolve: () => void, reject: (err: Error) => void }>
}

function settle (writes: QueuedWrite[], err?: Error): void {
  for (const w of writes) {
    for (const waiter of w.waiters) {
      if (err === undefined) waiter.resolve()
      else waiter.reject(err)
    }
  }
}

/** Splits writes sorted by piece into runs of adjacent pieces, each of which is one span of the file. */
function adjacentRuns (sorted: QueuedWrite[]): QueuedWrite[][] {
  const runs: QueuedWrite[][] = []
  for (const w of sorted) {
    const run = runs.at(-1)
    const last = run?.at(-1)
    if (run !== undefined && last !== undefined && w.index === last.index + 1) run.push(w)
    else runs.push([w])
  }
  return runs
}

/**
 * Opens the part file for O_DIRECT writes, or gives undefined: not asked for, not Linux, pieces not
 * aligned, or a file system without it (tmpfs says EINVAL).
 */
async function openDirect (init: PieceStoreInit): Promise<FileHandle | undefined> {
  const flag = (fsConstants as Partial<Record<'O_DIRECT', number>>).O_DIRECT
  if (!(init.directIo ?? DIRECT_IO_WRITES) || flag === undefined || init.manifest.pieceSize % DIRECT_IO_ALIGN_BYTES !== 0) return undefined
  try {
    return await open(init.partPath, fsConstants.O_WRONLY | flag)
  } catch {
    return undefined
  }
}

/** The buffers that remain after the first `skip` bytes of their concatenation. */
function unwritten (buffers: Uint8Array[], skip: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length
      continue
    }
    out.push(skip > 0 ? b.subarray(skip) : b)
    skip = 0
  }
  return out
}

/**
 * A download on disk. Only verified pieces are ever written, each at its offset in a sparse
 * `.part` file; the set of written pieces is recorded beside it after the write completes, so a
 * restart trusts exactly what reached the disk, and re-checks it against the hashes anyway.
 */
export class PieceStore {
  readonly count: number
  private readonly have: Uint8Array
  private verified = 0
  private flushTimer: NodeJS.Timeout | undefined
  private flushing: Promise<void> = Promise.resolve()
  private readonly queued = new Map<number, QueuedWrite>()
  private draining = false
  private dirty = false

  /** The same file opened with O_DIRECT, for pieces in aligned buffers; undefined where that is not possible. */
  private direct: FileHandle | undefined

  private unsyncedBytes = 0
  private syncing: Promise<void> | undefined
  /**
   * The first error of a background sync. Linux reports a write-back error to each file
   * description once, so the final sync could succeed after the data was lost: finish() throws it.
   */
  private syncError: Error | undefined
  private syncsStarted = 0

  private constructor (private readonly init: PieceStoreInit, private readonly fh: FileHandle) {
    this.count = pieceCount(init.manifest.size, init.manifest.pieceSize)
    this.have = new Uint8Array(this.count)
  }

  /** Opens or creates the part file and recovers the pieces a previous run verified. */
  static async open (init: PieceStoreInit): Promise<PieceStore> {
    await mkdir(path.dirname(init.partPath), { recursive: true })
    await mkdir(path.dirname(init.statePath), { recursive: true })
    let fh: FileHandle
    try {
      fh = await open(init.partPath, 'r+')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      fh = await open(init.partPath, 'w+')
    }
    // Sets the length without writing data: the file stays sparse until pieces land.
    await fh.truncate(init.manifest.size)
    const store = new PieceStore(init, fh)
    store.direct = await openDirect(init)
    await store.recover()
    return store
  }

  get verifiedCount (): number { return this.verified }
  /** Whether aligned pieces still go to the disk with O_DIRECT (false: everything through the page cache). */
  get directIo (): boolean { return this.direct !== undefined }
  /** Background fdatasyncs started so far. */
  get backgroundSyncs (): number { return this.syncsStarted }
  get verifiedBytes (): number {
    let n = 0
    for (let i = 0; i < this.count; i++) if (this.have[i] === 1) n += this.pieceLength(i)
    return n
  }

  has (index: number): boolean { return this.have[index] === 1 }
  missing (): number[] {
    const out: number[] = []
    for (let i = 0; i < this.count; i++) if (this.have[i] === 0) out.push(i)
    return out
  }

  pieceLength (index: number): number {
    return pieceLength(this.init.manifest.size, this.init.manifest.pieceSize, index)
  }

  /** True when `data` is exactly piece `index` per the manifest. */
  async verify (index: number, data: Uint8Array): Promise<boolean> {
    if (data.length !== this.pieceLength(index)) return false
    return (await sha256Off(data)).equals(pieceHash(this.init.manifest, index))
  }

  /**
   * Writes a piece the caller has verified. Writes queue up while one is under way, and the next
   * write takes the whole queue, each run of adjacent pieces in one `writev`. One at a time because
   * buffered writes to one file serialise on its inode lock anyway, and pool threads queued behind
   * it spin for it (a fifth of their CPU time in a profile of a 256 MB loopback download). Batched
   * because each write costs a trip through the event loop, which is busy with datagrams: one
   * piece per write held a loopback download to one piece per loop turn (44 of its 48 pieces in
   * flight were waiting for the disk).
   */
  async write (index: number, data: Uint8Array): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const queued = this.queued.get(index)
      if (queued !== undefined) queued.waiters.push({ resolve, reject })
      else this.queued.set(index, { index, data, waiters: [{ resolve, reject }] })
      if (!this.draining) void this.drain()
    })
  }

  private async drain (): Promise<void> {
    this.draining = true
    try {
      while (this.queued.size > 0) {
        const batch: QueuedWrite[] = []
        for (const w of this.queued.values()) {
          if (this.have[w.index] === 1) settle([w])
          else batch.push(w)
        }
        this.queued.clear()
        for (const run of adjacentRuns(batch.sort((a, b) => a.index - b.index))) {
          try {
            await this.writeRun(run)
            settle(run)
          } catch (err) {
            settle(run, err as Error)
          }
        }
      }
    } finally {
      this.draining = false
    }
  }

  /** Writes pieces that are adjacent in the file, none of them written yet, in one span. */
  private async writeRun (run: QueuedWrite[]): Promise<void> {
    const first = run[0]
    if (first === undefined) return
    const position = first.index * this.init.manifest.pieceSize
    const total = run.reduce((n, w) => n + w.data.length, 0)
    let done = 0
    if (this.direct !== undefined && run.every((w) => isDirectIoReady(w.data))) {
      try {
        done = (await this.direct.writev(run.map((w) => w.data), position)).bytesWritten
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
        // The file system refused this alignment after all: the page cache it is, from now on.
        await this.closeDirect()
      }
    }
    while (done < total) {
      const { bytesWritten } = await this.fh.writev(unwritten(run.map((w) => w.data), done), position + done)
      if (bytesWritten === 0) throw new Error(`no progress writing ${total - done} bytes at ${position + done} of ${this.init.partPath}`)
      done += bytesWritten
    }
    for (const w of run) {
      if (this.have[w.index] === 1) continue
      this.have[w.index] = 1
      this.verified++
    }
    this.unsyncedBytes += total
    if (this.unsyncedBytes >= (this.init.syncEveryBytes ?? BACKGROUND_SYNC_BYTES)) this.syncInBackground()
    this.dirty = true
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined
      void this.flush()
    }, RESUME_STATE_FLUSH_MS)
  }

  /** Starts an fdatasync of what has been written, unless one is still running (the next write asks again). */
  private syncInBackground (): void {
    if (this.syncing !== undefined) return
    this.unsyncedBytes = 0
    this.syncsStarted++
    this.syncing = this.fh.datasync()
      .catch((err: unknown) => { this.syncError ??= err as Error })
      .finally(() => { this.syncing = undefined })
  }

  /** Records the verified pieces now. */
  async flush (): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (!this.dirty) return
      this.dirty = false
      const body = Buffer.concat([STATE_MAGIC, this.init.manifest.contentHash, Buffer.from(this.have)])
      const tmp = `${this.init.statePath}.tmp`
      await writeFile(tmp, body)
      await rename(tmp, this.init.statePath)
    })
    await this.flushing
  }

  /** Flushes the data, closes the file and moves it to its final name. */
  async finish (finalPath: string): Promise<void> {
    if (this.verified !== this.count) throw new Error(`cannot finish: ${this.count - this.verified} pieces missing`)
    this.cancelFlushTimer()
    // A state write already under way must land before the state file is removed, not after.
    await this.flushing.catch(() => {})
    await this.syncing
    if (this.syncError !== undefined) throw this.syncError
    await this.closeDirect()
    await this.fh.sync()
    await this.fh.close()
    await rename(this.init.partPath, finalPath)
    await rm(this.init.statePath, { force: true })
  }

  /** Stops, keeping the part file and its state for a later resume. */
  async close (): Promise<void> {
    this.cancelFlushTimer()
    try {
      await this.flush()
    } finally {
      await this.syncing
      await this.closeDirect()
      await this.fh.close().catch(() => {})
    }
  }

  private async closeDirect (): Promise<void> {
    const direct = this.direct
    this.direct = undefined
    await direct?.close().catch(() => {})
  }

  private cancelFlushTimer (): void {
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer)
    this.flushTimer = undefined
  }

  private async recover (): Promise<void> {
    let state: Buffer
    try {
      state = await readFile(this.init.statePath)
    } catch {
      return
    }
    const headerBytes = STATE_MAGIC.length + HASH_BYTES
    if (state.length !== headerBytes + this.count || !state.subarray(0, STATE_MAGIC.length).equals(STATE_MAGIC) ||
        !state.subarray(STATE_MAGIC.length, headerBytes).equals(this.init.manifest.contentHash)) {
      return
    }
    // Re-check each recorded piece: the state is a hint, the hashes are the truth.
    const buf = Buffer.allocUnsafe(this.init.manifest.pieceSize)
    for (let i = 0; i < this.count; i++) {
      if (state[headerBytes + i] !== 1) continue
      const len = this.pieceLength(i)
      try {
        await readFully(this.fh, buf, len, i * this.init.manifest.pieceSize)
      } catch {
        continue
      }
      if (await this.verify(i, buf.subarray(0, len))) {
        this.have[i] = 1
        this.verified++
      }
    }
  }
}
