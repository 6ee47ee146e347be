import { randomBytes } from 'node:crypto'
import { EventEmitter, setMaxListeners } from 'node:events'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import type { Logger } from 'pino'
import { COOKIE_BYTES, DEFAULT_DATAGRAM_BYTES, MAX_DATAGRAMS_PER_REQUEST, MAX_RECEIVE_BUFFER_BYTES, MAX_SERVE_BYTES_IN_FLIGHT, MAX_SERVE_READS_IN_FLIGHT, MAX_SERVE_READS_PER_PEER, NODE_KEY_FILE, NODE_STATE_DIR } from '../../configs.js'
import { checkFileName, differsOnlyInCase, Stream, type OwnerEntry } from '../messages/index.js'
import { AddressTokens, loadOrCreateIdentity } from '../transport/auth.js'
import { BlockServer } from '../transport/block-server.js'
import { Endpoint, type DatagramFilter, type RemoteAddress } from '../transport/endpoint.js'
import { pathDatagramCap, SharedPathSize } from '../transport/path-mtu.js'
import { PeerLink } from '../transport/peer-link.js'
import { limiterBurst, TokenBucket } from '../transport/token-bucket.js'
import { ByteBudget } from './byte-budget.js'
import { Download, DownloadError, type DownloadProgress, type DownloadResult } from './download.js'
import { Choker, type ChokerState } from './choker.js'
import type { PieceOrder } from './piece-scheduler.js'
import { Library, type SharedFile } from './library.js'
import { TrackerClient } from './tracker-client.js'

export interface NodeInit {
  id: number
  /** node_files/node<id>: the only folder this node reads or writes files in. */
  dir: string
  tracker: RemoteAddress
  host?: string
  port?: number
  heartbeatMs?: number
  datagramBytes?: number
  /** Cap for datagram-size probing; default: per path (see pathDatagramCap). */
  maxDatagramBytes?: number
  /** Bytes per second this node may send to peers / ask of peers; unlimited when absent. */
  uploadLimit?: number
  downloadLimit?: number
  noOwnerTimeoutMs?: number
  /** Impairs inbound peer datagrams (tests, simulator); the tracker's are exempt. */
  inboundFilter?: DatagramFilter
  /**
   * Whether this node uploads what it downloads: the verified pieces of a download in progress (as
   * a partial owner) and the file once complete. False makes a pure client (the simulator's
   * client-server mode). Default true.
   */
  share?: boolean
  /** Super-seed its complete files (see LibraryInit.superSeed). Default false. */
  superSeed?: boolean
  /** Piece size for files this node starts sharing (default DEFAULT_PIECE_SIZE). */
  pieceSize?: number
  /** Peers served at once (default UPLOAD_SLOTS). */
  uploadSlots?: number
  /** Piece selection in a swarm (default rarest first; 'sequential' is for comparison). */
  pieceOrder?: PieceOrder
  /** Downloads write with O_DIRECT where the file system allows it (default DIRECT_IO_WRITES). */
  directIo?: boolean
  /** Answers go out in runs of datagrams, one system call each, where the kernel can (default UDP_SEGMENTATION). */
  udpGso?: boolean
  /** Waiting datagrams are read in batches, one system call each, where the addon is built (default RECEIVE_BATCH). */
  recvBatch?: boolean
  logger: Logger
}

export interface NodeStatus {
  id: number
  address: RemoteAddress
  tracker: { address: RemoteAddress, connected: boolean }
  shared: Array<{ name: string, size: number, contentHash: string }>
  downloads: DownloadProgress[]
  peers: number
  served: { requests: number, bytes: number, choked: number }
  /** Who this node uploads to now (tit-for-tat), by address. */
  choker: ChokerState
  malformedDatagrams: number
}

/**
 * A udptorrent node: serves its shared files, downloads others', and keeps itself registered.
 * Console output is the caller's job: the node reports through return values, events and logs.
 */
export class UdpTorrentNode {
  /** 'withdrawn' ({ name, reason }): a shared file changed on disk and is no longer offered. */
  readonly events = new EventEmitter()
  private readonly downloads = new Map<string, { download: Download, abort: AbortController, done: Promise<DownloadResult> }>()
  private readonly links = new Map<string, PeerLink>()
  private readonly pathSizes = new Map<string, SharedPathSize>()
  private readonly downloadLimiter: TokenBucket | undefined
  private readonly receiveBudget = new ByteBudget(MAX_RECEIVE_BUFFER_BYTES)
  private stopping = false
  private readonly stopChoker: () => void

  private constructor (
    readonly init: NodeInit,
    readonly endpoint: Endpoint,
    readonly library: Library,
    readonly server: BlockServer,
    readonly tracker: TrackerClient,
    readonly choker: Choker
  ) {
    this.stopChoker = choker.start()
    this.downloadLimiter = init.downloadLimit === undefined ? undefined : new TokenBucket(init.downloadLimit, limiterBurst(init.downloadLimit, MAX_DATAGRAMS_PER_REQUEST * DEFAULT_DATAGRAM_BYTES))
  }

  static async start (init: NodeInit): Promise<UdpTorrentNode> {
    await mkdir(init.dir, { recursive: true })
    const identity = await loadOrCreateIdentity(path.join(init.dir, NODE_STATE_DIR, NODE_KEY_FILE))
    const endpoint = await Endpoint.open({
      host: init.host, port: init.port, logger: init.logger, inboundFilter: init.inboundFilter, filterExempt: init.tracker, segmentation: init.udpGso, batchReceive: init.recvBatch
    })
    let node: UdpTorrentNode | undefined
    const library = new Library({
      dir: init.dir,
      pieceSize: init.pieceSize,
      superSeed: init.superSeed,
      logger: init.logger,
      onWithdrawn: (name, reason) => node?.events.emit('withdrawn', { name, reason })
    })
    const choker = new Choker({
      slots: init.uploadSlots,
      receivedFrom: (peer) => node?.links.get(peer)?.stats.bytesReceived ?? 0,
      downloading: () => (node?.downloads.size ?? 0) > 0,
      onUnchoke: (peer, txid) => server.sendUnchoke(peer, txid)
    })
    const server = new BlockServer({
      endpoint,
      source: library,
      gate: choker,
      maxReadsInFlight: MAX_SERVE_READS_IN_FLIGHT,
      maxReadsPerPeer: MAX_SERVE_READS_PER_PEER,
      maxBytesInFlight: MAX_SERVE_BYTES_IN_FLIGHT,
      // A fresh secret per run: cookies from before a restart are refused and peers say HELLO again.
      cookies: new AddressTokens(randomBytes(32), COOKIE_BYTES),
      uploadLimiter: init.uploadLimit === undefined ? undefined : new TokenBucket(init.uploadLimit, limiterBurst(init.uploadLimit, MAX_DATAGRAMS_PER_REQUEST * DEFAULT_DATAGRAM_BYTES)),
      logger: init.logger,
      onServed: (to, stream, bytes) => {
        if (stream === Stream.Content) init.logger.debug({ to, bytes }, 'served')
      }
    })
    const tracker = new TrackerClient({
      endpoint,
      tracker: init.tracker,
      nodeId: init.id,
      identity,
      heartbeatMs: init.heartbeatMs,
      logger: init.logger,
      onJoined: async () => { await node?.announceAll() }
    })
    node = new UdpTorrentNode(init, endpoint, library, server, tracker, choker)
    endpoint.onUnchoke = (msg, from) => node?.unchokedBy(msg.txid, from)
    init.logger.info({ nodeId: init.id, address: endpoint.address, dir: init.dir, tracker: init.tracker }, 'node started')
    // Files shared before a restart are shared again; a file that went away is skipped.
    for (const name of await library.previouslyShared()) {
      try {
        await library.share(name)
      } catch (err) {
        init.logger.warn({ err, file: name }, 'previously shared file is no longer available')
      }
    }
    tracker.start()
    return node
  }

  get address (): RemoteAddress { return this.endpoint.address }

  /** An owner says we have a slot: every download waiting on it asks now, if the UNCHOKE is genuine. */
  private unchokedBy (txid: number, from: RemoteAddress): void {
    const link = this.links.get(`${from.host}:${from.port}`)
    if (link === undefined || !link.acceptUnchoke(txid)) {
      this.init.logger.debug({ from, txid }, 'unchoke ignored: not from an owner that choked us, or not for our last refused request')
      return
    }
    for (const { download } of this.downloads.values()) download.unchokedBy(link)
  }

  /** Starts sharing a file from the node's folder and tells the tracker. */
  async send (rawName: string): Promise<SharedFile> {
    const shared = await this.library.share(rawName)
    await this.tracker.own(shared.identity)
    this.init.logger.info({ file: shared.identity.name, size: shared.identity.size, contentHash: shared.identity.contentHash.toString('hex') }, 'sharing file')
    return shared
  }

  /** Starts a download; the returned promise settles when it completes or fails. */
  download (rawName: string): { download: Download, done: Promise<DownloadResult> } {
    const name = checkFileName(rawName)
    const running = this.downloads.get(name)
    if (running !== undefined) return running
    // The folder check in Download.run() cannot see a twin whose .part does not exist yet.
    const twin = [...this.downloads.keys()].find((other) => differsOnlyInCase(other, name))
    if (twin !== undefined) throw new DownloadError(`${name} differs only in case from ${twin}, which is downloading: on a case-insensitive disk both are one file`)
    const abort = new AbortController()
    // Every piece attempt in flight listens on the download's signal; the default cap of 10 is a false alarm here.
    setMaxListeners(0, abort.signal)
    // The partial announce runs beside the first piece requests rather than before them (it cost a
    // tracker round trip, 20 ms on netlab, before any data moved); the complete one waits for it, so
    // the tracker cannot see "partial" after "complete".
    let partialAnnounce: Promise<void> = Promise.resolve()
    const download = new Download({
      name,
      dir: this.init.dir,
      selfId: this.init.id,
      tracker: this.tracker,
      linkTo: (owner) => this.linkTo(owner),
      logger: this.init.logger,
      signal: abort.signal,
      noOwnerTimeoutMs: this.init.noOwnerTimeoutMs,
      pieceOrder: this.init.pieceOrder,
      receiveBudget: this.receiveBudget,
      directIo: this.init.directIo,
      onPiecesStarted: async (identity, manifest, store) => {
        if (this.init.share === false) return
        this.library.addPartial(identity, manifest, (piece) => store.has(piece))
        partialAnnounce = this.tracker.own(identity, abort.signal, false).catch((err: unknown) => this.init.logger.warn({ err, file: identity.name }, 'could not announce the partial file'))
      },
      onComplete: async (file, manifest) => {
        if (this.init.share === false) return
        await partialAnnounce
        const shared = await this.library.add(file, manifest)
        await this.tracker.own(shared.identity).catch((err: unknown) => this.init.logger.warn({ err, file }, 'could not announce the finished file'))
      }
    })
    const done = download.run()
    const entry = { download, abort, done }
    this.downloads.set(name, entry)
    done.then(() => this.downloads.delete(name), (err: unknown) => {
      this.downloads.delete(name)
      const identity = download.fileIdentity
      if (identity !== undefined) this.library.removePartial(identity.contentHash)
      this.init.logger.error({ file: name, err: (err as Error).message }, 'download failed')
    })
    return entry
  }

  status (): NodeStatus {
    return {
      id: this.init.id,
      address: this.address,
      tracker: { address: this.tracker.address, connected: this.tracker.isConnected },
      shared: this.library.list().map((f) => ({ name: f.identity.name, size: f.identity.size, contentHash: f.identity.contentHash.toString('hex') })),
      downloads: [...this.downloads.values()].map((d) => d.download.progress),
      peers: this.links.size,
      served: { requests: this.server.stats.requests, bytes: this.server.stats.bytesSent, choked: this.server.stats.choked },
      choker: this.choker.state,
      malformedDatagrams: this.endpoint.stats.malformed
    }
  }

  /** Leaves cleanly: downloads stop (their verified pieces are kept), EXIT is sent, sockets close. */
  async stop (): Promise<void> {
    if (this.stopping) return
    this.stopping = true
    this.stopChoker()
    for (const d of this.downloads.values()) d.abort.abort(new Error('node is shutting down'))
    await Promise.allSettled([...this.downloads.values()].map(async (d) => await d.done))
    try {
      await this.tracker.exit(AbortSignal.timeout(2000))
    } catch (err) {
      this.init.logger.warn({ err }, 'could not tell the tracker we are leaving')
    }
    for (const link of this.links.values()) link.close()
    await this.library.close()
    await this.endpoint.close()
    const served = this.server.stats
    this.init.logger.info({ nodeId: this.init.id, served: { requests: served.requests, datagrams: served.datagramsSent, bytes: served.bytesSent, dropped: served.dropped, choked: served.choked, unchokes: served.unchokes }, segmentation: this.endpoint.segmentation ?? 'off', receiveBatches: this.endpoint.receiveBatches ?? 'off' }, 'node stopped')
  }

  private async announceAll (): Promise<void> {
    for (const f of this.library.list()) {
      await this.tracker.own(f.identity).catch((err: unknown) => this.init.logger.warn({ err, file: f.identity.name }, 'could not announce file'))
    }
  }

  /** One datagram size per host, learnt by all the links to it (RFC 8899 §4.3). */
  private pathSize (host: string): SharedPathSize {
    let size = this.pathSizes.get(host)
    if (size === undefined) {
      size = new SharedPathSize(this.init.datagramBytes ?? DEFAULT_DATAGRAM_BYTES)
      this.pathSizes.set(host, size)
    }
    return size
  }

  private linkTo (owner: OwnerEntry): PeerLink {
    const key = `${owner.host}:${owner.port}`
    let link = this.links.get(key)
    if (link === undefined) {
      link = new PeerLink({
        endpoint: this.endpoint,
        remote: { host: owner.host, port: owner.port },
        datagramBytes: this.init.datagramBytes ?? DEFAULT_DATAGRAM_BYTES,
        pathSize: this.pathSize(owner.host),
        maxDatagramBytes: this.init.maxDatagramBytes ?? pathDatagramCap(owner.host),
        downloadLimiter: this.downloadLimiter,
        logger: this.init.logger
      })
      this.links.set(key, link)
    }
    return link
  }
}
