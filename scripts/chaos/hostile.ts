/**
 * Seeded hostile datagrams for the fuzz scenario: random bytes, valid headers over random or cut
 * bodies, and valid messages of every type with bits flipped. Reproducible from the seed.
 */
import { CONNECTION_ID_BYTES, COOKIE_BYTES, HASH_BYTES, MAX_DATAGRAM_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from '../../configs.js'
import { encode, MessageType, RejectReason, Stream, TrackerErrorCode, type Message } from '../../src/messages/index.js'
import { Prng } from '../../src/transport/prng.js'

export function prngBytes (prng: Prng, n: number): Buffer {
  const b = Buffer.allocUnsafe(n)
  let i = 0
  for (; i + 4 <= n; i += 4) b.writeUInt32BE(prng.int(2 ** 32), i)
  for (; i < n; i++) b[i] = prng.int(256)
  return b
}

const ALL_TYPES: MessageType[] = Object.values(MessageType).filter((v): v is MessageType => typeof v === 'number')

/**
 * Real values the samples use part of the time, so that mutated copies get past the cheap checks
 * to the deeper ones: a connection id valid for the sending socket's address (tracker), a node id
 * the tracker knows, a cookie valid for the sending socket and the hash of a shared file (node).
 */
export interface HostileContext {
  connectionId?: Buffer
  nodeIds?: number[]
  cookie?: Buffer
  contentHash?: Buffer
}

/** One valid message of every type, with random fields and, often, the context's real values. */
function sampleMessages (prng: Prng, ctx: HostileContext): Message[] {
  const u32 = (): number => prng.int(2 ** 32)
  const bytes = (n: number): Buffer => prngBytes(prng, n)
  const seq = (): number => Date.now() * 1000 + prng.int(1e6)
  const real = <T>(value: T | undefined, fallback: () => T): T => value !== undefined && prng.int(4) !== 0 ? value : fallback()
  const nodeId = (): number => ctx.nodeIds !== undefined && ctx.nodeIds.length > 0 && prng.int(2) === 0 ? ctx.nodeIds[prng.int(ctx.nodeIds.length)] as number : u32()
  const signed = { connectionId: real(ctx.connectionId, () => bytes(CONNECTION_ID_BYTES)), nodeId: nodeId(), seq: seq(), signature: bytes(SIGNATURE_BYTES) }
  const file = { name: `fuzz-${prng.int(1e6)}.bin`, size: 1 + prng.int(1e9), pieceSize: 256 * 1024, contentHash: bytes(HASH_BYTES) }
  const hash = (): Buffer => real(ctx.contentHash, () => bytes(HASH_BYTES))
  const cookie = real(ctx.cookie, () => bytes(COOKIE_BYTES))
  return [
    { type: MessageType.Connect, txid: u32() },
    { type: MessageType.ConnectReply, txid: u32(), connectionId: bytes(CONNECTION_ID_BYTES) },
    { type: MessageType.Register, txid: u32(), ...signed, publicKey: bytes(PUBLIC_KEY_BYTES) },
    { type: MessageType.Own, complete: true, txid: u32(), ...signed, file },
    { type: MessageType.Need, txid: u32(), ...signed, name: file.name },
    { type: MessageType.Update, txid: u32(), ...signed, contentHash: hash(), received: [{ ownerId: u32(), bytes: prng.int(1e9) }, { ownerId: u32(), bytes: 1 }] },
    { type: MessageType.Exit, txid: u32(), ...signed },
    { type: MessageType.Ack, txid: u32() },
    { type: MessageType.RegisterAck, txid: u32(), heartbeatMs: prng.int(1e5), known: prng.int(2) === 1 },
    {
      type: MessageType.NeedReply,
      txid: u32(),
      file,
      variants: 1,
      owners: [{ nodeId: u32(), host: '127.0.0.1', port: 1 + prng.int(65535), credit: prng.int(1e9), complete: true }]
    },
    { type: MessageType.Error, txid: u32(), code: TrackerErrorCode.Forbidden, text: 'no' },
    { type: MessageType.Hello, txid: u32() },
    { type: MessageType.HelloAck, txid: u32(), cookie: bytes(COOKIE_BYTES) },
    { type: MessageType.Request, txid: u32(), cookie, contentHash: hash(), stream: prng.int(2) as Stream, offset: prng.int(1e6), length: 1 + prng.int(60_000), datagramBytes: 1200 },
    { type: MessageType.Data, txid: u32(), stream: Stream.Content, offset: prng.int(1e6), payload: bytes(1 + prng.int(1183)) },
    { type: MessageType.Reject, txid: u32(), reason: RejectReason.OutOfRange },
    { type: MessageType.Unchoke, txid: u32() },
    { type: MessageType.Cancel, txid: u32(), cookie }
  ]
}

export type HostileKind = 'random' | 'header+junk' | 'truncated' | 'appended' | 'bit-flipped' | 'huge'

/**
 * `count` hostile datagrams reproducible from `seed`, about a third each: pure random bytes (0..1500,
 * and 1 in 200 up to the 65,507-byte maximum), a valid 'UT' v1 header of a known type over a random,
 * truncated or extended body, and valid messages of every type with 1..4 bits flipped.
 */
export function * hostileDatagrams (seed: number, count: number, ctx: HostileContext = {}, kinds?: Record<HostileKind, number>): Generator<Buffer> {
  const prng = new Prng(seed)
  let samples = sampleMessages(prng, ctx).map(encode)
  let byType = new Map(samples.map((b) => [b[3] as number, b]))
  const unsampled = ALL_TYPES.filter((t) => !byType.has(t))
  if (unsampled.length > 0) throw new Error(`no sample message of type ${unsampled.map((t) => MessageType[t]).join(', ')}`)
  const count1 = (k: HostileKind): void => { if (kinds !== undefined) kinds[k]++ }
  for (let n = 0; n < count; n++) {
    if (n % 500 === 0) {
      samples = sampleMessages(prng, ctx).map(encode)
      byType = new Map(samples.map((b) => [b[3] as number, b]))
    }
    const kind = prng.int(3)
    if (kind === 0) {
      if (prng.int(200) === 0) {
        count1('huge')
        yield prngBytes(prng, 1501 + prng.int(MAX_DATAGRAM_BYTES - 1500))
      } else {
        count1('random')
        yield prngBytes(prng, prng.int(1501))
      }
    } else if (kind === 1) {
      const t = prng.int(ALL_TYPES.length)
      const type = ALL_TYPES[t] as MessageType
      const r = prng.int(3)
      if (r === 0) {
        count1('header+junk')
        yield Buffer.concat([Buffer.from([0x55, 0x54, 1, type]), prngBytes(prng, 4 + prng.int(200))])
      } else {
        const valid = byType.get(type) as Buffer
        if (r === 1) {
          count1('truncated')
          yield valid.subarray(0, prng.int(valid.length))
        } else {
          count1('appended')
          yield Buffer.concat([valid, prngBytes(prng, 1 + prng.int(16))])
        }
      }
    } else {
      count1('bit-flipped')
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
