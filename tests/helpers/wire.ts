/**
 * Raw wire-level helpers for integration tests: a test client that speaks the udptorrent protocol
 * from the test process (built on the real Endpoint and transact), a seeded generator of hostile
 * datagrams, and a CLI runner that keeps stdout and stderr apart.
 */
import { spawn } from 'node:child_process'
import { HASH_BYTES } from '../../configs.js'
import {
  encode, MessageType, RejectReason, Stream, TrackerErrorCode,
  type DataMsg, type ErrorMsg, type FileIdentity, type Message, type NeedReplyMsg, type RegisterAckMsg,
  type RejectMsg, type RequestMsg, type TrackerReply, type TrackerRequest, type WithoutTxid
} from '../../src/messages/index.js'
import { Endpoint, type RemoteAddress } from '../../src/transport/endpoint.js'
import { Prng } from '../../src/transport/prng.js'
import { transact } from '../../src/transport/transaction.js'
import { CLI } from './processes.js'

export const LOCALHOST = '127.0.0.1'

export const localhost = (port: number): RemoteAddress => ({ host: LOCALHOST, port })

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

/**
 * One UDP endpoint in the test process acting as a tracker client and/or a peer. Tracker calls go
 * through the project's own transact(), so the tracker sees exactly what a node would send.
 */
export class WireClient {
  private readonly beats = new Set<NodeJS.Timeout>()
  private closed = false

  private constructor (readonly endpoint: Endpoint) {}

  static async open (): Promise<WireClient> {
    return new WireClient(await Endpoint.open({ host: LOCALHOST }))
  }

  get address (): RemoteAddress { return this.endpoint.address }
  get port (): number { return this.endpoint.address.port }

  /** A tracker request/response with the default backoff but a total timeout short enough for tests. */
  async call (to: RemoteAddress, request: WithoutTxid<TrackerRequest>, totalTimeoutMs = 4_000): Promise<TrackerReply> {
    return await transact(this.endpoint, to, request, { totalTimeoutMs })
  }

  async register (to: RemoteAddress, nodeId: number): Promise<RegisterAckMsg> {
    return expectType<RegisterAckMsg>(await this.call(to, { type: MessageType.Register, nodeId }), MessageType.RegisterAck, `REGISTER ${nodeId}`)
  }

  async own (to: RemoteAddress, nodeId: number, file: FileIdentity): Promise<void> {
    expectType(await this.call(to, { type: MessageType.Own, nodeId, file }), MessageType.Ack, `OWN ${nodeId} ${file.name}`)
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

  /** Sends `request` and expects an Error reply; returns it. */
  async refused (to: RemoteAddress, request: WithoutTxid<TrackerRequest>): Promise<ErrorMsg> {
    return expectType<ErrorMsg>(await this.call(to, request), MessageType.Error, `${MessageType[request.type]} (expected a refusal)`)
  }

  /** Heartbeats `nodeId` every `everyMs` until close(), as a real node would. */
  keepAlive (to: RemoteAddress, nodeId: number, everyMs = 150): void {
    const timer = setInterval(() => {
      if (this.closed) return
      this.call(to, { type: MessageType.Register, nodeId }, 1_000).catch(() => {})
    }, everyMs)
    this.beats.add(timer)
  }

  /** Reserves a txid and records every reply that carries it, from anyone. */
  watchTxid (): TxidWatch {
    const replies: Message[] = []
    const txid = this.endpoint.register((msg) => { replies.push(msg) })
    return { txid, replies, release: () => this.endpoint.release(txid) }
  }

  send (datagram: Buffer, to: RemoteAddress): void {
    this.endpoint.send(datagram, to)
  }

  /**
   * Sends a peer REQUEST and resolves with the replies for it once one arrives (Data or Reject),
   * resending every `resendMs`. Rejects after `timeoutMs` with no reply at all. Once the first reply
   * arrives it keeps collecting for the Data datagrams of the same response until `settle` says so.
   */
  async request (
    to: RemoteAddress,
    req: WithoutTxid<RequestMsg> | Omit<RequestMsg, 'txid' | 'type'>,
    init: { timeoutMs?: number, resendMs?: number, settle?: (replies: Array<DataMsg | RejectMsg>) => boolean } = {}
  ): Promise<Array<DataMsg | RejectMsg>> {
    const timeoutMs = init.timeoutMs ?? 5_000
    const resendMs = init.resendMs ?? 500
    const settle = init.settle ?? (() => true)
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
      const datagram = encode({ ...req, type: MessageType.Request, txid })
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
    await this.endpoint.close()
  }
}

/** A request for `length` bytes at `offset` of `contentHash`, in datagrams of `datagramBytes`. */
export function peerRequest (contentHash: Buffer, offset: number, length: number, stream = Stream.Content, datagramBytes = 1200): Omit<RequestMsg, 'txid' | 'type'> {
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
  MessageType.RegisterAck, MessageType.NeedReply, MessageType.Error, MessageType.Request, MessageType.Data, MessageType.Reject
] as const

/**
 * One valid message of every type, with random fields. Node ids stay at or above 1e6 so that a
 * sample can never name a node the test runs itself (a REGISTER for it would move its address).
 */
export function sampleMessages (prng: Prng): Message[] {
  const id = (): number => 1_000_000 + prng.int(2 ** 31)
  const txid = (): number => prng.int(2 ** 32)
  const hash = (): Buffer => randomBytes(prng, HASH_BYTES)
  const file = fakeFile(prng, `fuzz-${prng.int(1e6)}.bin`)
  return [
    { type: MessageType.Register, txid: txid(), nodeId: id() },
    { type: MessageType.Own, txid: txid(), nodeId: id(), file },
    { type: MessageType.Need, txid: txid(), nodeId: id(), name: file.name },
    { type: MessageType.Update, txid: txid(), nodeId: id(), contentHash: hash(), received: [{ ownerId: id(), bytes: prng.int(1e9) }, { ownerId: id(), bytes: 1 }] },
    { type: MessageType.Exit, txid: txid(), nodeId: id() },
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
    { type: MessageType.Request, txid: txid(), contentHash: hash(), stream: Stream.Content, offset: prng.int(1e6), length: 1 + prng.int(60_000), datagramBytes: 1200 },
    { type: MessageType.Data, txid: txid(), stream: Stream.Content, offset: prng.int(1e6), payload: randomBytes(prng, 1 + prng.int(1183)) },
    { type: MessageType.Reject, txid: txid(), reason: RejectReason.OutOfRange }
  ]
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
