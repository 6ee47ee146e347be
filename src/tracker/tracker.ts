import { EventEmitter } from 'node:events'
import path from 'node:path'
import type { Logger } from 'pino'
import {
  CONNECTION_ID_BYTES, DEFAULT_HEARTBEAT_SECONDS, HOSTILE_LOG_BURST, HOSTILE_LOG_PER_SECOND, DEFAULT_MAX_OWNERS_RETURNED, MAX_TRACKED_ADDRESSES, PRUNE_AFTER_HEARTBEATS,
  PRUNE_SWEEP_FRACTION, SEQ_REPLAY_WINDOW, TRACKER_DB_FILE, TRACKER_DB_FLUSH_MS, TRACKER_REQUEST_BURST_PER_IP, TRACKER_REQUESTS_PER_SECOND_PER_IP,
  TRACKER_SECRET_FILE
} from '../../configs.js'
import {
  encode, MAX_OWNERS_ON_WIRE, MessageType, TrackerErrorCode, truncateUtf8,
  type SignedTrackerRequest, type TrackerReply, type TrackerRequest
} from '../messages/index.js'
import { AddressTokens, loadOrCreateSecret, verifyDatagram } from '../transport/auth.js'
import { PerAddressLimiter } from '../transport/token-bucket.js'
import { Endpoint, type RemoteAddress } from '../transport/endpoint.js'
import { trackerDbDir } from '../paths.js'
import { LogThrottle } from '../log-throttle.js'
import { Registry, RegistryError } from './registry.js'
import { TrackerStore } from './store.js'

export interface TrackerInit {
  home: string
  host?: string
  port?: number
  heartbeatMs?: number
  maxOwnersReturned?: number
  logger: Logger
}

/** What happened at the tracker, for observers such as the dashboard. */
export type TrackerEvent =
  | { type: 'join', nodeId: number, host: string, port: number, at: number }
  | { type: 'own', nodeId: number, file: string, size: number, contentHash: string, complete: boolean, at: number }
  | { type: 'need', nodeId: number, file: string, owners: number, at: number }
  | { type: 'update', nodeId: number, credited: number, at: number }
  | { type: 'exit', nodeId: number, at: number }
  | { type: 'prune', nodeId: number, at: number }

export interface TrackerStats {
  requests: Partial<Record<string, number>>
  errors: Partial<Record<string, number>>
  /** Requests refused before they reached the registry, by cause. */
  refused: Partial<Record<'rate-limit' | 'bad-connection' | 'bad-signature' | 'replay' | 'foreign-key' | 'unknown-key', number>>
  pruned: number
}

const ERROR_CODES: Record<RegistryError['code'], TrackerErrorCode> = {
  'unknown-node': TrackerErrorCode.UnknownNode,
  forbidden: TrackerErrorCode.Forbidden,
  'not-found': TrackerErrorCode.NotFound,
  limit: TrackerErrorCode.Limit
}

/** Bytes of an ERROR reply besides its text: header, code, text length. */
const ERROR_OVERHEAD_BYTES = 8 + 2 + 1

/**
 * The tracker: a UDP server in front of the Registry, with a prune sweep and a debounced,
 * atomic store. Bad requests get an error reply or nothing; none of them can stop the server.
 */
export class Tracker {
  readonly stats: TrackerStats = { requests: {}, errors: {}, refused: {}, pruned: 0 }
  private readonly limiter = new PerAddressLimiter(TRACKER_REQUESTS_PER_SECOND_PER_IP, TRACKER_REQUEST_BURST_PER_IP, MAX_TRACKED_ADDRESSES)
  /** The last reply to each node, sent again when its request is retransmitted. */
  private readonly refusalLog = new LogThrottle(HOSTILE_LOG_PER_SECOND, HOSTILE_LOG_BURST)
  /** Node id → its recent replies by request seq, so a retransmitted request is answered again. */
  private readonly recentReplies = new Map<number, Map<number, { txid: number, datagram: Buffer }>>()
  /** Emits 'event' (TrackerEvent) after each change, and 'request' ({ type, ms, ok }) for every request handled. */
  readonly events = new EventEmitter()
  private savedVersion = 0
  private saveTimer: NodeJS.Timeout | undefined
  private saving: Promise<void> = Promise.resolve()
  private readonly sweep: NodeJS.Timeout

  private constructor (
    readonly endpoint: Endpoint,
    readonly registry: Registry,
    private readonly store: TrackerStore,
    private readonly heartbeatMs: number,
    private readonly maxOwners: number,
    private readonly tokens: AddressTokens,
    private readonly logger: Logger
  ) {
    endpoint.onTrackerRequest = (msg, from, raw) => this.handle(msg, from, raw)
    this.sweep = setInterval(() => this.prune(), Math.max(50, heartbeatMs * PRUNE_SWEEP_FRACTION))
  }

  static async start (init: TrackerInit): Promise<Tracker> {
    const heartbeatMs = init.heartbeatMs ?? DEFAULT_HEARTBEAT_SECONDS * 1000
    const registry = new Registry({ pruneAfterMs: heartbeatMs * PRUNE_AFTER_HEARTBEATS })
    const store = new TrackerStore(path.join(trackerDbDir(init.home), TRACKER_DB_FILE))
    const snap = await store.load()
    if (snap !== undefined) {
      registry.restore(snap)
      init.logger.info({ nodes: registry.nodeCount, files: registry.fileCount, db: store.file }, 'state restored')
    }
    const secret = await loadOrCreateSecret(path.join(trackerDbDir(init.home), TRACKER_SECRET_FILE))
    // Every reply is one datagram: runs of them (segmentation) have nothing to do here. Requests
    // are few and small, and the registry keeps parts of them: plain reads, each its own buffer.
    const endpoint = await Endpoint.open({ host: init.host, port: init.port, logger: init.logger, segmentation: false, batchReceive: false })
    const maxOwners = Math.min(init.maxOwnersReturned ?? DEFAULT_MAX_OWNERS_RETURNED, MAX_OWNERS_ON_WIRE)
    const tracker = new Tracker(endpoint, registry, store, heartbeatMs, maxOwners, new AddressTokens(secret, CONNECTION_ID_BYTES), init.logger)
    tracker.savedVersion = registry.version
    init.logger.info({ address: endpoint.address, heartbeatMs, maxOwners }, 'tracker listening')
    return tracker
  }

  get address (): RemoteAddress { return this.endpoint.address }

  async close (): Promise<void> {
    clearInterval(this.sweep)
    if (this.saveTimer !== undefined) clearTimeout(this.saveTimer)
    await this.endpoint.close()
    await this.flush()
  }

  /** Writes the state now if it changed since the last write. */
  async flush (): Promise<void> {
    this.saving = this.saving.then(async () => {
      const version = this.registry.version
      if (version === this.savedVersion) return
      await this.store.save(this.registry.snapshot())
      this.savedVersion = version
    }).catch((err: unknown) => this.logger.error({ err }, 'could not write tracker database'))
    await this.saving
  }

  private scheduleSave (): void {
    if (this.saveTimer !== undefined || this.registry.version === this.savedVersion) return
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined
      void this.flush()
    }, TRACKER_DB_FLUSH_MS)
  }

  private prune (): void {
    const gone = this.registry.prune()
    if (gone.length === 0) return
    this.stats.pruned += gone.length
    for (const id of gone) {
      this.recentReplies.delete(id)
      this.logger.info({ event: 'prune', nodeId: id }, 'node pruned after missed heartbeats')
      this.emit({ type: 'prune', nodeId: id, at: Date.now() })
    }
    this.scheduleSave()
  }

  private emit (event: TrackerEvent): void {
    try {
      this.events.emit('event', event)
    } catch (err) {
      this.logger.error({ err }, 'tracker event listener threw')
    }
  }

  private reply (to: RemoteAddress, msg: TrackerReply, request?: SignedTrackerRequest): void {
    const datagram = encode(msg)
    if (request !== undefined) {
      const replies = this.recentReplies.get(request.nodeId) ?? new Map<number, { txid: number, datagram: Buffer }>()
      replies.set(request.seq, { txid: msg.txid, datagram })
      // Map order is insertion order: drop the oldest past the window the registry keeps.
      for (const seq of replies.keys()) {
        if (replies.size <= SEQ_REPLAY_WINDOW) break
        replies.delete(seq)
      }
      this.recentReplies.set(request.nodeId, replies)
    }
    this.endpoint.send(datagram, to)
  }

  /**
   * Refuses a request that failed a check, with an error no larger than the request: the sender
   * has not proved its address, so the reply must not amplify.
   */
  private refuse (msg: TrackerRequest, from: RemoteAddress, raw: Buffer, cause: keyof TrackerStats['refused'], code: TrackerErrorCode, text: string): void {
    this.stats.refused[cause] = (this.stats.refused[cause] ?? 0) + 1
    const suppressed = this.refusalLog.admit()
    if (suppressed !== undefined) this.logger.warn({ event: 'refused', cause, type: MessageType[msg.type], from, nodeId: 'nodeId' in msg ? msg.nodeId : undefined, suppressed }, text)
    const room = raw.length - ERROR_OVERHEAD_BYTES
    if (room >= 0) this.endpoint.send(encode({ type: MessageType.Error, txid: msg.txid, code, text: truncateUtf8(text, room) }), from)
  }

  /** Checks a signed request's address proof, key, signature and freshness; false when it was refused or already answered. */
  private admit (msg: SignedTrackerRequest, from: RemoteAddress, raw: Buffer): boolean {
    if (!this.tokens.check(from, msg.connectionId)) {
      this.refuse(msg, from, raw, 'bad-connection', TrackerErrorCode.BadConnection, 'connection id missing or expired; connect again')
      return false
    }
    const bound = this.registry.keyOf(msg.nodeId)
    if (msg.type === MessageType.Register && bound !== undefined && !bound.equals(msg.publicKey)) {
      this.refuse(msg, from, raw, 'foreign-key', TrackerErrorCode.Forbidden, `node id ${msg.nodeId} belongs to another key`)
      return false
    }
    const key = bound ?? (msg.type === MessageType.Register ? msg.publicKey : undefined)
    if (key === undefined) {
      this.refuse(msg, from, raw, 'unknown-key', TrackerErrorCode.UnknownNode, `node ${msg.nodeId} is not registered`)
      return false
    }
    if (!verifyDatagram(raw, key)) {
      this.refuse(msg, from, raw, 'bad-signature', TrackerErrorCode.BadSignature, 'bad signature')
      return false
    }
    const fresh = this.registry.acceptSeq(msg.nodeId, msg.seq, msg.txid)
    if (fresh === 'retransmit') {
      const last = this.recentReplies.get(msg.nodeId)?.get(msg.seq)
      if (last?.txid === msg.txid) this.endpoint.send(last.datagram, from)
      return false
    }
    if (fresh === 'replay') {
      this.refuse(msg, from, raw, 'replay', TrackerErrorCode.Replay, 'sequence number already used')
      return false
    }
    // Proof of possession done: the first key to register an id owns it.
    if (bound === undefined) this.registry.bindKey(msg.nodeId, key)
    return true
  }

  private handle (msg: TrackerRequest, from: RemoteAddress, raw: Buffer): void {
    const kind = MessageType[msg.type]
    this.stats.requests[kind] = (this.stats.requests[kind] ?? 0) + 1
    if (!this.limiter.allow(from.host)) {
      this.stats.refused['rate-limit'] = (this.stats.refused['rate-limit'] ?? 0) + 1
      return
    }
    if (msg.type === MessageType.Connect) {
      this.reply(from, { type: MessageType.ConnectReply, txid: msg.txid, connectionId: this.tokens.issue(from) })
      return
    }
    if (!this.admit(msg, from, raw)) return
    const { host, port } = from
    const started = performance.now()
    let ok = true
    const at = Date.now()
    try {
      switch (msg.type) {
        case MessageType.Register: {
          const { known } = this.registry.register(msg.nodeId, host, port)
          if (!known) {
            this.logger.info({ event: 'join', nodeId: msg.nodeId, host, port }, 'node joined')
            this.emit({ type: 'join', nodeId: msg.nodeId, host, port, at })
          }
          this.reply(from, { type: MessageType.RegisterAck, txid: msg.txid, heartbeatMs: this.heartbeatMs, known }, msg)
          break
        }
        case MessageType.Own:
          this.registry.own(msg.nodeId, host, port, msg.file, msg.complete)
          this.logger.info({ event: 'own', nodeId: msg.nodeId, complete: msg.complete, file: msg.file.name, size: msg.file.size, contentHash: msg.file.contentHash.toString('hex') }, 'node owns file')
          this.emit({ type: 'own', nodeId: msg.nodeId, file: msg.file.name, size: msg.file.size, contentHash: msg.file.contentHash.toString('hex'), complete: msg.complete, at })
          this.reply(from, { type: MessageType.Ack, txid: msg.txid }, msg)
          break
        case MessageType.Need: {
          const result = this.registry.need(msg.nodeId, host, port, msg.name, this.maxOwners)
          this.logger.info({ event: 'need', nodeId: msg.nodeId, file: msg.name, owners: result.owners.length, variants: result.variants }, 'owners requested')
          this.emit({ type: 'need', nodeId: msg.nodeId, file: msg.name, owners: result.owners.length, at })
          if (result.variants > 1) this.logger.warn({ file: msg.name, variants: result.variants }, 'one name maps to several contents')
          this.reply(from, { type: MessageType.NeedReply, txid: msg.txid, ...result }, msg)
          break
        }
        case MessageType.Update: {
          const credited = this.registry.update(msg.nodeId, host, port, msg.contentHash, msg.received)
          this.logger.info({ event: 'update', nodeId: msg.nodeId, credited, entries: msg.received.length }, 'upload credit reported')
          this.emit({ type: 'update', nodeId: msg.nodeId, credited, at })
          this.reply(from, { type: MessageType.Ack, txid: msg.txid }, msg)
          break
        }
        case MessageType.Exit:
          this.registry.exit(msg.nodeId, host, port)
          this.logger.info({ event: 'exit', nodeId: msg.nodeId }, 'node exited')
          this.emit({ type: 'exit', nodeId: msg.nodeId, at })
          this.reply(from, { type: MessageType.Ack, txid: msg.txid }, msg)
          break
      }
    } catch (err) {
      if (!(err instanceof RegistryError)) throw err
      ok = false
      this.stats.errors[err.code] = (this.stats.errors[err.code] ?? 0) + 1
      this.logger.warn({ event: 'refused', type: kind, nodeId: msg.nodeId, from, code: err.code }, err.message)
      this.reply(from, { type: MessageType.Error, txid: msg.txid, code: ERROR_CODES[err.code], text: err.message }, msg)
    }
    this.events.emit('request', { type: kind, ms: performance.now() - started, ok })
    this.scheduleSave()
  }
}
