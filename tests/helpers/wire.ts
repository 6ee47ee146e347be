/**
 * Raw wire-level helpers for integration tests: a test client that speaks the udptorrent protocol
 * from the test process (built on the real Endpoint and transact, with the same connection ids,
 * sequence numbers and Ed25519 signatures a node uses), low-level escape hatches for attack tests,
 * a seeded generator of hostile datagrams, and a CLI runner that keeps stdout and stderr apart.
 */
import { spawn } from 'node:child_process'
import { generateKeyPairSync, sign } from 'node:crypto'
import {
  AUTH_EPOCH_MS, CONNECTION_ID_BYTES, COOKIE_BYTES, HASH_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES
} from '../../configs.js'
import {
  encode, MessageType, RejectReason, Stream, TrackerErrorCode, tryDecode,
  type ConnectReplyMsg, type DataMsg, type ErrorMsg, type FileIdentity, type HelloAckMsg, type Message, type NeedReplyMsg,
  type RegisterAckMsg, type RegisterMsg, type RejectMsg, type RequestMsg, type SignedTrackerRequest, type TrackerReply
} from '../../src/messages/index.js'
import { signDatagram, type NodeIdentity } from '../../src/transport/auth.js'
import { Endpoint, type RemoteAddress } from '../../src/transport/endpoint.js'
import { Prng } from '../../src/transport/prng.js'
import { transact } from '../../src/transport/transaction.js'
import { CLI } from './processes.js'

export const LOCALHOST = '127.0.0.1'

export const localhost = (port: number): RemoteAddress => ({ host: LOCALHOST, port })

// ---- identities and sequence numbers -----------------------------------------------------------

/** A fresh Ed25519 identity held in memory (what loadOrCreateIdentity gives a node, minus the file). */
export function newIdentity (): NodeIdentity {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url')
  if (raw.length !== PUBLIC_KEY_BYTES) throw new Error(`unexpected public key length ${raw.length}`)
  return { publicKey: raw, sign: (data) => sign(null, data, privateKey) }
}

let lastSeq = 0
/**
 * The next sequence number, shared by every client in the test process, as a node makes them:
 * max(last + 1, microseconds since the epoch). Shared so that two clients speaking for one node
 * id (the same key from two addresses) never reuse one.
 */
export function nextSeq (): number {
  lastSeq = Math.max(lastSeq + 1, Date.now() * 1000)
  return lastSeq
}

// ---- request bodies ----------------------------------------------------------------------------

type Body<T> = T extends unknown ? Omit<T, 'txid' | 'connectionId' | 'seq' | 'signature'> : never

/** A signed request without what the client fills in; a REGISTER's public key defaults to the signer's. */
export type RequestBody = Body<Exclude<SignedTrackerRequest, RegisterMsg>> | (Omit<Body<RegisterMsg>, 'publicKey'> & { publicKey?: Buffer })

/** How to build a signed request; every field defaults to what an honest node would send. */
export interface BuildOptions {
  /** Default: nextSeq(). */
  seq?: number
  /** Default: the connection id the tracker gave this socket (CONNECT first if there is none). */
  connectionId?: Buffer
  /** Who signs. Default: this client's identity. */
  identity?: NodeIdentity
  /** Leave the signature field zero instead of signing. */
  unsigned?: boolean
  /** Applied to the finished (signed) datagram, e.g. to flip a bit of the signature. */
  tamper?: (datagram: Buffer) => void
}

/** A datagram that arrived at a WireClient's socket, exactly as it arrived. */
export interface ReceivedDatagram {
  at: number
  bytes: Buffer
  /** Decoded, when it decodes. */
  msg: Message | undefined
}

/** A request sent and the reply that answered it, both as bytes on the wire. */
export interface Exchange {
  txid: number
  datagram: Buffer
  reply: TrackerReply
  replyBytes: Buffer
}

/** A reply the test did not expect (wrong type): fails with the message that did arrive. */
function expectType<T extends TrackerReply> (reply: TrackerReply, type: T['type'], what: string): T {
  if (reply.type !== type) {
    throw new Error(`${what}: expected ${MessageType[type]}, got ${MessageType[reply.type]} ${JSON.stringify(reply)}`)
  }
  return reply as T
}

/** What arrived for one hand-picked transaction id. */
export interface TxidWatch {
  txid: number
  replies: Message[]
  release: () => void
}

const key = (a: RemoteAddress): string => `${a.host}:${a.port}`
const txidOf = (datagram: Buffer): number => datagram.readUInt32BE(4)

/**
 * One UDP endpoint in the test process acting as a tracker client and/or a peer. Tracker calls go
 * through the project's own transact(), signed and sequenced as a node does it, so the tracker sees
 * exactly what a node would send. Every datagram that reaches the socket is also kept in `log`, raw,
 * so tests can measure what an attacker's socket receives.
 */
export class WireClient {
  private readonly beats = new Set<NodeJS.Timeout>()
  private readonly connections = new Map<string, { id: Buffer, at: number }>()
  private readonly cookies = new Map<string, Buffer>()
  private readonly arrivals = new Set<() => void>()
  private closed = false

  /** `log`: every datagram received, in arrival order, as it arrived. */
  private constructor (readonly endpoint: Endpoint, readonly identity: NodeIdentity, readonly log: ReceivedDatagram[]) {}

  /** `identity`: speak with an existing key (e.g. the same node from a second address). */
  static async open (init: { identity?: NodeIdentity } = {}): Promise<WireClient> {
    const log: ReceivedDatagram[] = []
    const hooks = { arrived: () => {} }
    const endpoint = await Endpoint.open({
      host: LOCALHOST,
      // Sees every datagram before the endpoint decodes it: the raw log first, then normal dispatch.
      inboundFilter: {
        push: (datagram, deliver) => {
          const decoded = tryDecode(datagram)
          log.push({ at: performance.now(), bytes: Buffer.from(datagram), msg: decoded.ok ? decoded.msg : undefined })
          hooks.arrived()
          deliver(datagram)
        },
        close: () => {}
      }
    })
    const c = new WireClient(endpoint, init.identity ?? newIdentity(), log)
    hooks.arrived = () => { for (const f of [...c.arrivals]) f() }
    return c
  }

  get address (): RemoteAddress { return this.endpoint.address }
  get port (): number { return this.endpoint.address.port }

  // ---- connection ids --------------------------------------------------------------------------

  /** CONNECT: asks `to` for a connection id for this socket, and keeps it. */
  async connect (to: RemoteAddress, totalTimeoutMs = 4_000): Promise<Buffer> {
    const reply = await transact(this.endpoint, to, (txid) => encode({ type: MessageType.Connect, txid }), { totalTimeoutMs })
    const ok = expectType<ConnectReplyMsg>(reply, MessageType.ConnectReply, 'CONNECT')
    this.connections.set(key(to), { id: ok.connectionId, at: Date.now() })
    return ok.connectionId
  }

  /** The connection id for `to`, renewed as a node renews it. */
  async connectionId (to: RemoteAddress): Promise<Buffer> {
    const c = this.connections.get(key(to))
    if (c !== undefined && Date.now() - c.at < AUTH_EPOCH_MS) return c.id
    return await this.connect(to)
  }

  // ---- signed requests -------------------------------------------------------------------------

  /** Builds the datagram of a signed request with `txid`, as a node would (unless `opts` say otherwise). */
  async build (to: RemoteAddress, body: RequestBody, opts: BuildOptions = {}, txid = 0): Promise<Buffer> {
    const connectionId = opts.connectionId ?? await this.connectionId(to)
    return this.buildWith(body, { ...opts, connectionId }, txid)
  }

  private buildWith (body: RequestBody, opts: BuildOptions & { connectionId: Buffer }, txid: number): Buffer {
    const identity = opts.identity ?? this.identity
    const msg = {
      ...body,
      ...(body.type === MessageType.Register ? { publicKey: body.publicKey ?? identity.publicKey } : {}),
      txid,
      connectionId: opts.connectionId,
      seq: opts.seq ?? nextSeq(),
      signature: Buffer.alloc(SIGNATURE_BYTES)
    } as SignedTrackerRequest
    const datagram = encode(msg)
    if (opts.unsigned !== true) signDatagram(datagram, identity)
    opts.tamper?.(datagram)
    return datagram
  }

  /**
   * One signed request through transact() (same bytes on every retry, as a node resends them),
   * with the reply both decoded and as it arrived.
   */
  async exchange (to: RemoteAddress, body: RequestBody, opts: BuildOptions & { totalTimeoutMs?: number } = {}): Promise<Exchange> {
    const connectionId = opts.connectionId ?? await this.connectionId(to)
    let datagram: Buffer = Buffer.alloc(0)
    const reply = await transact(this.endpoint, to, (txid) => {
      datagram = this.buildWith(body, { ...opts, connectionId }, txid)
      return datagram
    }, { totalTimeoutMs: opts.totalTimeoutMs ?? 4_000 })
    const txid = txidOf(datagram)
    // The filter logs a datagram before the endpoint dispatches it, so the reply's bytes are there.
    const raw = [...this.log].reverse().find((d) => d.msg !== undefined && d.msg.txid === txid && d.msg.type === reply.type)
    if (raw === undefined) throw new Error('reply not in the log')
    return { txid, datagram, reply, replyBytes: raw.bytes }
  }

  /** A tracker request/response with the default backoff but a total timeout short enough for tests. */
  async call (to: RemoteAddress, request: RequestBody, totalTimeoutMs = 4_000): Promise<TrackerReply> {
    return (await this.exchange(to, request, { totalTimeoutMs })).reply
  }

  async register (to: RemoteAddress, nodeId: number): Promise<RegisterAckMsg> {
    return expectType<RegisterAckMsg>(await this.call(to, { type: MessageType.Register, nodeId }), MessageType.RegisterAck, `REGISTER ${nodeId}`)
  }

  async own (to: RemoteAddress, nodeId: number, file: FileIdentity): Promise<void> {
    expectType(await this.call(to, { type: MessageType.Own, complete: true, nodeId, file }), MessageType.Ack, `OWN ${nodeId} ${file.name}`)
  }

  async need (to: RemoteAddress, nodeId: number, name: string): Promise<NeedReplyMsg> {
    return expectType<NeedReplyMsg>(await this.call(to, { type: MessageType.Need, nodeId, name }), MessageType.NeedReply, `NEED ${nodeId} ${name}`)
  }

  async update (to: RemoteAddress, nodeId: number, contentHash: Buffer, received: Array<{ ownerId: number, bytes: number }>): Promise<void> {
    expectType(await this.call(to, { type: MessageType.Update, nodeId, contentHash, received }), MessageType.Ack, `UPDATE ${nodeId}`)
  }

  async exit (to: RemoteAddress, nodeId: number): Promise<void> {
    expectType(await this.call(to, { type: MessageType.Exit, nodeId }), MessageType.Ack, `EXIT ${nodeId}`)
  }

  /** Sends `request` (built per `opts`) and expects an Error reply; returns it. */
  async refused (to: RemoteAddress, request: RequestBody, opts: BuildOptions = {}): Promise<ErrorMsg> {
    const { reply } = await this.exchange(to, request, opts)
    return expectType<ErrorMsg>(reply, MessageType.Error, `${MessageType[request.type]} (expected a refusal)`)
  }

  /** Heartbeats `nodeId` every `everyMs` until close(), as a real node would. */
  keepAlive (to: RemoteAddress, nodeId: number, everyMs = 150): void {
    const timer = setInterval(() => {
      if (this.closed) return
      this.call(to, { type: MessageType.Register, nodeId }, 1_000).catch(() => {})
    }, everyMs)
    this.beats.add(timer)
  }

  // ---- raw datagrams ---------------------------------------------------------------------------

  /** Reserves a txid and records every reply that carries it, from anyone. */
  watchTxid (): TxidWatch {
    const replies: Message[] = []
    const txid = this.endpoint.register((msg) => { replies.push(msg) })
    return { txid, replies, release: () => this.endpoint.release(txid) }
  }

  send (datagram: Buffer, to: RemoteAddress): void {
    this.endpoint.send(datagram, to)
  }

  /** How many datagrams have arrived so far: pass it to `since` to see only what came after. */
  mark (): number { return this.log.length }

  since (mark: number): ReceivedDatagram[] { return this.log.slice(mark) }

  /** Resolves with the first datagram (arrived after `mark`) that `match` accepts, or undefined after `timeoutMs`. */
  async waitForDatagram (match: (d: ReceivedDatagram) => boolean, mark: number, timeoutMs: number): Promise<ReceivedDatagram | undefined> {
    return await new Promise((resolve) => {
      const check = (): boolean => {
        const hit = this.log.slice(mark).find(match)
        if (hit === undefined) return false
        done()
        resolve(hit)
        return true
      }
      const done = (): void => {
        clearTimeout(timer)
        this.arrivals.delete(listener)
      }
      const listener = (): void => { check() }
      const timer = setTimeout(() => { done(); resolve(undefined) }, timeoutMs)
      this.arrivals.add(listener)
      check()
    })
  }

  /**
   * Sends `datagram` once (no retry: attack tests count exactly what they send) and resolves with
   * the first reply carrying its txid, or undefined if none came within `timeoutMs`.
   */
  async sendRaw (to: RemoteAddress, datagram: Buffer, timeoutMs = 2_000): Promise<ReceivedDatagram | undefined> {
    const txid = txidOf(datagram)
    const mark = this.mark()
    this.endpoint.send(datagram, to)
    return await this.waitForDatagram((d) => d.msg !== undefined && d.msg.txid === txid, mark, timeoutMs)
  }

  /**
   * Resolves once nothing has arrived for `quietMs` (counting from now), with what arrived after
   * `mark`; fails if the socket is still receiving after `timeoutMs`.
   */
  async quiet (mark: number, quietMs: number, timeoutMs: number): Promise<ReceivedDatagram[]> {
    const started = performance.now()
    for (;;) {
      const last = this.log.at(-1)
      const lastAt = Math.max(started, last !== undefined && this.log.length > mark ? last.at : started)
      const now = performance.now()
      if (now - lastAt >= quietMs) return this.since(mark)
      if (now - started > timeoutMs) throw new Error(`still receiving after ${timeoutMs} ms (${this.log.length - mark} datagrams)`)
      await new Promise((resolve) => setTimeout(resolve, Math.min(quietMs, Math.max(5, lastAt + quietMs - now))))
    }
  }

  // ---- peer side -------------------------------------------------------------------------------

  /** HELLO → HELLO_ACK with the owner at `to`; the cookie is kept for later requests. */
  async hello (to: RemoteAddress, timeoutMs = 5_000, resendMs = 500): Promise<Buffer> {
    return await new Promise((resolve, reject) => {
      let resend: NodeJS.Timeout | undefined
      const finish = (): void => {
        clearTimeout(deadline)
        if (resend !== undefined) clearTimeout(resend)
        this.endpoint.release(txid)
      }
      const txid = this.endpoint.register((msg) => {
        if (msg.type !== MessageType.HelloAck) return
        finish()
        const cookie = (msg as HelloAckMsg).cookie
        this.cookies.set(key(to), cookie)
        resolve(cookie)
      })
      const datagram = encode({ type: MessageType.Hello, txid })
      const deadline = setTimeout(() => {
        finish()
        reject(new Error(`no HELLO_ACK from ${to.host}:${to.port} within ${timeoutMs} ms`))
      }, timeoutMs)
      const attempt = (): void => {
        this.endpoint.send(datagram, to)
        resend = setTimeout(attempt, resendMs)
      }
      attempt()
    })
  }

  /** The cookie from the last handshake with `to`, if any. */
  cookieFor (to: RemoteAddress): Buffer | undefined { return this.cookies.get(key(to)) }

  /**
   * Sends a peer REQUEST and resolves with the replies for it once one arrives (Data or Reject),
   * resending every `resendMs`. Rejects after `timeoutMs` with no reply at all. Once the first reply
   * arrives it keeps collecting for the Data datagrams of the same response until `settle` says so.
   * Without `req.cookie`, it says HELLO first (once per owner) and uses that cookie.
   */
  async request (
    to: RemoteAddress,
    req: PeerRequestBody,
    init: { timeoutMs?: number, resendMs?: number, settle?: (replies: Array<DataMsg | RejectMsg>) => boolean } = {}
  ): Promise<Array<DataMsg | RejectMsg>> {
    const timeoutMs = init.timeoutMs ?? 5_000
    const resendMs = init.resendMs ?? 500
    const settle = init.settle ?? (() => true)
    const cookie = req.cookie ?? this.cookies.get(key(to)) ?? await this.hello(to, timeoutMs, resendMs)
    const replies: Array<DataMsg | RejectMsg> = []
    return await new Promise((resolve, reject) => {
      let resend: NodeJS.Timeout | undefined
      const finish = (): void => {
        clearTimeout(deadline)
        if (resend !== undefined) clearTimeout(resend)
        this.endpoint.release(txid)
      }
      const txid = this.endpoint.register((msg) => {
        if (msg.type !== MessageType.Data && msg.type !== MessageType.Reject) return
        replies.push(msg)
        if (settle(replies)) {
          finish()
          resolve(replies)
        }
      })
      const datagram = encode({
        type: MessageType.Request,
        txid,
        cookie,
        contentHash: req.contentHash,
        stream: req.stream,
        offset: req.offset,
        length: req.length,
        datagramBytes: req.datagramBytes
      })
      const deadline = setTimeout(() => {
        finish()
        reject(new Error(`no settled reply to REQUEST from ${to.host}:${to.port} within ${timeoutMs} ms (got ${replies.length} datagrams)`))
      }, timeoutMs)
      const attempt = (): void => {
        if (replies.length > 0) return
        this.endpoint.send(datagram, to)
        resend = setTimeout(attempt, resendMs)
      }
      attempt()
    })
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const t of this.beats) clearInterval(t)
    this.beats.clear()
    this.arrivals.clear()
    await this.endpoint.close()
  }
}

/** A peer REQUEST before the client fills in the txid (and, unless given, the cookie). */
export type PeerRequestBody = Omit<RequestMsg, 'txid' | 'type' | 'cookie'> & { cookie?: Buffer }

/** A request for `length` bytes at `offset` of `contentHash`, in datagrams of `datagramBytes`. */
export function peerRequest (contentHash: Buffer, offset: number, length: number, stream = Stream.Content, datagramBytes = 1200): PeerRequestBody {
  return { contentHash, stream, offset, length, datagramBytes }
}

/** The Reject reason of a single-reply answer, or a descriptive failure. */
export function rejectReason (replies: Array<DataMsg | RejectMsg>): RejectReason {
  const first = replies[0]
  if (first === undefined || first.type !== MessageType.Reject) {
    throw new Error(`expected a Reject, got ${first === undefined ? 'nothing' : MessageType[first.type]}`)
  }
  return first.reason
}

/** A file identity with a random content hash (a file the tracker only hears about). */
export function fakeFile (prng: Prng, name: string, size = 1_000_000, pieceSize = 256 * 1024): FileIdentity {
  return { name, size, pieceSize, contentHash: randomBytes(prng, HASH_BYTES) }
}

// ---- hostile input -----------------------------------------------------------------------------

export function randomBytes (prng: Prng, n: number): Buffer {
  const b = Buffer.allocUnsafe(n)
  let i = 0
  for (; i + 4 <= n; i += 4) b.writeUInt32BE(prng.int(2 ** 32), i)
  for (; i < n; i++) b[i] = prng.int(256)
  return b
}

const ALL_TYPES = [
  MessageType.Register, MessageType.Own, MessageType.Need, MessageType.Update, MessageType.Exit, MessageType.Ack,
  MessageType.RegisterAck, MessageType.NeedReply, MessageType.Error, MessageType.Request, MessageType.Data, MessageType.Reject,
  MessageType.Connect, MessageType.ConnectReply, MessageType.Hello, MessageType.HelloAck, MessageType.Unchoke, MessageType.Cancel
] as const

/**
 * One valid message of every type, with random fields (signatures, connection ids and cookies are
 * random bytes, so none of them is accepted by a tracker or owner). Node ids stay at or above 1e6
 * so that a sample can never name a node the test runs itself.
 */
export function sampleMessages (prng: Prng): Message[] {
  const id = (): number => 1_000_000 + prng.int(2 ** 31)
  const txid = (): number => prng.int(2 ** 32)
  const hash = (): Buffer => randomBytes(prng, HASH_BYTES)
  const signed = (): { connectionId: Buffer, nodeId: number, seq: number, signature: Buffer } => ({
    connectionId: randomBytes(prng, CONNECTION_ID_BYTES), nodeId: id(), seq: prng.int(2 ** 32) * 1000, signature: randomBytes(prng, SIGNATURE_BYTES)
  })
  const file = fakeFile(prng, `fuzz-${prng.int(1e6)}.bin`)
  const messages: Message[] = [
    { type: MessageType.Register, txid: txid(), ...signed(), publicKey: randomBytes(prng, PUBLIC_KEY_BYTES) },
    { type: MessageType.Own, complete: true, txid: txid(), ...signed(), file },
    { type: MessageType.Need, txid: txid(), ...signed(), name: file.name },
    { type: MessageType.Update, txid: txid(), ...signed(), contentHash: hash(), received: [{ ownerId: id(), bytes: prng.int(1e9) }, { ownerId: id(), bytes: 1 }] },
    { type: MessageType.Exit, txid: txid(), ...signed() },
    { type: MessageType.Ack, txid: txid() },
    { type: MessageType.RegisterAck, txid: txid(), heartbeatMs: prng.int(1e5), known: prng.int(2) === 1 },
    {
      type: MessageType.NeedReply,
      txid: txid(),
      file,
      variants: 1,
      owners: [{ nodeId: id(), host: '10.1.2.3', port: 1 + prng.int(65535), credit: prng.int(1e9), complete: true }]
    },
    { type: MessageType.Error, txid: txid(), code: TrackerErrorCode.Forbidden, text: 'no' },
    {
      type: MessageType.Request, txid: txid(), cookie: randomBytes(prng, COOKIE_BYTES), contentHash: hash(), stream: Stream.Content,
      offset: prng.int(1e6), length: 1 + prng.int(60_000), datagramBytes: 1200
    },
    { type: MessageType.Data, txid: txid(), stream: Stream.Content, offset: prng.int(1e6), payload: randomBytes(prng, 1 + prng.int(1183)) },
    { type: MessageType.Reject, txid: txid(), reason: RejectReason.OutOfRange },
    { type: MessageType.Connect, txid: txid() },
    { type: MessageType.ConnectReply, txid: txid(), connectionId: randomBytes(prng, CONNECTION_ID_BYTES) },
    { type: MessageType.Hello, txid: txid() },
    { type: MessageType.HelloAck, txid: txid(), cookie: randomBytes(prng, COOKIE_BYTES) },
    { type: MessageType.Unchoke, txid: txid() },
    { type: MessageType.Cancel, txid: txid(), cookie: randomBytes(prng, COOKIE_BYTES) }
  ]
  // Kept in ALL_TYPES order, which hostileDatagrams relies on.
  messages.forEach((m, i) => { if (m.type !== ALL_TYPES[i]) throw new Error(`sample ${i} is ${MessageType[m.type]}`) })
  return messages
}

/**
 * `count` hostile datagrams, reproducible from `seed`: a third pure random bytes (0..1500 long),
 * a third a valid 'UT' v1 header of a known type over a random or truncated body, and a third
 * valid messages with 1..4 bits flipped.
 */
export function * hostileDatagrams (seed: number, count: number): Generator<Buffer> {
  const prng = new Prng(seed)
  let samples = sampleMessages(prng).map(encode)
  for (let n = 0; n < count; n++) {
    if (n % 500 === 0) samples = sampleMessages(prng).map(encode)
    const kind = prng.int(3)
    if (kind === 0) {
      yield randomBytes(prng, prng.int(1501))
    } else if (kind === 1) {
      const type = ALL_TYPES[prng.int(ALL_TYPES.length)] as MessageType
      const header = Buffer.from([0x55, 0x54, 1, type])
      const txid = randomBytes(prng, 4)
      if (prng.int(2) === 0) {
        yield Buffer.concat([header, txid, randomBytes(prng, prng.int(200))])
      } else {
        // A valid message of that type, cut short (or with junk appended).
        const valid = samples[ALL_TYPES.indexOf(type as typeof ALL_TYPES[number])] as Buffer
        yield prng.int(4) === 0
          ? Buffer.concat([valid, randomBytes(prng, 1 + prng.int(16))])
          : valid.subarray(0, prng.int(valid.length))
      }
    } else {
      const valid = Buffer.from(samples[prng.int(samples.length)] as Buffer)
      const flips = 1 + prng.int(4)
      for (let f = 0; f < flips; f++) {
        const bit = prng.int(valid.length * 8)
        valid[bit >> 3] = (valid[bit >> 3] as number) ^ (1 << (bit & 7))
      }
      yield valid
    }
  }
}

/** Sends datagrams in batches, yielding to the event loop between batches so the test process stays live. */
export async function flood (endpoint: Endpoint, to: RemoteAddress, datagrams: Iterable<Buffer>, batch = 200): Promise<number> {
  let sent = 0
  for (const d of datagrams) {
    endpoint.send(d, to)
    if (++sent % batch === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  return sent
}

// ---- CLI ---------------------------------------------------------------------------------------

export interface CliResult { code: number | null, stdout: string, stderr: string }

/** Runs the built CLI to completion (killed after `timeoutMs`), keeping stdout and stderr apart. */
export async function runCli (args: string[], timeoutMs = 15_000): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UDPTORRENT_HOME: undefined } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
  clearTimeout(timer)
  return { code, stdout, stderr }
}
