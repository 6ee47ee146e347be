import type { Logger } from 'pino'
import { MessageType, TrackerErrorCode, type FileIdentity, type NeedReplyMsg, type TrackerReply, type TrackerRequest, type WithoutTxid } from '../messages/index.js'
import type { Endpoint, RemoteAddress } from '../transport/endpoint.js'
import { transact } from '../transport/transaction.js'

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
      const reply = await this.call({ type: MessageType.Register, nodeId: this.init.nodeId })
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

  async own (file: FileIdentity, signal?: AbortSignal): Promise<void> {
    await this.call({ type: MessageType.Own, nodeId: this.init.nodeId, file }, signal)
  }

  async need (name: string, signal?: AbortSignal): Promise<NeedReplyMsg> {
    const reply = await this.call({ type: MessageType.Need, nodeId: this.init.nodeId, name }, signal)
    if (reply.type !== MessageType.NeedReply) throw new Error(`unexpected reply type ${reply.type}`)
    return reply
  }

  async update (contentHash: Buffer, received: Array<{ ownerId: number, bytes: number }>, signal?: AbortSignal): Promise<void> {
    await this.call({ type: MessageType.Update, nodeId: this.init.nodeId, contentHash, received }, signal)
  }

  async exit (signal?: AbortSignal): Promise<void> {
    this.stop()
    await this.call({ type: MessageType.Exit, nodeId: this.init.nodeId }, signal)
  }

  private async call (request: WithoutTxid<TrackerRequest>, signal?: AbortSignal): Promise<TrackerReply> {
    const reply = await transact(this.init.endpoint, this.init.tracker, request, { signal })
    if (reply.type === MessageType.Error) {
      // The tracker forgot us between heartbeats (restart or prune): re-join at once.
      if (reply.code === TrackerErrorCode.UnknownNode && request.type !== MessageType.Register) {
        this.connected = false
        if (this.timer !== undefined) clearTimeout(this.timer)
        await this.beat()
        const retry = await transact(this.init.endpoint, this.init.tracker, request, { signal })
        if (retry.type !== MessageType.Error) return retry
        throw new TrackerRefusedError(retry.code, retry.text)
      }
      throw new TrackerRefusedError(reply.code, reply.text)
    }
    return reply
  }
}
