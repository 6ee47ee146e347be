/**
 * An owner that lies, run inside the chaos process: it registers and OWNs a real file's identity
 * through the project's own TrackerClient (so the tracker cannot tell it from an honest node), and
 * answers the data protocol (HELLO with a real cookie, REQUEST with DATA) in one of three bad ways.
 */
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { COOKIE_BYTES, DEFAULT_PIECE_SIZE } from '../../configs.js'
import { createFileLogger, flushLogger } from '../../src/logging.js'
import { DATA_HEADER_BYTES, encode, encodeDataHeader, MessageType, RejectReason, Stream, type FileIdentity, type RequestMsg } from '../../src/messages/index.js'
import { hashFile } from '../../src/node/manifest.js'
import { TrackerClient } from '../../src/node/tracker-client.js'
import { AddressTokens } from '../../src/transport/auth.js'
import { Endpoint, type RemoteAddress } from '../../src/transport/endpoint.js'
import { onCleanup, withTimeout } from './util.js'
import { newIdentity } from './wire.js'

export type EvilMode =
  /** Right sizes and offsets, flipped bytes: every piece fails its hash. */
  | 'corrupt'
  /** Answers HELLO, never answers a REQUEST. */
  | 'slowloris'
  /** Right bytes, but each DATA names an offset 7 bytes past the one it carries. */
  | 'wrong-offset'

export interface EvilOwnerStats { hellos: number, requests: number, manifestRequests: number, datagramsSent: number }

export class EvilOwner {
  readonly stats: EvilOwnerStats = { hellos: 0, requests: 0, manifestRequests: 0, datagramsSent: 0 }

  private constructor (
    readonly nodeId: number,
    readonly mode: EvilMode,
    readonly endpoint: Endpoint,
    readonly tracker: TrackerClient,
    readonly identity: FileIdentity,
    private readonly content: Buffer,
    private readonly pieceHashes: Buffer,
    private readonly cookies: AddressTokens,
    private readonly close: () => Promise<void>
  ) {
    endpoint.onPeerRequest = (msg, from) => {
      if (msg.type === MessageType.Hello) {
        this.stats.hellos++
        endpoint.send(encode({ type: MessageType.HelloAck, txid: msg.txid, cookie: this.cookies.issue(from) }), from)
      } else if (msg.type === MessageType.Request) {
        this.onRequest(msg, from)
      }
    }
  }

  /**
   * Starts an evil owner of `file` (a real file on disk: its identity and manifest are right) as
   * node `nodeId`, registered with `tracker` and announcing the file.
   */
  static async start (home: string, nodeId: number, tracker: RemoteAddress, file: string, name: string, mode: EvilMode): Promise<EvilOwner> {
    const logger = createFileLogger(home, `evil${nodeId}`, 'info', { consoleLevel: false })
    const endpoint = await Endpoint.open({ host: '127.0.0.1', logger })
    const manifest = await hashFile(file, DEFAULT_PIECE_SIZE)
    const identity: FileIdentity = { name, size: manifest.size, pieceSize: manifest.pieceSize, contentHash: manifest.contentHash }
    let owner: EvilOwner | undefined
    const client = new TrackerClient({
      endpoint,
      tracker,
      nodeId,
      identity: newIdentity(),
      logger,
      // Re-announce after a prune or a tracker restart, exactly like an honest node.
      onJoined: async () => { if (owner !== undefined) await owner.tracker.own(identity).catch(() => {}) }
    })
    let closed = false
    const close = async (): Promise<void> => {
      if (closed) return
      closed = true
      client.stop()
      await endpoint.close()
      flushLogger(logger)
    }
    owner = new EvilOwner(nodeId, mode, endpoint, client, identity, await readFile(file), manifest.pieceHashes, new AddressTokens(randomBytes(32), COOKIE_BYTES), close)
    onCleanup(close)
    client.start()
    await withTimeout(client.own(identity), 10_000, `evil owner ${nodeId} announcing ${name}`)
    logger.info({ nodeId, mode, file: name }, 'evil owner sharing')
    return owner
  }

  get address (): RemoteAddress { return this.endpoint.address }

  async stop (): Promise<void> { await this.close() }

  private onRequest (msg: RequestMsg, from: RemoteAddress): void {
    this.stats.requests++
    if (msg.stream === Stream.Manifest) this.stats.manifestRequests++
    if (!this.cookies.check(from, msg.cookie)) {
      this.endpoint.send(encode({ type: MessageType.Reject, txid: msg.txid, reason: RejectReason.BadCookie }), from)
      return
    }
    if (!msg.contentHash.equals(this.identity.contentHash)) {
      this.endpoint.send(encode({ type: MessageType.Reject, txid: msg.txid, reason: RejectReason.UnknownContent }), from)
      return
    }
    if (this.mode === 'slowloris') return
    const source = msg.stream === Stream.Manifest ? this.pieceHashes : this.content
    if (msg.offset + msg.length > source.length) {
      this.endpoint.send(encode({ type: MessageType.Reject, txid: msg.txid, reason: RejectReason.OutOfRange }), from)
      return
    }
    const payloadBytes = msg.datagramBytes - DATA_HEADER_BYTES
    for (let at = 0; at < msg.length; at += payloadBytes) {
      let chunk = source.subarray(msg.offset + at, msg.offset + Math.min(at + payloadBytes, msg.length))
      let offset = msg.offset + at
      if (this.mode === 'corrupt' && msg.stream === Stream.Content) {
        chunk = Buffer.from(chunk)
        for (let i = 0; i < chunk.length; i += 97) chunk[i] = (chunk[i] as number) ^ 0x5a
      }
      if (this.mode === 'wrong-offset') offset += 7
      this.endpoint.send([encodeDataHeader(msg.txid, msg.stream, offset), chunk], from)
      this.stats.datagramsSent++
    }
  }
}
