import dgram from 'node:dgram'
import { isIPv6 } from 'node:net'
import type { Logger } from 'pino'
import { DEFAULT_SOCKET_BUFFER_BYTES, HOSTILE_LOG_BURST, HOSTILE_LOG_PER_SECOND, MAX_DATAGRAM_BYTES, READ_WAITING_MAX_BATCHES, RECEIVE_BATCH, UDP_SEGMENTATION } from '../../configs.js'
import { LogThrottle } from '../log-throttle.js'
import {
  MessageType, TYPE_BYTE_OFFSET, tryDecode,
  type DataMsg, type HelloAckMsg, type HelloMsg, type Message, type MalformedCause, type RejectMsg, type RequestMsg, type TrackerReply, type TrackerRequest, type UnchokeMsg, type CancelMsg
} from '../messages/index.js'
import { BatchReceiver, type BatchReceiverInit, type BatchReceiveStats } from './batch-receive.js'
import { TransportClosedError } from './errors.js'
import { SegmentedSender, type SegmentedSenderInit, type SegmentedSendStats } from './segmented-send.js'

export interface RemoteAddress { host: string, port: number }

/** Something that may drop, delay or duplicate inbound datagrams (tests and the simulator). */
export interface DatagramFilter {
  push: (datagram: Buffer, deliver: (d: Buffer) => void) => void
  close: () => void
}

export interface EndpointInit {
  host?: string
  port?: number
  socketBufferBytes?: number
  logger?: Logger
  /** Applied to every inbound datagram not from `filterExempt` (e.g. the tracker). */
  inboundFilter?: DatagramFilter
  filterExempt?: RemoteAddress
  /** Send runs of equal-sized datagrams in one system call where the kernel can (default UDP_SEGMENTATION). */
  segmentation?: boolean
  /** Tests: stand-ins for the segmentation addon. */
  segmenter?: Omit<SegmentedSenderInit, 'socket'>
  /** Read waiting datagrams in batches, one system call each, where the addon is built (default RECEIVE_BATCH). */
  batchReceive?: boolean
  /** Tests: a stand-in for the addon's batched receive. */
  batchReceiver?: Omit<BatchReceiverInit, 'socket'>
}

/** `receivedAt` is when the datagram was read (performance.now()): one reading per batch, not per datagram. */
export type ReplyHandler = (msg: TrackerReply | DataMsg | RejectMsg | HelloAckMsg, from: RemoteAddress, receivedAt: number) => void

export interface EndpointStats {
  datagramsIn: number
  datagramsOut: number
  bytesIn: number
  bytesOut: number
  malformed: number
  malformedByCause: Partial<Record<MalformedCause, number>>
  /** Replies whose txid matched nothing pending (late, duplicated or forged). */
  unsolicited: number
  sendErrors: number
}

/**
 * One UDP socket and the dispatch of what arrives on it: requests go to the role's handlers,
 * replies go to whoever registered their transaction id. Malformed datagrams are counted, logged
 * at a bounded rate and dropped; no handler exception escapes the socket loop.
 */
export class Endpoint {
  /** `raw` is the datagram as received, for checking its signature. */
  onTrackerRequest: ((msg: TrackerRequest, from: RemoteAddress, raw: Buffer) => void) | undefined
  onPeerRequest: ((msg: RequestMsg | HelloMsg | CancelMsg, from: RemoteAddress) => void) | undefined
  /** An owner's UNCHOKE: it names a txid whose transaction has ended, so no pending handler has it. */
  onUnchoke: ((msg: UnchokeMsg, from: RemoteAddress) => void) | undefined

  readonly stats: EndpointStats = {
    datagramsIn: 0, datagramsOut: 0, bytesIn: 0, bytesOut: 0, malformed: 0, malformedByCause: {}, unsolicited: 0, sendErrors: 0
  }

  private readonly pending = new Map<number, ReplyHandler>()
  private nextTxid = (Math.random() * 0xffffffff) >>> 0
  private closed = false
  /** When the datagrams being dispatched now were read: a clock reading per wake-up, not per datagram. */
  private readAt = 0
  private readonly malformedLog = new LogThrottle(HOSTILE_LOG_PER_SECOND, HOSTILE_LOG_BURST)

  private constructor (
    private readonly socket: dgram.Socket,
    private readonly logger: Logger | undefined,
    private readonly filter: DatagramFilter | undefined,
    private readonly filterExempt: RemoteAddress | undefined,
    private readonly segmenter: SegmentedSender | undefined,
    private readonly batches: BatchReceiver | undefined
  ) {}

  static async open (init: EndpointInit = {}): Promise<Endpoint> {
    const host = init.host ?? '0.0.0.0'
    const socket = dgram.createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', reuseAddr: false })
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(init.port ?? 0, host, () => {
        socket.off('error', reject)
        resolve()
      })
    })
    const bufferBytes = init.socketBufferBytes ?? DEFAULT_SOCKET_BUFFER_BYTES
    try {
      socket.setRecvBufferSize(bufferBytes)
      socket.setSendBufferSize(bufferBytes)
    } catch (err) {
      init.logger?.warn({ err, bufferBytes }, 'could not size socket buffers')
    }
    const segmenter = (init.segmentation ?? UDP_SEGMENTATION) ? SegmentedSender.open({ ...init.segmenter, socket }) : undefined
    const batches = (init.batchReceive ?? RECEIVE_BATCH) ? BatchReceiver.open({ ...init.batchReceiver, socket }) : undefined
    const ep = new Endpoint(socket, init.logger, init.inboundFilter, init.filterExempt, segmenter, batches)
    socket.on('message', (buf, rinfo) => {
      ep.readAt = performance.now()
      ep.receive(buf, { host: rinfo.address, port: rinfo.port })
      if (!ep.closed) ep.drainBatch()
    })
    socket.on('error', (err) => ep.logger?.warn({ err }, 'socket error'))
    return ep
  }

  /**
   * Reads and dispatches what already waits on the socket, up to `maxBatches` batches; returns the
   * datagrams read (0 without batched receives). Node runs due timers before it reads the sockets:
   * a link's timer calls this first, so that what arrived while the event loop was busy counts as
   * arrived, not as lost or timed out.
   */
  readWaiting (maxBatches = READ_WAITING_MAX_BATCHES): number {
    let total = 0
    for (let i = 0; i < maxBatches && !this.closed; i++) {
      const got = this.drainBatch()
      total += got
      if (got < (this.batches?.capacity ?? 1)) break
    }
    return total
  }

  get address (): RemoteAddress {
    const a = this.socket.address()
    return { host: a.address, port: a.port }
  }

  /** Reserves a transaction id and routes replies carrying it to `handler` until released. */
  register (handler: ReplyHandler): number {
    for (;;) {
      const txid = this.nextTxid
      this.nextTxid = (this.nextTxid + 1) >>> 0
      if (!this.pending.has(txid)) {
        this.pending.set(txid, handler)
        return txid
      }
    }
  }

  release (txid: number): void {
    this.pending.delete(txid)
  }

  send (data: Buffer | Buffer[], to: RemoteAddress): void {
    if (this.closed) throw new TransportClosedError('endpoint is closed')
    const bytes = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.length
    this.stats.datagramsOut++
    this.stats.bytesOut += bytes
    this.socket.send(data, to.port, to.host, (err) => {
      if (err != null) {
        this.stats.sendErrors++
        this.logger?.debug({ err, to }, 'send failed')
      }
    })
    this.segmenter?.plainSendQueued()
  }

  /**
   * Sends datagrams to one address, in order: each run of equal-sized ones (the last may be shorter)
   * in one system call where the kernel segments it, the others one call each.
   */
  sendDatagrams (datagrams: Buffer[][], to: RemoteAddress): void {
    if (this.closed) throw new TransportClosedError('endpoint is closed')
    const segmenter = this.segmenter
    for (let i = 0; i < datagrams.length;) {
      let end = i + 1
      if (segmenter !== undefined) {
        const size = byteLength(datagrams[i] as Buffer[])
        let total = size
        while (end < datagrams.length && end - i < segmenter.maxSegments) {
          const n = byteLength(datagrams[end] as Buffer[])
          if (n > size || total + n > MAX_DATAGRAM_BYTES) break
          total += n
          end++
          if (n < size) break
        }
        if (end - i >= 2 && segmenter.trySend(datagrams.slice(i, end).flat(), size, end - i, to.host, to.port)) {
          this.stats.datagramsOut += end - i
          this.stats.bytesOut += total
          i = end
          continue
        }
      }
      for (; i < end; i++) this.send(datagrams[i] as Buffer[], to)
    }
  }

  /** Datagrams read in batches, when the addon's batched receive is in use; undefined when not. */
  get receiveBatches (): (BatchReceiveStats & { disabledBy: string | undefined }) | undefined {
    const b = this.batches
    return b === undefined ? undefined : { ...b.stats, disabledBy: b.disabledBy }
  }

  /** Runs sent in one system call each, when the segmentation addon is in use; undefined when not. */
  get segmentation (): (SegmentedSendStats & { disabledBy: string | undefined }) | undefined {
    const s = this.segmenter
    return s === undefined ? undefined : { ...s.stats, disabledBy: s.disabledBy }
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.filter?.close()
    this.pending.clear()
    await new Promise<void>((resolve) => this.socket.close(() => resolve()))
  }

  /** One batch of what waits on the socket, dispatched; the datagrams it read. */
  private drainBatch (): number {
    if (this.batches === undefined) return 0
    // Read again before the batch: a reply in it is to a request sent before this reading, so its
    // RTT sample is never negative.
    this.readAt = performance.now()
    return this.batches.drain(this.receiveFromBatch, this.mayLend)
  }

  private readonly receiveFromBatch = (buf: Buffer, from: RemoteAddress): void => this.receive(buf, from)

  // Only DATA is lent: its payload is the one field that aliases the datagram, and it is copied
  // out while it is delivered (FetchInit.onData). Other messages may be kept whole (a tracker
  // checks a signature over the raw datagram), and a filter may hold any datagram.
  private readonly mayLend = (datagram: Buffer): boolean => this.filter === undefined && datagram[TYPE_BYTE_OFFSET] === MessageType.Data

  private receive (buf: Buffer, from: RemoteAddress): void {
    if (this.closed) return
    const exempt = this.filterExempt !== undefined && sameAddress(from, this.filterExempt)
    if (this.filter !== undefined && !exempt) {
      this.filter.push(buf, (d) => this.dispatch(d, from, performance.now()))
    } else {
      this.dispatch(buf, from, this.readAt)
    }
  }

  private dispatch (buf: Buffer, from: RemoteAddress, receivedAt: number): void {
    if (this.closed) return
    this.stats.datagramsIn++
    this.stats.bytesIn += buf.length
    const decoded = tryDecode(buf)
    if (!decoded.ok) {
      this.countMalformed(decoded.error.reason, decoded.error.message, from)
      return
    }
    try {
      this.route(decoded.msg, from, buf, receivedAt)
    } catch (err) {
      // A handler bug must not take the socket down; it is logged loudly instead.
      this.logger?.error({ err, type: decoded.msg.type, from }, 'handler threw; datagram dropped')
    }
  }

  private route (msg: Message, from: RemoteAddress, raw: Buffer, receivedAt: number): void {
    switch (msg.type) {
      case MessageType.Request:
      case MessageType.Hello:
      case MessageType.Cancel:
        this.onPeerRequest?.(msg, from)
        return
      case MessageType.Connect:
      case MessageType.Register:
      case MessageType.Own:
      case MessageType.Need:
      case MessageType.Update:
      case MessageType.Exit:
        this.onTrackerRequest?.(msg, from, raw)
        return
      case MessageType.Unchoke:
        this.onUnchoke?.(msg, from)
        return
      default: {
        const handler = this.pending.get(msg.txid)
        if (handler === undefined) {
          this.stats.unsolicited++
          return
        }
        handler(msg, from, receivedAt)
      }
    }
  }

  private countMalformed (cause: MalformedCause, detail: string, from: RemoteAddress): void {
    this.stats.malformed++
    this.stats.malformedByCause[cause] = (this.stats.malformedByCause[cause] ?? 0) + 1
    const suppressed = this.malformedLog.admit()
    if (suppressed !== undefined) this.logger?.warn({ cause, detail, from, suppressed, total: this.stats.malformed }, 'malformed datagram dropped')
  }
}

function byteLength (parts: Buffer[]): number {
  let n = 0
  for (const p of parts) n += p.length
  return n
}

export function sameAddress (a: RemoteAddress, b: RemoteAddress): boolean {
  return a.port === b.port && (a.host === b.host || normaliseHost(a.host) === normaliseHost(b.host))
}

/** IPv4-mapped IPv6 ("::ffff:1.2.3.4") and its IPv4 form are the same peer. */
function normaliseHost (host: string): string {
  return host.startsWith('::ffff:') ? host.slice(7) : host
}
