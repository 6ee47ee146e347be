import type { Logger } from 'pino'
import { DATA_HEADER_BYTES, encode, encodeDataHeader, MessageType, RejectReason, Stream, type CancelMsg, type HelloMsg, type RequestMsg } from '../messages/index.js'
import type { AddressTokens } from './auth.js'
import { RATE_LIMIT_MAX_QUEUE_MS } from '../../configs.js'
import type { Endpoint, RemoteAddress } from './endpoint.js'
import type { TokenBucket } from './token-bucket.js'

/** Bytes a node is willing to serve under one content hash. */
export interface ServedResource {
  size: number
  read: (offset: number, length: number) => Promise<Buffer>
  /** For a partial owner: whether every byte of the range is verified and may be served. */
  has?: (offset: number, length: number) => boolean
  /**
   * Called for a content request that passed every cap, just before it is read: false refuses it
   * as missing. A super-seed uses it to give each piece to one peer first (see Library).
   */
  claim?: (offset: number, length: number, peer: string) => boolean
  /** Called once a content answer has been sent in full. */
  served?: (offset: number, length: number, peer: string) => void
}

/** Decides which peers get file data now (the node's choker); manifests and bitfields are always served. */
export interface UploadGate {
  /** `txid` is the request's: the UNCHOKE that may follow a refusal names it. */
  allows: (peer: string, txid: number) => boolean
  served: (peer: string, bytes: number) => void
}

export interface BlockSource {
  open: (contentHash: Buffer, stream: Stream) => ServedResource | undefined
}

export interface BlockServerInit {
  endpoint: Endpoint
  source: BlockSource
  /** Reads in progress at once; requests beyond it are dropped and the requester retries. */
  maxReadsInFlight: number
  /** Reads in progress for one peer; a peer cannot take the whole budget. */
  maxReadsPerPeer: number
  /** Bytes of answers read and not yet sent, for all peers together; beyond it requests are dropped. Default: unbounded. */
  maxBytesInFlight?: number
  /** Issues and checks handshake cookies: data goes only to addresses that answered a HELLO_ACK. */
  cookies: AddressTokens
  /** The node's upload rate limit; answers wait for it, and past a second's worth of backlog requests are dropped. */
  uploadLimiter?: TokenBucket
  gate?: UploadGate
  logger?: Logger
  onServed?: (to: RemoteAddress, stream: Stream, bytes: number) => void
}

export interface BlockServerStats {
  requests: number
  hellos: number
  /** Requests without a valid cookie (spoofed, stale, or never handshaken). */
  badCookies: number
  rejected: number
  /** Content requests refused for want of an upload slot. */
  choked: number
  /** Peers told of a slot after a refusal. */
  unchokes: number
  dropped: number
  /** Requests for bytes this peer's earlier request, still waiting its turn, will send anyway. */
  alreadyQueued: number
  /** Answers, or their unsent rest, dropped because the peer cancelled them. */
  cancelled: number
  readErrors: number
  datagramsSent: number
  bytesSent: number
  /** Of bytesSent, file content (not manifests or bitfields). */
  contentBytesSent: number
}

/** One peer's answers in progress. */
interface PeerAnswers {
  /** The latest answer: the next one is sent after it, so a peer's answers leave in request order. */
  tail: Promise<void>
  /** Answers read or being read, begun or not (at most maxReadsPerPeer). */
  reads: number
  /** Answers not begun yet. */
  waiting: Set<RequestMsg>
  /** Every answer read or being read, begun or not, by its request's txid (what CANCEL names). */
  byTxid: Map<number, RequestMsg>
  /** Answers the peer no longer wants (CANCEL): not sent, or not the rest of them. */
  cancelled: Set<RequestMsg>
}

/** Whether one of `waiting` will send every byte `msg` asks for, in the same datagrams. */
function coversRequest (waiting: Set<RequestMsg>, msg: RequestMsg): boolean {
  for (const w of waiting) {
    if (w.stream === msg.stream && w.offset <= msg.offset && msg.offset + msg.length <= w.offset + w.length &&
        w.datagramBytes === msg.datagramBytes && w.contentHash.equals(msg.contentHash)) return true
  }
  return false
}

/**
 * Answers data requests. It keeps no per-downloader state: every request carries what is needed to
 * answer it, is checked against the resource's bounds, and is answered with one datagram per block
 * of exactly the size the requester asked for.
 */
export class BlockServer {
  readonly stats: BlockServerStats = {
    requests: 0, hellos: 0, badCookies: 0, rejected: 0, choked: 0, unchokes: 0, dropped: 0, alreadyQueued: 0, cancelled: 0, readErrors: 0, datagramsSent: 0, bytesSent: 0, contentBytesSent: 0
  }
  private readsInFlight = 0
  private queuedBytes = 0
  /** Per peer with answers in progress; removed when its last answer is done. */
  private readonly answers = new Map<string, PeerAnswers>()

  constructor (private readonly init: BlockServerInit) {
    init.endpoint.onPeerRequest = (msg, from) => {
      if (msg.type === MessageType.Hello) this.onHello(msg, from)
      else if (msg.type === MessageType.Cancel) this.onCancel(msg, from)
      else this.onRequest(msg, from)
    }
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

  /**
   * Tells a peer whose request was refused as Choked that it has a slot now. `peer` is a key this
   * server made from a request that carried a valid cookie, so the address has proved it is real;
   * and one refusal earns at most one UNCHOKE, a datagram smaller than the request: no amplification.
   */
  sendUnchoke (peer: string, txid: number): void {
    const at = peer.lastIndexOf(':')
    try {
      this.init.endpoint.send(encode({ type: MessageType.Unchoke, txid }), { host: peer.slice(0, at), port: Number(peer.slice(at + 1)) })
      this.stats.unchokes++
    } catch (err) {
      this.init.logger?.debug({ err }, 'could not send an unchoke')
    }
  }

  /**
   * The peer no longer wants the answer to one of its requests (it got the piece elsewhere). Only
   * an answer still in progress is affected, and only by the cookie's owner; nothing is sent back.
   */
  private onCancel (msg: CancelMsg, from: RemoteAddress): void {
    if (!this.init.cookies.check(from, msg.cookie)) {
      this.stats.badCookies++
      return
    }
    const own = this.answers.get(`${from.host}:${from.port}`)
    const req = own?.byTxid.get(msg.txid)
    if (own === undefined || req === undefined || own.cancelled.has(req)) return
    own.cancelled.add(req)
    own.waiting.delete(req) // no longer covers a re-request for its bytes
    this.stats.cancelled++
  }

  /** HELLO is padded to the size of HELLO_ACK, so answering any address never amplifies. */
  private onHello (msg: HelloMsg, from: RemoteAddress): void {
    this.stats.hellos++
    try {
      this.init.endpoint.send(encode({ type: MessageType.HelloAck, txid: msg.txid, cookie: this.init.cookies.issue(from) }), from)
    } catch (err) {
      this.init.logger?.debug({ err }, 'could not answer a hello')
    }
  }

  private onRequest (msg: RequestMsg, from: RemoteAddress): void {
    this.stats.requests++
    if (!this.init.cookies.check(from, msg.cookie)) {
      this.stats.badCookies++
      this.reject(msg, from, RejectReason.BadCookie)
      return
    }
    const resource = this.init.source.open(msg.contentHash, msg.stream)
    if (resource === undefined) {
      this.reject(msg, from, RejectReason.UnknownContent)
      return
    }
    if (msg.offset + msg.length > resource.size) {
      this.reject(msg, from, RejectReason.OutOfRange)
      return
    }
    if (resource.has?.(msg.offset, msg.length) === false) {
      this.reject(msg, from, RejectReason.Missing)
      return
    }
    const peer = `${from.host}:${from.port}`
    if (msg.stream === Stream.Content && this.init.gate !== undefined && !this.init.gate.allows(peer, msg.txid)) {
      this.stats.choked++
      this.reject(msg, from, RejectReason.Choked)
      return
    }
    // A requester that timed out while its answer waited behind other peers' (an upload limit
    // makes queues) asks again. Sending the bytes twice wastes the upload the limit rations.
    const queued = this.answers.get(peer)
    if (queued !== undefined && coversRequest(queued.waiting, msg)) {
      this.stats.alreadyQueued++
      return
    }
    const limiter = this.init.uploadLimiter
    if (this.readsInFlight >= this.init.maxReadsInFlight || this.queuedBytes + msg.length > (this.init.maxBytesInFlight ?? Infinity) ||
        (limiter !== undefined && ((this.queuedBytes + msg.length) / limiter.bytesPerSecond) * 1000 > RATE_LIMIT_MAX_QUEUE_MS)) {
      this.stats.dropped++
      return
    }
    if ((queued?.reads ?? 0) >= this.init.maxReadsPerPeer) {
      this.stats.dropped++
      return
    }
    if (msg.stream === Stream.Content && resource.claim?.(msg.offset, msg.length, peer) === false) {
      this.reject(msg, from, RejectReason.Missing)
      return
    }
    const own = queued ?? { tail: Promise.resolve(), reads: 0, waiting: new Set<RequestMsg>(), byTxid: new Map<number, RequestMsg>(), cancelled: new Set<RequestMsg>() }
    if (queued === undefined) this.answers.set(peer, own)
    this.queuedBytes += msg.length
    own.reads++
    own.waiting.add(msg)
    own.byTxid.set(msg.txid, msg)
    this.readsInFlight++
    const read = resource.read(msg.offset, msg.length)
    // Reads run in parallel but answers leave in request order: the requester's loss detection
    // relies on an owner answering in order (RFC 9002's time threshold).
    const sent = own.tail.then(async () => await read).then(async (data) => {
      own.waiting.delete(msg)
      if (own.cancelled.has(msg)) return
      // Only what left counts: a CANCEL or a send error can stop an answer part way.
      const sentBytes = await this.sendData(msg, from, data, () => own.cancelled.has(msg))
      if (msg.stream === Stream.Content && sentBytes > 0) resource.served?.(msg.offset, sentBytes, peer)
    }, (err: unknown) => {
      this.stats.readErrors++
      this.init.logger?.warn({ err, offset: msg.offset, length: msg.length }, 'read for a peer failed')
      this.reject(msg, from, RejectReason.UnknownContent)
    }).finally(() => {
      own.waiting.delete(msg)
      own.cancelled.delete(msg)
      if (own.byTxid.get(msg.txid) === msg) own.byTxid.delete(msg.txid)
      this.readsInFlight--
      this.queuedBytes -= msg.length
      // Answers finish in order, so the last one to finish is the chain's tail.
      if (--own.reads === 0 && this.answers.get(peer) === own) this.answers.delete(peer)
    })
    own.tail = sent
  }

  /**
   * Sends a response: all at once, in runs where the endpoint can (Endpoint.sendDatagrams), or,
   * under an upload limit, datagram by datagram. There each datagram waits for its own
   * tokens: the first leaves at once and the rest stream at the rate, so the requester's RTT
   * samples (taken on the first datagram) see the real queue, not a whole response's worth of wait.
   * Returns the bytes sent, from the start of the range: fewer than asked when cancelled or failed.
   */
  private async sendData (msg: RequestMsg, to: RemoteAddress, data: Buffer, cancelled: () => boolean): Promise<number> {
    const payloadBytes = msg.datagramBytes - DATA_HEADER_BYTES
    const { endpoint, uploadLimiter } = this.init
    let sent = 0
    try {
      if (uploadLimiter === undefined) {
        // Nothing waits between datagrams: the endpoint sends them in runs, one system call each.
        const datagrams: Buffer[][] = []
        for (let at = 0; at < data.length; at += payloadBytes) {
          datagrams.push([encodeDataHeader(msg.txid, msg.stream, msg.offset + at), data.subarray(at, Math.min(at + payloadBytes, data.length))])
        }
        endpoint.sendDatagrams(datagrams, to)
        sent = data.length
        this.countSent(msg.stream, to, datagrams.length, sent)
      } else {
        for (let at = 0; at < data.length; at += payloadBytes) {
          const chunk = data.subarray(at, Math.min(at + payloadBytes, data.length))
          const wait = uploadLimiter.delayFor(chunk.length)
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
          // A CANCEL may have come while this waited for the upload limit: the rest is not wanted.
          if (cancelled()) return sent
          uploadLimiter.take(chunk.length)
          endpoint.send([encodeDataHeader(msg.txid, msg.stream, msg.offset + at), chunk], to)
          sent += chunk.length
          this.countSent(msg.stream, to, 1, chunk.length)
        }
      }
    } catch (err) {
      this.init.logger?.debug({ err }, 'send to peer failed')
      return sent
    }
    this.init.onServed?.(to, msg.stream, sent)
    return sent
  }

  private countSent (stream: Stream, to: RemoteAddress, datagrams: number, bytes: number): void {
    this.stats.datagramsSent += datagrams
    this.stats.bytesSent += bytes
    if (stream === Stream.Content) {
      this.stats.contentBytesSent += bytes
      this.init.gate?.served(`${to.host}:${to.port}`, bytes)
    }
  }
}
