import { access, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { Logger } from 'pino'
import {
  BITFIELD_POLL_MS, CHOKED_BITFIELD_POLL_MS, CHOKED_RETRY_MS, DEAD_OWNER_RETRY_MS, DOWNLOAD_IDLE_TICK_MS, DOWNLOAD_NO_OWNER_TIMEOUT_MS, HASH_BYTES, MAX_OWNER_FAILURES, NODE_STATE_DIR, OWNER_REFRESH_MS,
  FINISHING_PIECE_BYTES, MAX_RUN_BYTES, PART_SUFFIX, PIECE_BUFFER_POOL_BYTES, PIECES_IN_FLIGHT_PER_OWNER, PIECES_IN_FLIGHT_PER_PARTIAL_OWNER
} from '../../configs.js'
import { checkFileName, differsOnlyInCase, RejectReason, Stream, type FileIdentity, type OwnerEntry } from '../messages/index.js'
import { abortError, PeerRejectedError, PeerTimeoutError } from '../transport/errors.js'
import type { PeerLink, PeerLinkStats } from '../transport/peer-link.js'
import { hashWholeFile, pieceCount, sha256, type Manifest } from './manifest.js'
import { ByteBudget } from './byte-budget.js'
import { BufferPool, copyBytes } from './buffer-pool.js'
import { PieceScheduler, type PieceOrder } from './piece-scheduler.js'
import { PieceStore } from './piece-store.js'
import type { TrackerClient } from './tracker-client.js'

/** A download that could not complete; the message says why and what is kept for a retry. */
export class DownloadError extends Error {
  override readonly name = 'DownloadError'
}

const DISK_ERRORS: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted'
}

/** A disk failure as one clear sentence naming the folder; anything else passes through. */
function diskError (err: unknown, dir: string, name: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code
  if (code === undefined || !(code in DISK_ERRORS)) return err
  return new DownloadError(`cannot write ${name} in ${dir}: ${DISK_ERRORS[code] as string} (${code}); verified pieces written so far are kept, download again to resume`)
}

export interface DownloadInit {
  name: string
  /** The node's folder (node_files/nodeN). */
  dir: string
  selfId: number
  tracker: TrackerClient
  /** The shared link to an owner (one per remote address, so downloads share its congestion state). */
  linkTo: (owner: OwnerEntry) => PeerLink
  logger: Logger
  signal: AbortSignal
  noOwnerTimeoutMs?: number
  piecesInFlightPerOwner?: number
  /** How pieces are picked in a swarm (default rarest first). */
  pieceOrder?: PieceOrder
  /** The node's budget for receive buffers, shared by all its downloads. */
  receiveBudget?: ByteBudget
  /** Write pieces with O_DIRECT where possible (default DIRECT_IO_WRITES; see PieceStoreInit). */
  directIo?: boolean
  /** Called once the pieces phase begins: from then on the node may serve the pieces it verifies (a partial owner). */
  onPiecesStarted?: (identity: FileIdentity, manifest: Manifest, store: PieceStore) => Promise<void>
  /** Called once the file is complete and in place, before the download resolves. */
  onComplete: (name: string, manifest: Manifest) => Promise<void>
}

export type OwnerState = 'active' | 'dead' | 'banned'

export interface OwnerProgress {
  nodeId: number
  address: string
  state: OwnerState
  /** False while the owner is itself still downloading. */
  complete: boolean
  /** Whether the owner refused us an upload slot at our last request. */
  choked: boolean
  /** Verified bytes it gave us while it was itself still downloading. */
  bytesWhilePartial: number
  bytes: number
  /** Verified bytes from this owner per second since the download started. */
  goodputBytesPerSecond: number
  pieces: number
  failures: number
  link: PeerLinkStats
}

export interface DownloadProgress {
  name: string
  phase: 'locating' | 'manifest' | 'pieces' | 'finishing' | 'done'
  size: number
  pieces: number
  piecesDone: number
  bytesDone: number
  /** Bytes verified during this run (excludes what a resume found on disk). */
  bytesThisRun: number
  startedAt: number
  owners: OwnerProgress[]
}

export interface DownloadResult {
  file: string
  bytes: number
  sha256: string
  seconds: number
  resumedPieces: number
}

interface Owner {
  entry: OwnerEntry
  link: PeerLink
  state: OwnerState
  /** While it chokes us: resolves when the back-off ends. The owner's workers wait on this one timer. */
  chokeWait: Promise<void> | undefined
  /** Ends the back-off early: the owner sent UNCHOKE. */
  endChokeWait: (() => void) | undefined
  /** After a choke, one request probes whether we have a slot again; the other workers wait for its answer. */
  probing: 'no' | 'due' | 'sent'
  bytesWhilePartial: number
  /** Where this owner's idle workers wait: one timer, however many workers. */
  idle: WakeUp
  /** A bitfield poll is under way. */
  polling: boolean
  /** When its bitfield was last asked for. */
  polledAt: number
  bytes: number
  pieces: number
  failures: number
  workers: number
  /** A complete owner that refused a piece as missing (a super-seed): scheduled by what it gives. */
  refusesPieces: boolean
  /** How often it was dropped as dead, and when it may come back (see DEAD_OWNER_RETRY_MS). */
  deaths: number
  retryAt: number
}

/**
 * One file's download: locate owners, fetch and verify the manifest, then fetch pieces in parallel
 * from every owner, verifying each before it is written. Owners that die, stall or lie lose their
 * work to the others; with no owner left for `noOwnerTimeoutMs` the download fails, keeping its
 * verified pieces for a later resume.
 */
export class Download {
  readonly name: string
  private readonly owners = new Map<number, Owner>()
  private identity: FileIdentity | undefined
  private store: PieceStore | undefined
  private pieceBuffers = new BufferPool(0, 0)
  private phase: DownloadProgress['phase'] = 'locating'
  private readonly startedAt = Date.now()
  private bytesThisRun = 0
  /** Wakes the supervisor at every change. */
  private readonly anyChange = new WakeUp(DOWNLOAD_IDLE_TICK_MS)

  constructor (private readonly init: DownloadInit) {
    this.name = checkFileName(init.name)
  }

  /** What is being downloaded, once the tracker has said. */
  get fileIdentity (): FileIdentity | undefined { return this.identity }

  get progress (): DownloadProgress {
    const size = this.identity?.size ?? 0
    return {
      name: this.name,
      phase: this.phase,
      size,
      pieces: this.store?.count ?? 0,
      piecesDone: this.store?.verifiedCount ?? 0,
      bytesDone: this.phase === 'done' ? size : (this.store?.verifiedBytes ?? 0),
      bytesThisRun: this.bytesThisRun,
      startedAt: this.startedAt,
      owners: [...this.owners.values()].map((o) => ({
        nodeId: o.entry.nodeId,
        address: `${o.entry.host}:${o.entry.port}`,
        state: o.state,
        complete: o.entry.complete,
        choked: o.chokeWait !== undefined,
        bytesWhilePartial: o.bytesWhilePartial,
        bytes: o.bytes,
        goodputBytesPerSecond: o.bytes / Math.max(1e-3, (Date.now() - this.startedAt) / 1000),
        pieces: o.pieces,
        failures: o.failures,
        link: o.link.stats
      }))
    }
  }

  async run (): Promise<DownloadResult> {
    const { dir, logger } = this.init
    const started = performance.now()
    const finalPath = path.join(dir, this.name)
    if (await exists(finalPath)) throw new DownloadError(`${this.name} already exists in ${dir}; remove it to download again`)
    const twin = await caseTwin(dir, this.name)
    if (twin !== undefined) {
      throw new DownloadError(`${this.name} differs only in case from ${twin} in ${dir}: names are case-sensitive, but on a case-insensitive disk both are one file; rename ${twin} to download ${this.name}`)
    }

    const identity = await this.locate()
    this.identity = identity
    logger.info({ file: this.name, size: identity.size, pieceSize: identity.pieceSize, owners: this.owners.size }, 'download started')

    this.phase = 'manifest'
    const manifest = await this.manifest(identity)

    this.phase = 'pieces'
    const stateDir = path.join(dir, NODE_STATE_DIR)
    const store = await PieceStore.open({
      partPath: path.join(dir, this.name + PART_SUFFIX),
      statePath: path.join(stateDir, `${this.name}.pieces`),
      manifest,
      directIo: this.init.directIo
    }).catch((err: unknown) => { throw diskError(err, dir, this.name) })
    this.store = store
    await this.init.onPiecesStarted?.(identity, manifest, store)
    const resumedPieces = store.verifiedCount
    if (resumedPieces > 0) logger.info({ file: this.name, resumedPieces, pieces: store.count }, 'resuming from verified pieces')
    const phases: Record<string, number> = {}
    let mark = started
    const lap = (name: string): void => {
      const t = performance.now()
      phases[name] = Number(((t - mark) / 1000).toFixed(3))
      mark = t
    }
    lap('locate+manifest')
    let directIo: boolean
    try {
      await this.fetchPieces(store, identity)
      lap('pieces')
      directIo = store.directIo // before finish() closes the O_DIRECT handle
      this.phase = 'finishing'
      await store.finish(finalPath)
      lap('sync+rename')
    } catch (err) {
      await store.close().catch(() => {})
      throw diskError(err, dir, this.name)
    }
    // The file is complete, verified and durable: that is the download's time. The whole-file
    // digest below is for the log and for people comparing copies, not part of delivering it.
    const seconds = (performance.now() - started) / 1000
    await rm(this.manifestPath(), { force: true })
    const digest = await hashWholeFile(finalPath, identity.pieceSize)
    lap('sha256')
    this.phase = 'done'
    await this.init.onComplete(this.name, manifest)
    await this.reportCredit(identity)
    const result: DownloadResult = {
      file: this.name,
      bytes: identity.size,
      sha256: digest,
      seconds,
      resumedPieces
    }
    logger.info({
      ...result,
      phases,
      directIo,
      memory: process.memoryUsage(),
      owners: this.progress.owners.map((o) => ({
        nodeId: o.nodeId, state: o.state, complete: o.complete, bytes: o.bytes, bytesWhilePartial: o.bytesWhilePartial, goodputBytesPerSecond: Math.round(o.bytes / Math.max(seconds, 1e-3)), failures: o.failures, ...o.link
      }))
    }, 'download complete')
    return result
  }

  /** Asks the tracker for owners until some are live, for at most the no-owner timeout. */
  private async locate (): Promise<FileIdentity> {
    const deadline = Date.now() + (this.init.noOwnerTimeoutMs ?? DOWNLOAD_NO_OWNER_TIMEOUT_MS)
    for (;;) {
      const reply = await this.init.tracker.need(this.name, this.init.signal)
      if (reply.file !== null && this.addOwners(reply.owners, reply.file) > 0) {
        if (reply.variants > 1) this.init.logger.warn({ file: this.name, variants: reply.variants }, 'the tracker holds several contents under this name; fetching the most shared one')
        return reply.file
      }
      if (Date.now() >= deadline) throw new DownloadError(`no node shares ${this.name}`)
      await this.pause(1000)
    }
  }

  /** Adds the tracker's owners; `revive` takes dead ones back before their back-off ends (nobody else is left). */
  private addOwners (entries: OwnerEntry[], file: FileIdentity, revive = false): number {
    if (this.identity !== undefined && !file.contentHash.equals(this.identity.contentHash)) return 0
    let added = 0
    for (const entry of entries) {
      if (entry.nodeId === this.init.selfId) continue
      const known = this.owners.get(entry.nodeId)
      if (known?.state === 'banned') continue
      if (known?.state === 'active') {
        // A partial owner that finished: it now has every piece.
        if (entry.complete && !known.entry.complete) {
          known.entry = entry
          added++
        }
        continue
      }
      if (known?.state === 'dead') {
        if (!revive && Date.now() < known.retryAt) continue
        Object.assign(known, { entry, link: this.init.linkTo(entry), state: 'active', chokeWait: undefined, endChokeWait: undefined, probing: 'no', polling: false, polledAt: 0 })
        added++
        continue
      }
      this.owners.set(entry.nodeId, { entry, link: this.init.linkTo(entry), state: 'active', idle: new WakeUp(DOWNLOAD_IDLE_TICK_MS), chokeWait: undefined, endChokeWait: undefined, probing: 'no', bytesWhilePartial: 0, polling: false, polledAt: 0, bytes: 0, pieces: 0, failures: 0, workers: 0, refusesPieces: false, deaths: 0, retryAt: 0 })
      added++
    }
    return added
  }

  private manifestPath (): string {
    return path.join(this.init.dir, NODE_STATE_DIR, `${this.name}.manifest`)
  }

  /** The piece-hash list: from disk when a previous run saved it, else from an owner; checked against the content hash either way. */
  private async manifest (identity: FileIdentity): Promise<Manifest> {
    const length = pieceCount(identity.size, identity.pieceSize) * HASH_BYTES
    const make = (pieceHashes: Buffer): Manifest => ({ size: identity.size, pieceSize: identity.pieceSize, pieceHashes, contentHash: identity.contentHash })
    const saved = await readFile(this.manifestPath()).catch(() => undefined)
    if (saved !== undefined && saved.length === length && sha256(saved).equals(identity.contentHash)) return make(saved)

    for (const owner of this.activeOwners()) {
      const buf = Buffer.alloc(length)
      try {
        await owner.link.fetch({
          contentHash: identity.contentHash,
          stream: Stream.Manifest,
          offset: 0,
          length,
          onData: (offset, payload) => { payload.copy(buf, offset) },
          signal: this.init.signal
        })
      } catch (err) {
        if (this.init.signal.aborted) throw abortError(this.init.signal)
        this.dropOwner(owner, 'dead', err)
        continue
      }
      if (!sha256(buf).equals(identity.contentHash)) {
        this.dropOwner(owner, 'banned', new Error('manifest does not match the content hash'))
        continue
      }
      try {
        await mkdir(path.dirname(this.manifestPath()), { recursive: true })
        await writeFile(`${this.manifestPath()}.tmp`, buf)
        await rename(`${this.manifestPath()}.tmp`, this.manifestPath())
      } catch (err) {
        throw diskError(err, this.init.dir, this.name)
      }
      return make(buf)
    }
    throw new DownloadError(`no owner of ${this.name} delivered a valid manifest`)
  }

  private activeOwners (): Owner[] {
    return [...this.owners.values()].filter((o) => o.state === 'active')
  }

  private dropOwner (owner: Owner, state: 'dead' | 'banned', reason: unknown): void {
    if (owner.state !== 'active') return
    owner.state = state
    if (state === 'dead') owner.retryAt = Date.now() + DEAD_OWNER_RETRY_MS * 2 ** owner.deaths++
    this.init.logger.warn({ file: this.name, owner: owner.entry.nodeId, address: `${owner.entry.host}:${owner.entry.port}`, state, reason: (reason as Error)?.message }, 'owner dropped')
  }

  private async fetchPieces (store: PieceStore, identity: FileIdentity): Promise<void> {
    this.pieceBuffers = new BufferPool(identity.pieceSize, Math.max(1, Math.floor(PIECE_BUFFER_POOL_BYTES / identity.pieceSize)))
    const active = this.activeOwners()
    // S/N shares only when every owner has the whole file; otherwise this is a swarm: rarest first.
    const scheduler = new PieceScheduler(store.missing(), active.every((o) => o.entry.complete) ? active.map((o) => o.entry.nodeId) : [], { order: this.init.pieceOrder })
    const runPieces = Math.max(1, Math.floor(MAX_RUN_BYTES / identity.pieceSize))
    let failure: Error | undefined
    const phase: PiecesPhase = {
      scheduler,
      store,
      identity,
      attempts: new Map(),
      finishing: new Set(),
      // Never below one run: a run larger than the budget would wait for it forever.
      finishingBudget: new ByteBudget(Math.max(FINISHING_PIECE_BYTES, runPieces * identity.pieceSize)),
      // Any change may give any owner's idle workers something to do (a piece back in the pool).
      notify: () => {
        this.anyChange.wake()
        for (const o of this.owners.values()) o.idle.wake()
      },
      fail: (err) => {
        failure ??= err
        phase.notify()
      }
    }
    const notify = phase.notify

    // A complete owner that has refused a piece (a super-seed) is asked piece by piece: a refused
    // run would not say which of its pieces it lacks.
    const runFor = (owner: Owner): number => owner.refusesPieces ? 1 : runPieces
    const canWork = (owner: Owner): boolean => !scheduler.isComplete && owner.state === 'active' && failure === undefined && !this.init.signal.aborted
    const worker = async (owner: Owner): Promise<void> => {
      owner.workers++
      try {
        while (canWork(owner)) {
          if (owner.chokeWait !== undefined) {
            await owner.chokeWait
            continue
          }
          if (owner.probing === 'sent') {
            await owner.idle.wait()
            continue
          }
          const pieces = scheduler.nextRun(owner.entry.nodeId, runFor(owner))
          if (pieces.length === 0) {
            await owner.idle.wait()
            continue
          }
          const probe = owner.probing === 'due'
          if (probe) owner.probing = 'sent'
          await this.fetchRun(owner, pieces, phase)
          // Still 'sent' means the probe was answered with data (a choke resets it): unchoked.
          if (probe && owner.probing === 'sent') {
            owner.probing = 'no'
            notify()
          }
        }
      } catch (err) {
        failure ??= err as Error
      } finally {
        owner.workers--
        notify()
      }
    }
    const startWorkers = (): void => {
      for (const owner of this.activeOwners()) {
        scheduler.addOwner(owner.entry.nodeId, owner.entry.complete && !owner.refusesPieces)
        // A partial owner has few pieces to give and upload slots to share: a deep queue there only
        // delays pieces another owner could have sent.
        const pieces = this.init.piecesInFlightPerOwner ?? (owner.entry.complete ? PIECES_IN_FLIGHT_PER_OWNER : PIECES_IN_FLIGHT_PER_PARTIAL_OWNER)
        // While picks follow S/N shares each worker fetches a run of pieces: fewer workers hold as many in flight.
        const want = scheduler.usesRanges ? Math.ceil(pieces / runFor(owner)) : pieces
        // Only while a worker would run: one that ends at once, before its first await, leaves the
        // count unchanged, and this loop would spin forever (it did when an owner list naming a new owner
        // came back after the last piece).
        while (owner.workers < want && canWork(owner)) void worker(owner)
      }
    }

    startWorkers()
    // A swarm changes while we download: partial owners verify pieces (their bitfields, polled like
    // BitTorrent's HAVE) and new owners join (a periodic NEED).
    const pollBitfields = (): void => {
      const now = Date.now()
      for (const owner of this.activeOwners()) {
        if (owner.entry.complete || owner.polling) continue
        if (owner.chokeWait !== undefined && now - owner.polledAt < CHOKED_BITFIELD_POLL_MS) continue
        owner.polledAt = now
        // New bits concern only that owner's workers.
        void this.pollBitfield(owner, scheduler, identity, store.count).then(() => owner.idle.wake())
      }
    }
    let lastRefresh = Date.now()
    const refreshOwners = async (): Promise<void> => {
      lastRefresh = Date.now()
      const reply = await this.init.tracker.need(this.name, this.init.signal).catch(() => undefined)
      if (reply?.file != null && this.addOwners(reply.owners, reply.file) > 0) startWorkers()
    }
    pollBitfields()
    const poller = setInterval(pollBitfields, BITFIELD_POLL_MS)
    try {
      await this.superviseWorkers(scheduler, store, startWorkers, refreshOwners, () => lastRefresh, () => failure)
    } finally {
      clearInterval(poller)
    }
    await Promise.all(phase.finishing)
    if (failure !== undefined) throw failure
  }

  /** Fetches a partial owner's bitfield into the scheduler; an owner that fails it is handled like a failed fetch. */
  private async pollBitfield (owner: Owner, scheduler: PieceScheduler, identity: FileIdentity, pieces: number): Promise<void> {
    owner.polling = true
    const bits = Buffer.alloc(Math.ceil(pieces / 8))
    try {
      await owner.link.fetch({
        contentHash: identity.contentHash,
        stream: Stream.Bitfield,
        offset: 0,
        length: bits.length,
        onData: (offset, payload) => { payload.copy(bits, offset) },
        signal: this.init.signal
      })
      if (owner.state === 'active' && !owner.entry.complete) scheduler.setBitfield(owner.entry.nodeId, bits)
    } catch (err) {
      if (this.init.signal.aborted) return
      if (err instanceof PeerTimeoutError || (err instanceof PeerRejectedError && err.reason === RejectReason.UnknownContent)) {
        this.dropOwner(owner, 'dead', err)
        scheduler.removeOwner(owner.entry.nodeId)
      }
    } finally {
      owner.polling = false
    }
  }

  /** Waits for the pieces to be done, fails after the no-owner timeout, and keeps the owner list fresh. */
  private async superviseWorkers (
    scheduler: PieceScheduler, store: PieceStore, startWorkers: () => void, refreshOwners: () => Promise<void>,
    lastRefresh: () => number, failure: () => Error | undefined
  ): Promise<void> {
    let idleSince: number | undefined
    let verifiedAtIdle = 0
    const noOwnerTimeout = this.init.noOwnerTimeoutMs ?? DOWNLOAD_NO_OWNER_TIMEOUT_MS
    while (!scheduler.isComplete) {
      if (this.init.signal.aborted) throw abortError(this.init.signal)
      const failed = failure()
      if (failed !== undefined) throw failed
      if (this.activeOwners().length === 0) {
        // The clock runs from the last verified piece: owners that come back and fail again do not reset it.
        if (idleSince === undefined || store.verifiedCount > verifiedAtIdle) {
          idleSince = Date.now()
          verifiedAtIdle = store.verifiedCount
        }
        const waited = Date.now() - idleSince
        if (waited >= noOwnerTimeout) {
          throw new DownloadError(`no owner left for ${this.name}: ${scheduler.remaining} of ${store.count} pieces missing after ${Math.round(waited / 1000)} s; verified pieces are kept, download again to resume`)
        }
        // Everyone we knew is gone: ask the tracker again, then wait a little.
        const reply = await this.init.tracker.need(this.name, this.init.signal).catch(() => undefined)
        if (reply?.file != null && this.addOwners(reply.owners, reply.file, true) > 0) {
          startWorkers()
          continue
        }
        await this.pause(Math.min(1000, noOwnerTimeout - waited))
        continue
      }
      if (Date.now() - lastRefresh() >= OWNER_REFRESH_MS) await refreshOwners()
      await this.anyChange.wait()
    }
  }

  /**
   * Fetches adjacent pieces `pieces` from one owner in one range, and hands them on to be verified
   * and written. The worker goes on to its next run meanwhile: waiting for the hash and the disk
   * left a 256 MB loopback download with as few as 8 of its 48 pieces in flight on the link, the
   * rest queued for a write.
   */
  private async fetchRun (owner: Owner, pieces: number[], phase: PiecesPhase): Promise<void> {
    const { scheduler, store } = phase
    const length = pieces.reduce((n, p) => n + store.pieceLength(p), 0)
    const budget = this.init.receiveBudget
    try {
      await budget?.acquire(length, this.init.signal)
    } catch (err) {
      giveBackRun(scheduler, pieces, owner.entry.nodeId)
      throw err
    }
    const bufs = pieces.map((p) => this.pieceBuffers.take(store.pieceLength(p)))
    const release = (): void => {
      // Every use of the buffers has ended by now: the fetch (and its onData), the hashes and the writes.
      for (const buf of bufs) this.pieceBuffers.give(buf)
      budget?.release(length)
    }
    let handedOn = false
    try {
      if (!(await this.fetchRunInto(owner, pieces, bufs, phase))) return
      try {
        await phase.finishingBudget.acquire(length, this.init.signal)
      } catch (err) {
        // Aborted while waiting for room: the pieces go back like those of any unfinished fetch.
        giveBackRun(scheduler, pieces, owner.entry.nodeId)
        throw err
      }
      const finish = Promise.all(pieces.map(async (piece, i) => await this.acceptPiece(owner, piece, bufs[i] as Buffer, phase)))
        .then(() => {}, (err: unknown) => phase.fail(err as Error))
        .finally(() => {
          phase.finishing.delete(finish)
          phase.finishingBudget.release(length)
          release()
        })
      phase.finishing.add(finish)
      handedOn = true
    } finally {
      if (!handedOn) release()
    }
  }

  /**
   * Receives a run of adjacent pieces into one buffer each. False when it did not arrive; its
   * pieces are then back with the scheduler and the failure is dealt with.
   */
  private async fetchRunInto (owner: Owner, pieces: number[], bufs: Buffer[], phase: PiecesPhase): Promise<boolean> {
    const { scheduler, identity, attempts, notify } = phase
    const ownerId = owner.entry.nodeId
    const pieceSize = identity.pieceSize
    const start = (pieces[0] as number) * pieceSize
    const length = bufs.reduce((n, b) => n + b.length, 0)
    const ac = new AbortController()
    const onAbort = (): void => ac.abort(abortError(this.init.signal))
    this.init.signal.addEventListener('abort', onAbort, { once: true })
    const keys = pieces.map((piece) => `${piece}:${ownerId}`)
    for (const key of keys) attempts.set(key, ac)
    try {
      await owner.link.fetch({
        contentHash: identity.contentHash,
        stream: Stream.Content,
        offset: start,
        length,
        onData: (offset, payload) => {
          // A datagram may straddle a piece boundary: each part goes to its piece's buffer.
          for (let at = offset - start, from = 0; from < payload.length;) {
            const k = Math.floor(at / pieceSize)
            const into = at - k * pieceSize
            const n = Math.min(payload.length - from, pieceSize - into)
            copyBytes(bufs[k] as Buffer, into, payload, from, from + n)
            at += n
            from += n
          }
        },
        signal: ac.signal
      })
      return true
    } catch (err) {
      giveBackRun(scheduler, pieces, ownerId)
      if (err instanceof PeerRejectedError && err.reason === RejectReason.Choked) {
        // No upload slot for us now: not a fault. Others serve meanwhile; one request asks again
        // later. No wake-up for every idle worker here: in a big swarm most requests are choked.
        this.backOffChoked(owner)
        return false
      }
      notify()
      if (ac.signal.aborted) return false // end game: someone else verified one of them first, or we are stopping
      if (err instanceof PeerRejectedError && (err.reason === RejectReason.Missing || err.reason === RejectReason.Busy)) {
        if (err.reason === RejectReason.Missing) {
          // From now on this owner is asked piece by piece (runFor), which tells which pieces it lacks.
          if (owner.entry.complete) owner.refusesPieces = true
          if (pieces.length === 1) scheduler.lacks(ownerId, pieces[0] as number)
        }
        return false
      }
      if (err instanceof PeerTimeoutError || err instanceof PeerRejectedError) {
        // An owner that says it lacks the content (or the range) is wrong about this file for the
        // rest of the download; one that went silent may come back, via a later NEED, after its back-off.
        this.dropOwner(owner, err instanceof PeerRejectedError ? 'banned' : 'dead', err)
        scheduler.removeOwner(ownerId)
        return false
      }
      throw err
    } finally {
      for (const key of keys) if (attempts.get(key) === ac) attempts.delete(key)
      this.init.signal.removeEventListener('abort', onAbort)
    }
  }

  /** Verifies a received piece and writes it; a bad one goes back to the scheduler and counts against its owner. */
  private async acceptPiece (owner: Owner, piece: number, buf: Buffer, phase: PiecesPhase): Promise<void> {
    const { scheduler, store, attempts, notify } = phase
    const ownerId = owner.entry.nodeId
    const length = buf.length
    if (!(await store.verify(piece, buf))) {
      owner.failures++
      this.init.logger.warn({ file: this.name, piece, owner: ownerId, failures: owner.failures }, 'piece failed verification')
      scheduler.fail(piece, ownerId)
      if (owner.failures >= MAX_OWNER_FAILURES) {
        this.dropOwner(owner, 'banned', new Error(`${owner.failures} pieces failed verification`))
        scheduler.removeOwner(ownerId)
      }
      notify()
      return
    }
    const others = scheduler.complete(piece, ownerId)
    if (others === undefined) return
    for (const other of others) attempts.get(`${piece}:${other}`)?.abort()
    owner.bytes += length
    if (!owner.entry.complete) owner.bytesWhilePartial += length
    owner.pieces++
    this.bytesThisRun += length
    try {
      await store.write(piece, buf)
    } finally {
      // A verified piece gives no other owner's workers anything new (no piece went back to the
      // pool): waking them all would have every idle worker of every owner ask the scheduler again,
      // for each of a swarm's thousands of pieces. The last piece ends them all.
      if (scheduler.isComplete) {
        notify()
      } else {
        this.anyChange.wake()
        owner.idle.wake()
      }
    }
  }

  /** An owner choked us: one request asks again after CHOKED_RETRY_MS, or as soon as it sends UNCHOKE. */
  private backOffChoked (owner: Owner): void {
    owner.probing = 'no'
    if (owner.chokeWait !== undefined) return
    owner.chokeWait = new Promise<void>((resolve) => {
      const end = (): void => {
        clearTimeout(timer)
        owner.chokeWait = undefined
        owner.endChokeWait = undefined
        owner.probing = 'due'
        resolve()
      }
      const timer = setTimeout(end, CHOKED_RETRY_MS)
      timer.unref()
      owner.endChokeWait = end
    })
  }

  /** The owner behind `link` has a slot for us (its UNCHOKE): ask it now rather than at the next retry. */
  unchokedBy (link: PeerLink): void {
    for (const owner of this.owners.values()) {
      if (owner.link === link) owner.endChokeWait?.()
    }
  }

  /** Tells the tracker how many bytes each owner gave us, which is the owners' upload credit. */
  private async reportCredit (identity: FileIdentity): Promise<void> {
    const received = [...this.owners.values()].filter((o) => o.bytes > 0).map((o) => ({ ownerId: o.entry.nodeId, bytes: o.bytes }))
    if (received.length === 0) return
    try {
      await this.init.tracker.update(identity.contentHash, received, this.init.signal)
    } catch (err) {
      this.init.logger.warn({ err, file: this.name }, 'could not report upload credit')
    }
  }

  private async pause (ms: number): Promise<void> {
    const signal = this.init.signal
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
      const onAbort = (): void => { clearTimeout(t); reject(abortError(signal)) }
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }
}

/** Puts an unfinished run's pieces back, last first: the pool then holds the run in order, to be taken again as one. */
function giveBackRun (scheduler: PieceScheduler, pieces: number[], ownerId: number): void {
  for (const piece of [...pieces].reverse()) scheduler.fail(piece, ownerId)
}

/** What the fetches of one download's pieces phase share. */
interface PiecesPhase {
  scheduler: PieceScheduler
  store: PieceStore
  identity: FileIdentity
  /** The fetch under way for each `piece:owner`, to abort when another copy verifies first. */
  attempts: Map<string, AbortController>
  /** Received runs being verified and written; the phase ends when they have. */
  finishing: Set<Promise<void>>
  /** Bytes of received pieces waiting for their hash or the disk: a full budget holds the next run back. */
  finishingBudget: ByteBudget
  /** Any change that may give idle workers of any owner something to do. */
  notify: () => void
  /** Ends the download: a write failed. */
  fail: (err: Error) => void
}

/** A wait many tasks share: one promise and one timer, resolved by wake() or after `tickMs`. */
class WakeUp {
  private pending: { promise: Promise<void>, resolve: () => void, timer: NodeJS.Timeout } | undefined

  constructor (private readonly tickMs: number) {}

  async wait (): Promise<void> {
    if (this.pending === undefined) {
      let resolve = (): void => {}
      const promise = new Promise<void>((r) => { resolve = r })
      const timer = setTimeout(() => this.wake(), this.tickMs)
      this.pending = { promise, resolve, timer }
    }
    await this.pending.promise
  }

  wake (): void {
    const p = this.pending
    if (p === undefined) return
    this.pending = undefined
    clearTimeout(p.timer)
    p.resolve()
  }
}

/**
 * A file (or an unfinished download of one) in `dir` whose name equals `name` but for case. Names
 * are case-sensitive everywhere else, as on the wire; refusing here keeps a download from
 * overwriting, or mixing pieces into, a different file where the disk folds case.
 */
async function caseTwin (dir: string, name: string): Promise<string | undefined> {
  const entries = await readdir(dir).catch(() => [] as string[])
  for (const entry of entries) {
    const base = (entry.endsWith(PART_SUFFIX) ? entry.slice(0, -PART_SUFFIX.length) : entry).normalize('NFC')
    if (differsOnlyInCase(base, name)) return base
  }
  return undefined
}

async function exists (p: string): Promise<boolean> {
  try {
    await access(p)
    return true
  } catch {
    return false
  }
}
