/**
 * Attacker-side clients that speak the udptorrent wire directly: a raw socket that can send any
 * bytes (including exact replays) and catch the reply to any transaction id, and a signed tracker
 * session that does what src/node/tracker-client.ts does (CONNECT, growing seq, Ed25519 signature
 * over the datagram) with every step exposed, so a test can forge, flip, replay or move it.
 */
import { createPublicKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto'
import dgram from 'node:dgram'
import { SIGNATURE_BYTES } from '../../configs.js'
import {
  encode, MessageType, tryDecode,
  type DataMsg, type Message, type RejectMsg, type SignedTrackerRequest, type Stream, type TrackerReply
} from '../../src/messages/index.js'
import { signDatagram, type NodeIdentity } from '../../src/transport/auth.js'
import type { RemoteAddress } from '../../src/transport/endpoint.js'
import { onCleanup } from './util.js'

/** A fresh Ed25519 identity held only in memory. */
export function newIdentity (): NodeIdentity {
  const { privateKey } = generateKeyPairSync('ed25519')
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' })
  return { publicKey: Buffer.from(jwk.x as string, 'base64url'), sign: (data) => sign(null, data, privateKey) }
}

const sameAddr = (a: RemoteAddress, b: RemoteAddress): boolean => a.port === b.port && a.host.replace(/^::ffff:/, '') === b.host.replace(/^::ffff:/, '')

/** A UDP socket that sends raw bytes and routes decoded replies by transaction id. */
export class RawClient {
  private readonly waiters = new Map<number, (msg: Message, from: RemoteAddress) => void>()
  private closed = false
  /** Datagrams that arrived and decoded but matched no waiter. */
  unmatched = 0

  private constructor (readonly socket: dgram.Socket) {
    socket.on('message', (buf, rinfo) => {
      const d = tryDecode(buf)
      if (!d.ok) return
      const w = this.waiters.get(d.msg.txid)
      if (w === undefined) this.unmatched++
      else w(d.msg, { host: rinfo.address, port: rinfo.port })
    })
    socket.on('error', () => {})
  }

  static async open (host = '127.0.0.1', port = 0): Promise<RawClient> {
    const socket = dgram.createSocket('udp4')
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(port, host, () => { socket.off('error', reject); resolve() })
    })
    const c = new RawClient(socket)
    onCleanup(() => c.close())
    return c
  }

  get address (): RemoteAddress {
    const a = this.socket.address()
    return { host: a.address, port: a.port }
  }

  /** A transaction id no waiter uses. */
  freshTxid (): number {
    for (;;) {
      const t = randomBytes(4).readUInt32BE(0)
      if (!this.waiters.has(t)) return t
    }
  }

  send (datagram: Buffer | Buffer[], to: RemoteAddress): void {
    if (!this.closed) this.socket.send(datagram, to.port, to.host)
  }

  /** Calls `onMsg` for every reply carrying `txid` from `from` until the returned function is called. */
  watch (txid: number, from: RemoteAddress, onMsg: (msg: Message) => void): () => void {
    this.waiters.set(txid, (msg, addr) => { if (sameAddr(addr, from)) onMsg(msg) })
    return () => this.waiters.delete(txid)
  }

  /**
   * Sends `datagram` (whose transaction id is `txid`) and resolves with the first reply to it from
   * `to`, resending the same bytes every `resendMs`; undefined if none came within `timeoutMs`.
   */
  async exchange (datagram: Buffer, txid: number, to: RemoteAddress, timeoutMs = 2_000, resendMs = 250): Promise<Message | undefined> {
    return await new Promise((resolve) => {
      let resend: NodeJS.Timeout | undefined
      const done = (msg: Message | undefined): void => {
        stop()
        clearTimeout(deadline)
        if (resend !== undefined) clearTimeout(resend)
        resolve(msg)
      }
      const stop = this.watch(txid, to, (msg) => done(msg))
      const deadline = setTimeout(() => done(undefined), timeoutMs)
      const attempt = (): void => {
        this.send(datagram, to)
        resend = setTimeout(attempt, resendMs)
      }
      attempt()
    })
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    this.waiters.clear()
    try { this.socket.close() } catch { /* already closed */ }
  }
}

/** A signed request before the session fills in what every request carries. */
export type SignedBody = SignedTrackerRequest extends infer T ? T extends unknown ? Omit<T, 'txid' | 'connectionId' | 'nodeId' | 'seq' | 'signature'> : never : never

export interface BuiltRequest { txid: number, seq: number, datagram: Buffer }

/** Describes a tracker reply in a few words: "ERROR Forbidden: node id 5 belongs to another key". */
export function describeReply (msg: Message | undefined): string {
  if (msg === undefined) return 'no reply'
  if (msg.type === MessageType.Error) return `Error ${errorName(msg.code)}`
  return MessageType[msg.type] ?? `type ${msg.type}`
}

const ERROR_NAMES: Record<number, string> = {
  1: 'BadRequest', 2: 'UnknownNode', 3: 'NotFound', 4: 'Conflict', 5: 'Forbidden', 6: 'Overloaded', 7: 'BadConnection', 8: 'BadSignature', 9: 'Replay', 10: 'Limit'
}
export const errorName = (code: number): string => ERROR_NAMES[code] ?? `code ${code}`

/**
 * One client's conversation with the tracker under a node id and a key: what an honest node does,
 * with the pieces separately callable. `identity` signs; `nodeId` is what the datagram claims.
 */
export class TrackerSession {
  connectionId: Buffer | undefined
  private lastSeq = 0

  constructor (readonly client: RawClient, readonly tracker: RemoteAddress, readonly nodeId: number, readonly identity: NodeIdentity) {}

  async connect (): Promise<Buffer> {
    const txid = this.client.freshTxid()
    const reply = await this.client.exchange(encode({ type: MessageType.Connect, txid }), txid, this.tracker)
    if (reply?.type !== MessageType.ConnectReply) throw new Error(`CONNECT: ${describeReply(reply)}`)
    this.connectionId = reply.connectionId
    return reply.connectionId
  }

  nextSeq (): number {
    this.lastSeq = Math.max(this.lastSeq + 1, Date.now() * 1000)
    return this.lastSeq
  }

  /** The datagram an honest node would send for `body` (overrides let a test forge a field). */
  build (body: SignedBody, override: { nodeId?: number, connectionId?: Buffer, seq?: number, signer?: NodeIdentity } = {}): BuiltRequest {
    const txid = this.client.freshTxid()
    const seq = override.seq ?? this.nextSeq()
    const connectionId = override.connectionId ?? this.connectionId
    if (connectionId === undefined) throw new Error('connect first')
    const datagram = signDatagram(encode({
      ...body, txid, connectionId, nodeId: override.nodeId ?? this.nodeId, seq, signature: Buffer.alloc(SIGNATURE_BYTES)
    } as SignedTrackerRequest), override.signer ?? this.identity)
    return { txid, seq, datagram }
  }

  async send (req: BuiltRequest, timeoutMs = 2_000): Promise<TrackerReply | undefined> {
    return await this.client.exchange(req.datagram, req.txid, this.tracker, timeoutMs) as TrackerReply | undefined
  }

  async call (body: SignedBody, timeoutMs = 2_000): Promise<TrackerReply | undefined> {
    if (this.connectionId === undefined) await this.connect()
    return await this.send(this.build(body), timeoutMs)
  }

  async register (): Promise<TrackerReply | undefined> {
    return await this.call({ type: MessageType.Register, publicKey: this.identity.publicKey })
  }
}

/** Asks a node for a cookie (HELLO → HELLO_ACK). */
export async function hello (client: RawClient, node: RemoteAddress): Promise<Buffer | undefined> {
  const txid = client.freshTxid()
  const reply = await client.exchange(encode({ type: MessageType.Hello, txid }), txid, node)
  return reply?.type === MessageType.HelloAck ? reply.cookie : undefined
}

/**
 * Sends one REQUEST and collects its DATA/REJECT replies until `length` payload bytes arrived (or a
 * REJECT), within `timeoutMs`. Returns what came.
 */
export async function requestRange (
  client: RawClient, node: RemoteAddress, cookie: Buffer, contentHash: Buffer, stream: Stream, offset: number, length: number,
  datagramBytes = 1200, timeoutMs = 3_000
): Promise<Array<DataMsg | RejectMsg>> {
  const txid = client.freshTxid()
  const replies: Array<DataMsg | RejectMsg> = []
  let got = 0
  return await new Promise((resolve) => {
    const finish = (): void => { stop(); clearTimeout(deadline); resolve(replies) }
    const stop = client.watch(txid, node, (msg) => {
      if (msg.type === MessageType.Reject) { replies.push(msg); finish(); return }
      if (msg.type !== MessageType.Data) return
      replies.push(msg)
      got += msg.payload.length
      if (got >= length) finish()
    })
    const deadline = setTimeout(finish, timeoutMs)
    client.send(encode({ type: MessageType.Request, txid, cookie, contentHash, stream, offset, length, datagramBytes }), node)
  })
}

/** The bytes of a range assembled from DATA replies (by offset), or undefined if incomplete. */
export function assemble (replies: Array<DataMsg | RejectMsg>, offset: number, length: number): Buffer | undefined {
  const out = Buffer.alloc(length)
  let n = 0
  for (const r of replies) {
    if (r.type !== MessageType.Data) return undefined
    r.payload.copy(out, r.offset - offset)
    n += r.payload.length
  }
  return n === length ? out : undefined
}
