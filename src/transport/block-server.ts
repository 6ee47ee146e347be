import type { Logger } from 'pino'
import { DATA_HEADER_BYTES, encode, encodeDataHeader, MessageType, RejectReason, type RequestMsg, type Stream } from '../messages/index.js'
import { RATE_LIMIT_MAX_QUEUE_MS } from '../../configs.js'
import type { Endpoint, RemoteAddress } from './endpoint.js'
import type { TokenBucket } from './token-bucket.js'

/** Bytes a node is willing to serve under one content hash. */
export interface ServedResource {
  size: number
  read: (offset: number, length: number) => Promise<Buffer>
}

export interface BlockSource {
  open: (contentHash: Buffer, stream: Stream) => ServedResource | undefined
}

export interface BlockServerInit {
  endpoint: Endpoint
  source: BlockSource
  /** Reads in progress at once; requests beyond it are dropped and the requester retries. */
  maxReadsInFlight: number
  /** The node's upload rate limit; answers wait for it, and past a second's worth of backlog requests are dropped. */
  uploadLimiter?: TokenBucket
  logger?: Logger
  onServed?: (to: RemoteAddress, stream: Stream, bytes: number) => void
}

export interface BlockServerStats {
  requests: number
  rejected: number
  dropped: number
  readErrors: number
  datagramsSent: number
  bytesSent: number
}

/**
 * Answers data requests. It keeps no per-downloader state: every request carries what is needed to
 * answer it, is checked against the resource's bounds, and is answered with one datagram per block
 * of exactly the size the requester asked for.
 */
export class BlockServer {
  readonly stats: BlockServerStats = { requests: 0, rejected: 0, dropped: 0, readErrors: 0, datagramsSent: 0, bytesSent: 0 }
  private readsInFlight = 0
  private queuedBytes = 0
  private readonly sendOrder = new Map<string, Promise<void>>()

  constructor (private readonly init: BlockServerInit) {
    init.endpoint.onPeerRequest = (msg, from) => this.onRequest(msg, from)
  }

  private reject (msg: RequestMsg, to: RemoteAddress, reason: RejectReason): void {
    this.stats.rejected++
    try {
      this.init.endpoint.send(encode({ type: MessageType.Reject, txid: msg.txid, reason }), to)
    } catch (err) {
      // Only a closed endpoint throws here; the requester times out on its own.
      this.init.logger?.debug({ err }, 'could not send a reject')
    }
  }

  private onRequest (msg: RequestMsg, from: RemoteAddress): void {
    this.stats.requests++
    const resource = this.init.source.open(msg.contentHash, msg.stream)
    if (resource === undefined) {
      this.reject(msg, from, RejectReason.UnknownContent)
      return
    }
    if (msg.offset + msg.length > resource.size) {
      this.reject(msg, from, RejectReason.OutOfRange)
      return
    }
    const limiter = this.init.uploadLimiter
    if (this.readsInFlight >= this.init.maxReadsInFlight ||
        (limiter !== undefined && ((this.queuedBytes + msg.length) / limiter.bytesPerSecond) * 1000 > RATE_LIMIT_MAX_QUEUE_MS)) {
      this.stats.dropped++
      return
    }
    this.queuedBytes += msg.length
    this.readsInFlight++
    const read = resource.read(msg.offset, msg.length)
    // Reads run in parallel but answers leave in request order: the requester's loss detection
    // relies on an owner answering in order (RFC 9002's time threshold).
    const key = `${from.host}:${from.port}`
    const previous = this.sendOrder.get(key) ?? Promise.resolve()
    const sent = previous.then(async () => await read).then(async (data) => {
      if (limiter !== undefined) {
        const wait = limiter.delayFor(data.length)
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
        limiter.take(data.length)
      }
      this.sendData(msg, from, data)
    }, (err: unknown) => {
      this.stats.readErrors++
      this.init.logger?.warn({ err, offset: msg.offset, length: msg.length }, 'read for a peer failed')
      this.reject(msg, from, RejectReason.UnknownContent)
    }).finally(() => {
      this.readsInFlight--
      this.queuedBytes -= msg.length
      if (this.sendOrder.get(key) === sent) this.sendOrder.delete(key)
    })
    this.sendOrder.set(key, sent)
  }

  private sendData (msg: RequestMsg, to: RemoteAddress, data: Buffer): void {
    const payloadBytes = msg.datagramBytes - DATA_HEADER_BYTES
    const { endpoint } = this.init
    try {
      for (let at = 0; at < data.length; at += payloadBytes) {
        const chunk = data.subarray(at, Math.min(at + payloadBytes, data.length))
        endpoint.send([encodeDataHeader(msg.txid, msg.stream, msg.offset + at), chunk], to)
        this.stats.datagramsSent++
        this.stats.bytesSent += chunk.length
      }
    } catch (err) {
      this.init.logger?.debug({ err }, 'send to peer failed')
      return
    }
    this.init.onServed?.(to, msg.stream, data.length)
  }
}
