import type { Logger } from 'pino'
import { AUTH_EPOCH_MS, SIGNATURE_BYTES } from '../../configs.js'
import {
  encode, MessageType, TrackerErrorCode,
  type FileIdentity, type NeedReplyMsg, type SignedTrackerRequest, type TrackerReply, type WithoutTxid
} from '../messages/index.js'
import { signDatagram, type NodeIdentity } from '../transport/auth.js'
import type { Endpoint, RemoteAddress } from '../transport/endpoint.js'
import { transact } from '../transport/transaction.js'

/** A signed request before the client fills in what every request carries. */
type Body<T> = T extends unknown ? Omit<T, 'txid' | 'connectionId' | 'nodeId' | 'seq' | 'signature'> : never

/** The tracker answered with an error. */
export class TrackerRefusedError extends Error {
  override readonly name = 'TrackerRefusedError'
  constructor (readonly code: TrackerErrorCode, text: string) {
    super(`tracker refused: ${text}`)
  }
}

export interface TrackerClientInit {
  endpoint: Endpoint
  tracker: RemoteAddress
  nodeId: number
  identity: NodeIdentity
  /** Overrides the interval the tracker asks for. */
  heartbeatMs?: number
  logger: Logger
  /** Called when the tracker did not know us (first join, a prune, a tracker restart). */
  onJoined: () => Promise<void>
}

/**
 * Talks to the tracker: one request/response per call with retries, and a heartbeat that keeps
 * the node registered. A heartbeat the tracker answers with "unknown" triggers a re-announce.
 */
export class TrackerClient {
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  private intervalMs: number | undefined
  private connected = false
  private connection: { id: Buffer, at: number } | undefined
  private lastSeq = 0

  constructor (private readonly init: TrackerClientInit) {}

  get isConnected (): boolean { return this.connected }
  get address (): RemoteAddress { return this.init.tracker }

  /** Starts the heartbeat loop; the first beat is sent now. Never throws: failures are retried. */
  start (): void {
    void this.beat()
  }

  stop (): void {
    this.stopped = true
    if (this.timer !== undefined) clearTimeout(this.timer)
  }

  private async beat (): Promise<void> {
    if (this.stopped) return
    let nextMs = this.intervalMs ?? this.init.heartbeatMs ?? 1000
    try {
      const reply = await this.call({ type: MessageType.Register, publicKey: this.init.identity.publicKey })
      if (reply.type !== MessageType.RegisterAck) throw new Error(`unexpected reply type ${reply.type}`)
      this.intervalMs = this.init.heartbeatMs ?? reply.heartbeatMs
      nextMs = this.intervalMs
      if (!this.connected) this.init.logger.info({ tracker: this.init.tracker }, 'connected to tracker')
      this.connected = true
      if (!reply.known) await this.init.onJoined()
    } catch (err) {
      if (this.stopped) return
      if (this.connected) this.init.logger.warn({ err, tracker: this.init.tracker }, 'tracker unreachable; retrying')
      this.connected = false
    }
    if (!this.stopped) this.timer = setTimeout(() => { void this.beat() }, nextMs)
  }

  /** Announces a file; `complete` false for a download in progress, whose verified pieces are served. */
  async own (file: FileIdentity, signal?: AbortSignal, complete = true): Promise<void> {
    await this.call({ type: MessageType.Own, complete, file }, signal)
  }

  async need (name: string, signal?: AbortSignal): Promise<NeedReplyMsg> {
    const reply = await this.call({ type: MessageType.Need, name }, signal)
    if (reply.type !== MessageType.NeedReply) throw new Error(`unexpected reply type ${reply.type}`)
    return reply
  }

  async update (contentHash: Buffer, received: Array<{ ownerId: number, bytes: number }>, signal?: AbortSignal): Promise<void> {
    await this.call({ type: MessageType.Update, contentHash, received }, signal)
  }

  async exit (signal?: AbortSignal): Promise<void> {
    this.stop()
    await this.call({ type: MessageType.Exit }, signal)
  }

  /**
   * One signed request: a fresh connection id when the last is near expiry, a sequence number
   * that only grows (the tracker refuses replays), and the node's signature over the datagram.
   * Retransmissions resend the same bytes, which the tracker recognises and answers again.
   */
  private async call (body: Body<SignedTrackerRequest>, signal?: AbortSignal, retried = false): Promise<TrackerReply> {
    const connectionId = await this.connectionId(signal)
    const seq = this.lastSeq = Math.max(this.lastSeq + 1, Date.now() * 1000)
    const reply = await transact(this.init.endpoint, this.init.tracker, (txid) => signDatagram(encode({
      ...body, txid, connectionId, nodeId: this.init.nodeId, seq, signature: Buffer.alloc(SIGNATURE_BYTES)
    } as SignedTrackerRequest), this.init.identity), { signal })
    if (reply.type !== MessageType.Error) return reply
    if (!retried && reply.code === TrackerErrorCode.BadConnection) {
      this.connection = undefined
      return await this.call(body, signal, true)
    }
    // The tracker forgot us between heartbeats (restart or prune): re-join at once, then retry.
    if (!retried && reply.code === TrackerErrorCode.UnknownNode && body.type !== MessageType.Register) {
      this.connected = false
      if (this.timer !== undefined) clearTimeout(this.timer)
      await this.beat()
      return await this.call(body, signal, true)
    }
    throw new TrackerRefusedError(reply.code, reply.text)
  }

  /** The BEP 15 connection id, renewed before the tracker would stop accepting it. */
  private async connectionId (signal?: AbortSignal): Promise<Buffer> {
    if (this.connection !== undefined && Date.now() - this.connection.at < AUTH_EPOCH_MS) return this.connection.id
    const reply = await transact(this.init.endpoint, this.init.tracker, (txid) => encode({ type: MessageType.Connect, txid }), { signal })
    if (reply.type !== MessageType.ConnectReply) throw new TrackerRefusedError(reply.type === MessageType.Error ? reply.code : TrackerErrorCode.BadRequest, 'no connection id')
    this.connection = { id: reply.connectionId, at: Date.now() }
    return reply.connectionId
  }
}
