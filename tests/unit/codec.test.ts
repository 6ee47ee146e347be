import { Buffer } from 'node:buffer'
import { isIP } from 'node:net'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  CONNECTION_ID_BYTES, COOKIE_BYTES, HASH_BYTES, MAX_DATAGRAM_BYTES, MAX_DATAGRAMS_PER_REQUEST, MAX_ERROR_TEXT_BYTES, MAX_FILE_NAME_BYTES,
  MAX_FILE_SIZE_BYTES, MAX_PIECE_SIZE, MAX_PIECES, MAX_UPDATE_ENTRIES, MIN_PIECE_SIZE, PART_SUFFIX, PUBLIC_KEY_BYTES, SIGNATURE_BYTES
} from '../../configs.js'
import { BufferReader, BufferWriter } from '../../src/messages/buffer-codec.js'
import { writeHeader } from '../../src/messages/header.js'
import {
  DATA_HEADER_BYTES, HEADER_BYTES, MAGIC, MAX_REQUEST_BYTES, MIN_DATAGRAM_BYTES, PROTOCOL_VERSION,
  MalformedMessageError, MessageType, RejectReason, Stream, TrackerErrorCode,
  decode, encode, encodeDataHeader, isValidFileName, tryDecode,
  type DataMsg, type FileIdentity, type MalformedCause, type Message, type OwnerEntry, type SignedTrackerRequest
} from '../../src/messages/index.js'

// ---- helpers ------------------------------------------------------------------------------------

const RUNS = 200

/** Deep copy with every Buffer replaced by a tagged hex string, so equality compares content and kind. */
function plain (v: unknown): unknown {
  if (Buffer.isBuffer(v)) return { buffer: v.toString('hex') }
  if (v instanceof Uint8Array) return { uint8array: Buffer.from(v).toString('hex') }
  if (Array.isArray(v)) return v.map(plain)
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, plain(x)]))
  }
  return v
}

/** What decode() threw, or undefined when it returned. */
function decodeError (buf: Buffer): unknown {
  try {
    decode(buf)
  } catch (err) {
    return err
  }
  return undefined
}

/** decode() and tryDecode() both refuse `buf` with a MalformedMessageError (with `reason`, when given). */
function expectMalformed (buf: Buffer, reason?: MalformedCause): void {
  const err = decodeError(buf)
  expect(err).toBeInstanceOf(MalformedMessageError)
  if (reason !== undefined) expect((err as MalformedMessageError).reason).toBe(reason)
  const res = tryDecode(buf)
  expect(res.ok).toBe(false)
  if (!res.ok) {
    expect(res.error).toBeInstanceOf(MalformedMessageError)
    if (reason !== undefined) expect(res.error.reason).toBe(reason)
  }
}

/** A datagram built field by field, bypassing encode(). */
function frame (type: number, build: (w: BufferWriter) => void = () => {}, txid = 7): Buffer {
  const w = writeHeader(new BufferWriter(), type as MessageType, txid)
  build(w)
  return w.finish()
}

/** A u8-length-prefixed string given as raw bytes (which may be invalid UTF-8 or invalid names). */
function rawString8 (w: BufferWriter, bytes: Buffer | number[]): void {
  const b = Buffer.from(bytes)
  w.u8(b.length).bytes(b)
}

function bigU64 (v: bigint): Buffer {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(v)
  return b
}

const HASH = Buffer.alloc(HASH_BYTES, 0xab)
const CONN_ID = Buffer.alloc(CONNECTION_ID_BYTES, 0xc1)
const COOKIE = Buffer.alloc(COOKIE_BYTES, 0xc0)
const PUBKEY = Buffer.alloc(PUBLIC_KEY_BYTES, 0x9b)
const SIG = Buffer.alloc(SIGNATURE_BYTES, 0x5a)

/** The fields every signed tracker request carries, with fixed values for hand-built datagrams. */
const SIGNED = { connectionId: CONN_ID, nodeId: 1, seq: 1, signature: SIG } as const

/** connection id, node id, seq: what precedes a signed request's body. */
function signedHead (w: BufferWriter, nodeId = 1, seq: number | bigint = 1): BufferWriter {
  w.bytes(CONN_ID).u32(nodeId)
  if (typeof seq === 'bigint') w.bytes(bigU64(seq))
  else w.u64(seq)
  return w
}

/** A signed request of `type` whose body is written by `body`, with a (dummy) trailing signature. */
function signedFrame (type: MessageType, body: (w: BufferWriter) => void = () => {}, sig: Buffer = SIG): Buffer {
  return frame(type, w => { signedHead(w); body(w); w.bytes(sig) })
}

function fileBody (w: BufferWriter, name: Buffer | number[], size: number | bigint = 1000, pieceSize = MIN_PIECE_SIZE): void {
  rawString8(w, name)
  if (typeof size === 'bigint') w.bytes(bigU64(size))
  else w.u64(size)
  w.u32(pieceSize).bytes(HASH)
}

function ownDatagram (name: Buffer | number[], size: number | bigint = 1000, pieceSize = MIN_PIECE_SIZE): Buffer {
  return signedFrame(MessageType.Own, w => { fileBody(w, name, size, pieceSize); w.u8(1) })
}

function needDatagram (name: Buffer | number[]): Buffer {
  return signedFrame(MessageType.Need, w => { rawString8(w, name) })
}

interface RawOwner { nodeId?: number, host?: Buffer | number[], port?: number, credit?: bigint, flags?: number }
function writeRawOwner (w: BufferWriter, o: RawOwner = {}): void {
  w.u32(o.nodeId ?? 3)
  rawString8(w, o.host ?? Buffer.from('10.0.0.1'))
  w.u16(o.port ?? 4000).bytes(bigU64(o.credit ?? 0n)).u8(o.flags ?? 1)
}

function needReplyDatagram (owners: RawOwner[], present = 0, ownerCount = owners.length): Buffer {
  return frame(MessageType.NeedReply, w => {
    w.u8(present)
    if (present === 1) fileBody(w, Buffer.from('a.bin'))
    w.u8(1).u8(ownerCount)
    for (const o of owners) writeRawOwner(w, o)
  })
}

function requestDatagram (f: { stream?: number, offset?: bigint, length?: number, datagramBytes?: number, cookie?: Buffer } = {}): Buffer {
  return frame(MessageType.Request, w => {
    w.bytes(f.cookie ?? COOKIE).bytes(HASH).u8(f.stream ?? Stream.Content).bytes(bigU64(f.offset ?? 0n)).u32(f.length ?? 1000).u16(f.datagramBytes ?? 1200)
  })
}

function utf8Bytes (s: string): number {
  return Buffer.byteLength(s, 'utf8')
}

/** Cuts `s` at a code-point boundary so that it fits in `maxBytes` of UTF-8 (independent of truncateUtf8). */
function fitUtf8 (s: string, maxBytes: number): string {
  let out = ''
  let used = 0
  for (const ch of s) {
    const n = utf8Bytes(ch)
    if (used + n > maxBytes) break
    out += ch
    used += n
  }
  return out
}

const numericValues = <E extends Record<string, string | number>>(e: E): number[] =>
  Object.values(e).filter((v): v is number => typeof v === 'number')

const ALL_TYPES = numericValues(MessageType) as MessageType[]
const ERROR_CODES = numericValues(TrackerErrorCode) as TrackerErrorCode[]
const REJECT_REASONS = numericValues(RejectReason) as RejectReason[]

// ---- arbitraries ----------------------------------------------------------------------------------

const u32 = fc.integer({ min: 0, max: 0xffff_ffff })
const bytesArb = (n: number): fc.Arbitrary<Buffer> => fc.uint8Array({ minLength: n, maxLength: n }).map(a => Buffer.from(a))
const hashArb = bytesArb(HASH_BYTES)
const connectionIdArb = bytesArb(CONNECTION_ID_BYTES)
const cookieArb = bytesArb(COOKIE_BYTES)
/** Sequence numbers are u64 on the wire but bounded to safe integers (the decoder refuses more). */
const seqArb = fc.oneof(fc.maxSafeNat(), fc.constantFrom(0, 1, Date.now() * 1000, Number.MAX_SAFE_INTEGER))
/** What every signed request carries; the signature is opaque bytes to the codec. */
const signedArb = fc.record({ txid: u32, connectionId: connectionIdArb, nodeId: u32, seq: seqArb, signature: bytesArb(SIGNATURE_BYTES) })
const streamArb = fc.constantFrom(Stream.Content, Stream.Manifest)
const offsetArb = fc.integer({ min: 0, max: MAX_FILE_SIZE_BYTES })

const SAFE_CHARS = [
  ...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789',
  ...' -_.,+=()[]{}@#$%&!~\'',
  'é', 'ß', 'Ω', 'ñ', '文', '字', '😀'
]
/** The documented rule, restated independently of checkFileName (the alphabet holds no separator or control). */
const obeysNameRule = (s: string): boolean =>
  s.length > 0 && utf8Bytes(s) <= MAX_FILE_NAME_BYTES && !s.includes('..') && !s.startsWith('.') && !s.endsWith(PART_SUFFIX)

const safeNameArb = fc.array(fc.constantFrom(...SAFE_CHARS), { minLength: 1, maxLength: 270 })
  .map(chars => fitUtf8(chars.join(''), MAX_FILE_NAME_BYTES))
  .filter(obeysNameRule)
/**
 * Any unicode, kept when checkFileName accepts it unchanged. A leading U+FEFF is left out: see the
 * KNOWN BUG test below (the UTF-8 decoder strips it).
 */
const unicodeNameArb = fc.string({ unit: 'binary', minLength: 1, maxLength: 60 })
  .filter(s => !s.startsWith('\uFEFF') && s === s.normalize('NFC') && isValidFileName(s))
const nameArb = fc.oneof({ arbitrary: safeNameArb, weight: 3 }, { arbitrary: unicodeNameArb, weight: 1 })

const fileArb: fc.Arbitrary<FileIdentity> = fc.integer({ min: MIN_PIECE_SIZE, max: MAX_PIECE_SIZE }).chain(pieceSize =>
  fc.record({
    name: nameArb,
    size: fc.integer({ min: 0, max: Math.min(MAX_FILE_SIZE_BYTES, pieceSize * MAX_PIECES) }),
    pieceSize: fc.constant(pieceSize),
    contentHash: hashArb
  })
)

const ownerArb: fc.Arbitrary<OwnerEntry> = fc.record({
  nodeId: u32,
  host: fc.oneof(fc.ipV4(), fc.ipV6()),
  port: fc.integer({ min: 1, max: 65_535 }),
  credit: fc.maxSafeNat(),
  complete: fc.boolean()
})

const errorTextArb = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.array(fc.constantFrom('a', 'é', '文', '😀', ' '), { maxLength: 220 }).map(a => a.join(''))
).map(s => fitUtf8(s, MAX_ERROR_TEXT_BYTES)).filter(s => !s.startsWith('\uFEFF'))

const arbs: { [T in MessageType]: fc.Arbitrary<Extract<Message, { type: T }>> } = {
  [MessageType.Connect]: u32.map(txid => ({ type: MessageType.Connect, txid })),
  [MessageType.ConnectReply]: fc.record({ txid: u32, connectionId: connectionIdArb }).map(r => ({ type: MessageType.ConnectReply, ...r })),
  [MessageType.Register]: fc.tuple(signedArb, bytesArb(PUBLIC_KEY_BYTES)).map(([s, publicKey]) => ({ type: MessageType.Register, ...s, publicKey })),
  [MessageType.Own]: fc.tuple(signedArb, fileArb).map(([s, file]) => ({ type: MessageType.Own, complete: true, ...s, file })),
  [MessageType.Need]: fc.tuple(signedArb, nameArb).map(([s, name]) => ({ type: MessageType.Need, ...s, name })),
  [MessageType.Update]: fc.tuple(signedArb, fc.record({
    contentHash: hashArb,
    received: fc.array(fc.record({ ownerId: u32, bytes: fc.integer({ min: 0, max: MAX_FILE_SIZE_BYTES }) }), { maxLength: MAX_UPDATE_ENTRIES })
  })).map(([s, r]) => ({ type: MessageType.Update, ...s, ...r })),
  [MessageType.Exit]: signedArb.map(s => ({ type: MessageType.Exit, ...s })),
  [MessageType.Ack]: u32.map(txid => ({ type: MessageType.Ack, txid })),
  [MessageType.RegisterAck]: fc.record({ txid: u32, heartbeatMs: u32, known: fc.boolean() })
    .map(r => ({ type: MessageType.RegisterAck, ...r })),
  [MessageType.NeedReply]: fc.record({
    txid: u32,
    file: fc.option(fileArb, { nil: null }),
    variants: fc.integer({ min: 0, max: 255 }),
    owners: fc.array(ownerArb, { maxLength: 20 })
  }).map(r => ({ type: MessageType.NeedReply, ...r })),
  [MessageType.Error]: fc.record({ txid: u32, code: fc.constantFrom(...ERROR_CODES), text: errorTextArb })
    .map(r => ({ type: MessageType.Error, ...r })),
  [MessageType.Request]: fc.integer({ min: MIN_DATAGRAM_BYTES, max: MAX_DATAGRAM_BYTES }).chain(datagramBytes => fc.record({
    txid: u32,
    cookie: cookieArb,
    contentHash: hashArb,
    stream: streamArb,
    offset: offsetArb,
    // A request is answered by at most MAX_DATAGRAMS_PER_REQUEST datagrams of the size it asks for.
    length: fc.integer({ min: 1, max: MAX_DATAGRAMS_PER_REQUEST * (datagramBytes - DATA_HEADER_BYTES) }),
    datagramBytes: fc.constant(datagramBytes)
  })).map(r => ({ type: MessageType.Request, ...r })),
  [MessageType.Data]: fc.record({
    txid: u32,
    stream: streamArb,
    offset: offsetArb,
    payload: fc.uint8Array({ minLength: 1, maxLength: 1500 }).map(a => Buffer.from(a))
  }).map(r => ({ type: MessageType.Data, ...r })),
  [MessageType.Reject]: fc.record({ txid: u32, reason: fc.constantFrom(...REJECT_REASONS) })
    .map(r => ({ type: MessageType.Reject, ...r })),
  [MessageType.Hello]: u32.map(txid => ({ type: MessageType.Hello, txid })),
  [MessageType.HelloAck]: fc.record({ txid: u32, cookie: cookieArb }).map(r => ({ type: MessageType.HelloAck, ...r })),
  [MessageType.Unchoke]: u32.map(txid => ({ type: MessageType.Unchoke, txid })),
  [MessageType.Cancel]: fc.record({ txid: u32, cookie: cookieArb }).map(r => ({ type: MessageType.Cancel, ...r }))
}

const typeEntries = ALL_TYPES.map(t => [MessageType[t], t, arbs[t] as fc.Arbitrary<Message>] as const)
const anyMessageArb: fc.Arbitrary<Message> = fc.oneof(...typeEntries.map(([, , a]) => a))

// ---- round trip -----------------------------------------------------------------------------------

describe('encode → decode round trip', () => {
  it('has an arbitrary for every MessageType and every one has a distinct wire byte', () => {
    expect(ALL_TYPES.length).toBe(18)
    expect(Object.keys(arbs).map(Number).sort((a, b) => a - b)).toEqual([...ALL_TYPES].sort((a, b) => a - b))
    expect(new Set(ALL_TYPES).size).toBe(ALL_TYPES.length)
  })

  it.each(typeEntries)('%s round-trips to a deeply equal message and re-encodes to the same bytes', (_name, type, arb) => {
    fc.assert(fc.property(arb, msg => {
      const buf = encode(msg)
      expect(buf.length).toBeLessThanOrEqual(MAX_DATAGRAM_BYTES)
      expect(buf.readUInt16BE(0)).toBe(MAGIC)
      expect(buf.readUInt8(2)).toBe(PROTOCOL_VERSION)
      expect(buf.readUInt8(3)).toBe(type)
      expect(buf.readUInt32BE(4)).toBe(msg.txid)
      const back = decode(buf)
      expect(plain(back)).toStrictEqual(plain(msg))
      expect(encode(back).equals(buf)).toBe(true)
      const res = tryDecode(buf)
      expect(res.ok).toBe(true)
      if (res.ok) expect(plain(res.msg)).toStrictEqual(plain(msg))
    }), { numRuns: RUNS })
  })

  it('uses the documented big-endian layout: magic "UT", version, type, txid', () => {
    const connectionId = Buffer.from('1112131415161718', 'hex')
    const publicKey = Buffer.alloc(PUBLIC_KEY_BYTES, 0x77)
    const signature = Buffer.alloc(SIGNATURE_BYTES, 0xee)
    const buf = encode({ type: MessageType.Register, txid: 0x01020304, connectionId, nodeId: 0xa0b0c0d0, seq: 0x0102030405, publicKey, signature })
    expect(buf.toString('hex')).toBe('5554' + '01' + '01' + '01020304' + '1112131415161718' + 'a0b0c0d0' + '0000000102030405' +
      '77'.repeat(PUBLIC_KEY_BYTES) + 'ee'.repeat(SIGNATURE_BYTES))
    expect(buf.subarray(0, 2).toString('latin1')).toBe('UT')
    expect(encode({ type: MessageType.Ack, txid: 0 }).length).toBe(HEADER_BYTES)
  })

  it('signed requests: connection id, node id and seq follow the header, and the signature is the last 64 bytes', () => {
    fc.assert(fc.property(fc.constantFrom(MessageType.Register, MessageType.Own, MessageType.Need, MessageType.Update, MessageType.Exit).chain(t => arbs[t] as fc.Arbitrary<SignedTrackerRequest>), msg => {
      const buf = encode(msg)
      expect(buf.subarray(HEADER_BYTES, HEADER_BYTES + CONNECTION_ID_BYTES).equals(msg.connectionId)).toBe(true)
      expect(buf.readUInt32BE(HEADER_BYTES + CONNECTION_ID_BYTES)).toBe(msg.nodeId)
      expect(Number(buf.readBigUInt64BE(HEADER_BYTES + CONNECTION_ID_BYTES + 4))).toBe(msg.seq)
      expect(buf.subarray(buf.length - SIGNATURE_BYTES).equals(msg.signature)).toBe(true)
      if (msg.type === MessageType.Register) {
        expect(buf.length).toBe(HEADER_BYTES + CONNECTION_ID_BYTES + 4 + 8 + PUBLIC_KEY_BYTES + SIGNATURE_BYTES)
        expect(buf.subarray(HEADER_BYTES + CONNECTION_ID_BYTES + 12, buf.length - SIGNATURE_BYTES).equals(msg.publicKey)).toBe(true)
      }
    }), { numRuns: RUNS })
  })

  it('a signature, public key, connection id or cookie of the wrong length is refused', () => {
    // Shorter: the reader runs out of bytes. Longer: the extra bytes are trailing.
    for (const sig of [SIG.subarray(1), Buffer.alloc(0)]) expectMalformed(signedFrame(MessageType.Exit, () => {}, sig), 'truncated')
    expectMalformed(signedFrame(MessageType.Exit, () => {}, Buffer.alloc(SIGNATURE_BYTES + 1)), 'trailing-bytes')
    expectMalformed(signedFrame(MessageType.Register, w => { w.bytes(PUBKEY.subarray(1)) }), 'truncated')
    expectMalformed(signedFrame(MessageType.Register, w => { w.bytes(PUBKEY).u8(0) }), 'trailing-bytes')
    expectMalformed(frame(MessageType.ConnectReply, w => { w.bytes(CONN_ID.subarray(1)) }), 'truncated')
    expectMalformed(frame(MessageType.HelloAck, w => { w.bytes(Buffer.alloc(COOKIE_BYTES + 1)) }), 'trailing-bytes')
    expectMalformed(frame(MessageType.Unchoke, w => { w.u8(0) }), 'trailing-bytes')
    expectMalformed(frame(MessageType.Cancel, w => { w.bytes(Buffer.alloc(COOKIE_BYTES - 1)) }), 'truncated')
    expectMalformed(frame(MessageType.Request, w => { w.bytes(COOKIE.subarray(2)) }), 'truncated')
    // A short cookie shifts every later field: the request no longer parses.
    expectMalformed(requestDatagram({ cookie: COOKIE.subarray(2) }))
    // Controls: the right lengths decode.
    expect(decode(signedFrame(MessageType.Exit))).toMatchObject({ type: MessageType.Exit, ...SIGNED })
    expect(decode(signedFrame(MessageType.Register, w => { w.bytes(PUBKEY) }))).toMatchObject({ type: MessageType.Register, publicKey: PUBKEY, signature: SIG })
    expect(decode(requestDatagram())).toMatchObject({ type: MessageType.Request, cookie: COOKIE })
  })

  it('refuses a seq above Number.MAX_SAFE_INTEGER with out-of-bounds', () => {
    const exit = (seq: bigint): Buffer => frame(MessageType.Exit, w => { signedHead(w, 1, seq).bytes(SIG) })
    expectMalformed(exit(BigInt(Number.MAX_SAFE_INTEGER) + 1n), 'out-of-bounds')
    expectMalformed(exit(2n ** 64n - 1n), 'out-of-bounds')
    expect(decode(exit(BigInt(Number.MAX_SAFE_INTEGER)))).toMatchObject({ seq: Number.MAX_SAFE_INTEGER })
  })

  it('accepts the boundary values of every bounded field', () => {
    const file: FileIdentity = { name: 'x'.repeat(MAX_FILE_NAME_BYTES), size: MAX_FILE_SIZE_BYTES, pieceSize: MAX_PIECE_SIZE, contentHash: HASH }
    expect(Math.ceil(file.size / file.pieceSize)).toBe(MAX_PIECES)
    const msgs: Message[] = [
      { type: MessageType.Own, complete: true, txid: 0xffff_ffff, ...SIGNED, nodeId: 0xffff_ffff, seq: Number.MAX_SAFE_INTEGER, file },
      { type: MessageType.Own, complete: true, txid: 0, ...SIGNED, nodeId: 0, seq: 0, file: { ...file, name: '文'.repeat(85), size: MIN_PIECE_SIZE * MAX_PIECES, pieceSize: MIN_PIECE_SIZE } },
      { type: MessageType.Own, complete: true, txid: 0, ...SIGNED, nodeId: 0, file: { ...file, size: 0, pieceSize: MIN_PIECE_SIZE } },
      {
        type: MessageType.Update, txid: 1, ...SIGNED, nodeId: 2, contentHash: HASH,
        received: Array.from({ length: MAX_UPDATE_ENTRIES }, (_, i) => ({ ownerId: i, bytes: MAX_FILE_SIZE_BYTES }))
      },
      { type: MessageType.Register, txid: 0xffff_ffff, connectionId: Buffer.alloc(CONNECTION_ID_BYTES, 0xff), nodeId: 0xffff_ffff, seq: Number.MAX_SAFE_INTEGER, publicKey: Buffer.alloc(PUBLIC_KEY_BYTES, 0xff), signature: Buffer.alloc(SIGNATURE_BYTES, 0xff) },
      { type: MessageType.Exit, txid: 0, connectionId: Buffer.alloc(CONNECTION_ID_BYTES), nodeId: 0, seq: 0, signature: Buffer.alloc(SIGNATURE_BYTES) },
      { type: MessageType.ConnectReply, txid: 0xffff_ffff, connectionId: Buffer.alloc(CONNECTION_ID_BYTES, 0xff) },
      { type: MessageType.HelloAck, txid: 0, cookie: Buffer.alloc(COOKIE_BYTES) },
      {
        type: MessageType.NeedReply, txid: 1, file, variants: 255,
        owners: [
          { nodeId: 1, host: '0000:0000:0000:0000:0000:ffff:255.255.255.255', port: 65_535, credit: Number.MAX_SAFE_INTEGER, complete: false },
          { nodeId: 2, host: '::1', port: 1, credit: 0, complete: true }
        ]
      },
      { type: MessageType.Error, txid: 1, code: TrackerErrorCode.Overloaded, text: 'é'.repeat(MAX_ERROR_TEXT_BYTES / 2) },
      { type: MessageType.Error, txid: 1, code: TrackerErrorCode.BadRequest, text: '' },
      { type: MessageType.Request, txid: 1, cookie: COOKIE, contentHash: HASH, stream: Stream.Manifest, offset: MAX_FILE_SIZE_BYTES, length: MAX_REQUEST_BYTES, datagramBytes: MAX_DATAGRAM_BYTES },
      { type: MessageType.Request, txid: 1, cookie: Buffer.alloc(COOKIE_BYTES, 0xff), contentHash: HASH, stream: Stream.Content, offset: 0, length: 1, datagramBytes: MIN_DATAGRAM_BYTES },
      { type: MessageType.Data, txid: 1, stream: Stream.Manifest, offset: MAX_FILE_SIZE_BYTES, payload: Buffer.alloc(MAX_DATAGRAM_BYTES - DATA_HEADER_BYTES, 1) }
    ]
    for (const msg of msgs) {
      const buf = encode(msg)
      expect(plain(decode(buf))).toStrictEqual(plain(msg))
    }
  })

  it('copies fixed fields out of the datagram: later changes to the receive buffer do not alter them', () => {
    const msgs: Message[] = [
      { type: MessageType.Update, txid: 1, ...SIGNED, nodeId: 2, contentHash: Buffer.from(HASH), received: [] },
      { type: MessageType.Register, txid: 1, ...SIGNED, publicKey: Buffer.from(PUBKEY) },
      { type: MessageType.ConnectReply, txid: 1, connectionId: Buffer.from(CONN_ID) },
      { type: MessageType.HelloAck, txid: 1, cookie: Buffer.from(COOKIE) },
      { type: MessageType.Request, txid: 1, cookie: Buffer.from(COOKIE), contentHash: Buffer.from(HASH), stream: Stream.Content, offset: 0, length: 10, datagramBytes: 1200 }
    ]
    for (const msg of msgs) {
      const buf = encode(msg)
      const back = decode(buf)
      buf.fill(0)
      expect(plain(back)).toStrictEqual(plain(msg))
    }
  })
})

// ---- fuzzing ----------------------------------------------------------------------------------------

/** decode() either returns or throws MalformedMessageError; tryDecode() agrees with it and never throws. */
function checkDecodeContract (buf: Buffer): Message | undefined {
  let msg: Message | undefined
  let err: unknown
  try {
    msg = decode(buf)
  } catch (e) {
    err = e
  }
  let res: ReturnType<typeof tryDecode> | undefined
  expect(() => { res = tryDecode(buf) }).not.toThrow()
  if (res === undefined) throw new Error('unreachable')
  if (msg === undefined) {
    expect(err).toBeInstanceOf(MalformedMessageError)
    expect(res.ok).toBe(false)
    if (!res.ok) {
      expect(res.error).toBeInstanceOf(MalformedMessageError)
      expect(res.error.reason).toBe((err as MalformedMessageError).reason)
    }
    return undefined
  }
  expect(res.ok).toBe(true)
  if (res.ok) expect(plain(res.msg)).toStrictEqual(plain(msg))
  // Every accepted datagram is the canonical encoding of what it decodes to, except for the
  // content of CONNECT/HELLO padding, which the decoder does not check (see the BUG test below).
  const canonical = encode(msg)
  if (msg.type === MessageType.Connect || msg.type === MessageType.Hello) {
    expect(buf.length).toBe(canonical.length)
    expect(buf.subarray(0, HEADER_BYTES).equals(canonical.subarray(0, HEADER_BYTES))).toBe(true)
  } else {
    expect(canonical.equals(buf)).toBe(true)
  }
  return msg
}

describe('decode of hostile input', () => {
  it('arbitrary bytes: returns a message or throws MalformedMessageError, nothing else', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), arr => {
      const buf = Buffer.from(arr)
      checkDecodeContract(buf)
      // Garbage without a valid header is refused for the header's reason.
      if (buf.length < HEADER_BYTES) expectMalformed(buf, 'too-short')
      else if (buf.readUInt16BE(0) !== MAGIC) expectMalformed(buf, 'bad-magic')
      else if (buf[2] !== PROTOCOL_VERSION) expectMalformed(buf, 'bad-version')
    }), { numRuns: 2000 })
  })

  it('a valid header of each type followed by arbitrary bytes: a message of that type, or MalformedMessageError', () => {
    fc.assert(fc.property(fc.constantFrom(...ALL_TYPES), u32, fc.uint8Array({ maxLength: 600 }), (type, txid, body) => {
      const buf = frame(type, w => { w.bytes(body) }, txid)
      const msg = checkDecodeContract(buf)
      if (msg !== undefined) {
        expect(msg.type).toBe(type)
        expect(msg.txid).toBe(txid)
      }
    }), { numRuns: 3000 })
  })

  it('a valid encoding with one bit flipped: decodes (canonically) or throws MalformedMessageError, promptly', () => {
    fc.assert(fc.property(anyMessageArb, fc.nat(), (msg, pick) => {
      const buf = encode(msg)
      const bit = pick % (buf.length * 8)
      const flipped = Buffer.from(buf)
      flipped[bit >> 3]! ^= 1 << (bit & 7)
      const t0 = performance.now()
      checkDecodeContract(flipped)
      expect(performance.now() - t0).toBeLessThan(1000)
    }), { numRuns: 2000 })
  })

  it('tryDecode reports garbage as { ok: false } with a MalformedMessageError', () => {
    for (const buf of [Buffer.alloc(0), Buffer.from('hello world'), Buffer.alloc(64, 0xff)]) {
      let res: ReturnType<typeof tryDecode> | undefined
      expect(() => { res = tryDecode(buf) }).not.toThrow()
      expect(res?.ok).toBe(false)
      if (res !== undefined && !res.ok) expect(res.error).toBeInstanceOf(MalformedMessageError)
    }
  })
})

// ---- truncation and trailing bytes -------------------------------------------------------------------

describe('truncation', () => {
  it.each(typeEntries)('every strict prefix of a %s encoding is refused (Data: unless payload remains)', (_name, type, arb) => {
    fc.assert(fc.property(arb, msg => {
      const buf = encode(msg)
      for (let len = 0; len < buf.length; len++) {
        const prefix = buf.subarray(0, len)
        if (len < HEADER_BYTES) {
          expectMalformed(prefix, 'too-short')
        } else if (type !== MessageType.Data || len <= DATA_HEADER_BYTES) {
          // Header and data-header cuts, and a Data datagram left with zero payload bytes.
          expectMalformed(prefix, 'truncated')
        } else {
          const d = msg as DataMsg
          const back = decode(prefix)
          expect(plain(back)).toStrictEqual(plain({ ...d, payload: d.payload.subarray(0, len - DATA_HEADER_BYTES) }))
        }
      }
    }), { numRuns: type === MessageType.Data || type === MessageType.NeedReply ? 50 : RUNS })
  })

  it('a Data datagram whose header is complete but payload empty is refused', () => {
    expectMalformed(encodeDataHeader(1, Stream.Content, 0), 'truncated')
  })
})

describe('trailing bytes', () => {
  const nonData = typeEntries.filter(([, t]) => t !== MessageType.Data)
  it.each(nonData)('bytes appended to a valid %s are refused with trailing-bytes', (_name, _type, arb) => {
    fc.assert(fc.property(arb, fc.uint8Array({ minLength: 1, maxLength: 64 }), (msg, extra) => {
      expectMalformed(Buffer.concat([encode(msg), extra]), 'trailing-bytes')
    }), { numRuns: RUNS })
  })

  it('bytes appended to a Data datagram become part of its payload (Data has no length field)', () => {
    const msg: DataMsg = { type: MessageType.Data, txid: 9, stream: Stream.Content, offset: 5, payload: Buffer.from('abc') }
    const back = decode(Buffer.concat([encode(msg), Buffer.from('de')]))
    expect(plain(back)).toStrictEqual(plain({ ...msg, payload: Buffer.from('abcde') }))
  })
})

// ---- header ----------------------------------------------------------------------------------------------

describe('header checks', () => {
  const ack = encode({ type: MessageType.Ack, txid: 1 })

  it('refuses datagrams shorter than the 8-byte header with too-short', () => {
    for (let len = 0; len < HEADER_BYTES; len++) expectMalformed(ack.subarray(0, len), 'too-short')
    expectMalformed(Buffer.from([0, 0, 0]), 'too-short')
    expect(decode(ack).type).toBe(MessageType.Ack)
  })

  it('refuses a bad magic with bad-magic', () => {
    for (const magic of [0x0000, 0x5455, 0x5553, 0xffff, MAGIC ^ 1]) {
      const b = Buffer.from(ack)
      b.writeUInt16BE(magic, 0)
      expectMalformed(b, 'bad-magic')
    }
  })

  it('refuses any version other than PROTOCOL_VERSION with bad-version', () => {
    for (const version of [0, 2, 0x7f, 0xff]) {
      const b = Buffer.from(ack)
      b.writeUInt8(version, 2)
      expectMalformed(b, 'bad-version')
    }
  })

  it('refuses every type byte that is not a MessageType with unknown-type', () => {
    const known = new Set<number>(ALL_TYPES)
    let unknown = 0
    for (let t = 0; t <= 0xff; t++) {
      if (known.has(t)) continue
      unknown++
      expectMalformed(frame(t, w => { w.bytes(Buffer.alloc(40)) }), 'unknown-type')
    }
    expect(unknown).toBe(256 - ALL_TYPES.length)
  })

  it('refuses a datagram larger than MAX_DATAGRAM_BYTES, and encode() will not build one', () => {
    const header = encodeDataHeader(1, Stream.Content, 0)
    const fits = Buffer.concat([header, Buffer.alloc(MAX_DATAGRAM_BYTES - DATA_HEADER_BYTES, 7)])
    expect(fits.length).toBe(MAX_DATAGRAM_BYTES)
    expect(decode(fits).type).toBe(MessageType.Data)
    const tooBig = Buffer.concat([fits, Buffer.from([7])])
    expectMalformed(tooBig, 'out-of-bounds')
    expectMalformed(Buffer.alloc(100_000), 'out-of-bounds')
    const big: DataMsg = { type: MessageType.Data, txid: 1, stream: Stream.Content, offset: 0, payload: Buffer.alloc(MAX_DATAGRAM_BYTES - DATA_HEADER_BYTES + 1) }
    expect(() => encode(big)).toThrow(RangeError)
  })
})

// ---- field checks ----------------------------------------------------------------------------------------

describe('file names on the wire', () => {
  const bad: Array<[string, Buffer]> = [
    ['../x', Buffer.from('../x')],
    ['/', Buffer.from('/')],
    ['a/b', Buffer.from('a/b')],
    ['a\\b', Buffer.from('a\\b')],
    ['..', Buffer.from('..')],
    ['NUL inside', Buffer.from('a\u0000b')],
    ['control character', Buffer.from('a\u001bb')],
    ['leading dot', Buffer.from('.udptorrent')],
    ['.part suffix', Buffer.from('movie.mkv.part')],
    ['empty', Buffer.alloc(0)]
  ]

  it.each(bad)('refuses %s with bad-name in Need, Own and NeedReply', (_label, name) => {
    expectMalformed(needDatagram(name), 'bad-name')
    expectMalformed(ownDatagram(name), 'bad-name')
    expectMalformed(frame(MessageType.NeedReply, w => { w.u8(1); fileBody(w, name); w.u8(1).u8(0) }), 'bad-name')
  })

  it('accepts the same datagrams when the name is fine (control for the cases above)', () => {
    expect(decode(needDatagram(Buffer.from('ok.txt')))).toMatchObject({ type: MessageType.Need, name: 'ok.txt' })
    expect(decode(ownDatagram(Buffer.from('ok.txt')))).toMatchObject({ type: MessageType.Own, file: { name: 'ok.txt' } })
    expect(decode(needDatagram(Buffer.from('caf\u00e9.txt')))).toMatchObject({ name: 'caf\u00e9.txt' })
  })

  it('refuses a name that is not in NFC form (it is not silently rewritten)', () => {
    expectMalformed(needDatagram(Buffer.from('cafe\u0301.txt')), 'bad-name')
    expectMalformed(ownDatagram(Buffer.from('e\u0301')), 'bad-name')
    expectMalformed(needDatagram(Buffer.from('\u212b')), 'bad-name') // ANGSTROM SIGN, NFC is U+00C5
  })

  it('refuses invalid UTF-8 in a name with bad-utf8', () => {
    const invalid: number[][] = [
      [0x61, 0xc3, 0x28], // bad continuation byte
      [0xc0, 0xaf], // overlong '/'
      [0x2e, 0xc0, 0xae, 0x2f], // '.' overlong '.', '/'
      [0xed, 0xa0, 0x80], // UTF-16 surrogate encoded in UTF-8
      [0xe6, 0x96], // cut-off multibyte sequence
      [0xff, 0x61],
      [0xf4, 0x90, 0x80, 0x80] // above U+10FFFF
    ]
    for (const bytes of invalid) {
      expectMalformed(needDatagram(bytes), 'bad-utf8')
      expectMalformed(ownDatagram(bytes), 'bad-utf8')
    }
  })

  it('refuses a name length prefix that runs past the datagram with truncated', () => {
    expectMalformed(frame(MessageType.Need, w => { signedHead(w).u8(10).bytes(Buffer.from('abc')) }), 'truncated')
  })
})

describe('bounded numeric fields', () => {
  it('refuses a u64 file size above MAX_FILE_SIZE_BYTES with out-of-bounds', () => {
    expectMalformed(ownDatagram(Buffer.from('a'), MAX_FILE_SIZE_BYTES + 1, MAX_PIECE_SIZE), 'out-of-bounds')
    expectMalformed(ownDatagram(Buffer.from('a'), 0xffff_ffff_ffff_ffffn, MAX_PIECE_SIZE), 'out-of-bounds')
    expectMalformed(ownDatagram(Buffer.from('a'), 2n ** 63n, MAX_PIECE_SIZE), 'out-of-bounds')
    expect(decode(ownDatagram(Buffer.from('a'), MAX_FILE_SIZE_BYTES, MAX_PIECE_SIZE))).toMatchObject({ file: { size: MAX_FILE_SIZE_BYTES } })
  })

  it('refuses piece geometry outside the limits with out-of-bounds', () => {
    expectMalformed(ownDatagram(Buffer.from('a'), 1000, MIN_PIECE_SIZE - 1), 'out-of-bounds')
    expectMalformed(ownDatagram(Buffer.from('a'), 1000, MAX_PIECE_SIZE + 1), 'out-of-bounds')
    expectMalformed(ownDatagram(Buffer.from('a'), 1000, 0), 'out-of-bounds')
    expectMalformed(ownDatagram(Buffer.from('a'), MIN_PIECE_SIZE * MAX_PIECES + 1, MIN_PIECE_SIZE), 'out-of-bounds')
    expect(decode(ownDatagram(Buffer.from('a'), MIN_PIECE_SIZE * MAX_PIECES, MIN_PIECE_SIZE)).type).toBe(MessageType.Own)
  })

  it('refuses a Request with length 0 or above MAX_REQUEST_BYTES', () => {
    expectMalformed(requestDatagram({ length: 0 }), 'out-of-bounds')
    expectMalformed(requestDatagram({ length: MAX_REQUEST_BYTES + 1 }), 'out-of-bounds')
    expectMalformed(requestDatagram({ length: 0xffff_ffff }), 'out-of-bounds')
    expect(decode(requestDatagram({ length: MAX_REQUEST_BYTES, datagramBytes: MAX_DATAGRAM_BYTES }))).toMatchObject({ length: MAX_REQUEST_BYTES })
    expect(decode(requestDatagram({ length: 1 }))).toMatchObject({ length: 1 })
  })

  it('refuses a Request whose answer would take more than MAX_DATAGRAMS_PER_REQUEST datagrams (amplification)', () => {
    const limit = (d: number): number => MAX_DATAGRAMS_PER_REQUEST * (d - DATA_HEADER_BYTES)
    expect(decode(requestDatagram({ length: limit(1200), datagramBytes: 1200 }))).toMatchObject({ length: limit(1200) })
    expectMalformed(requestDatagram({ length: limit(1200) + 1, datagramBytes: 1200 }), 'out-of-bounds')
    expectMalformed(requestDatagram({ length: MAX_REQUEST_BYTES, datagramBytes: MIN_DATAGRAM_BYTES }), 'out-of-bounds')
  })

  it('refuses a Request datagram size outside MIN_DATAGRAM_BYTES..MAX_DATAGRAM_BYTES', () => {
    for (const d of [0, 100, MIN_DATAGRAM_BYTES - 1, MAX_DATAGRAM_BYTES + 1, 0xffff]) {
      expectMalformed(requestDatagram({ datagramBytes: d }), 'out-of-bounds')
    }
    expect(decode(requestDatagram({ datagramBytes: MIN_DATAGRAM_BYTES }))).toMatchObject({ datagramBytes: MIN_DATAGRAM_BYTES })
    expect(decode(requestDatagram({ datagramBytes: MAX_DATAGRAM_BYTES }))).toMatchObject({ datagramBytes: MAX_DATAGRAM_BYTES })
  })

  it('refuses a stream byte other than Content/Manifest/Bitfield, and offsets above MAX_FILE_SIZE_BYTES', () => {
    expectMalformed(requestDatagram({ stream: 3 }), 'out-of-bounds')
    expectMalformed(requestDatagram({ stream: 0xff }), 'out-of-bounds')
    expectMalformed(requestDatagram({ offset: BigInt(MAX_FILE_SIZE_BYTES) + 1n }), 'out-of-bounds')
    expectMalformed(frame(MessageType.Data, w => { w.u8(3).u64(0).bytes(Buffer.from('x')) }), 'out-of-bounds')
    expectMalformed(frame(MessageType.Data, w => { w.u8(0).bytes(bigU64(2n ** 64n - 1n)).bytes(Buffer.from('x')) }), 'out-of-bounds')
  })

  it(`refuses an Update with more than MAX_UPDATE_ENTRIES (${MAX_UPDATE_ENTRIES}) entries`, () => {
    const update = (n: number, declared = n, sig = SIG): Buffer => signedFrame(MessageType.Update, w => {
      w.bytes(HASH).u8(declared)
      for (let i = 0; i < n; i++) w.u32(i).u64(10)
    }, sig)
    expectMalformed(update(MAX_UPDATE_ENTRIES + 1), 'out-of-bounds')
    expectMalformed(update(0, 255), 'out-of-bounds')
    expect(decode(update(MAX_UPDATE_ENTRIES))).toMatchObject({ type: MessageType.Update })
    // One entry short: the reader takes the last entry out of the signature, which then runs short.
    expectMalformed(update(3, 4, Buffer.alloc(SIGNATURE_BYTES)), 'truncated')
    expectMalformed(update(3, 4, Buffer.alloc(0)), 'truncated')
    // ...unless the bytes it took are not a valid entry.
    expectMalformed(update(3, 4, Buffer.alloc(SIGNATURE_BYTES, 0xff)), 'out-of-bounds')
    expectMalformed(signedFrame(MessageType.Update, w => { w.bytes(HASH).u8(1).u32(1).u64(MAX_FILE_SIZE_BYTES + 1) }), 'out-of-bounds')
  })

  it('refuses flag bytes other than 0 and 1', () => {
    expectMalformed(frame(MessageType.RegisterAck, w => { w.u32(1000).u8(2) }), 'out-of-bounds')
    expectMalformed(needReplyDatagram([], 2), 'out-of-bounds')
    expectMalformed(needReplyDatagram([{ flags: 2 }]), 'out-of-bounds')
    expect(decode(needReplyDatagram([{ flags: 0 }], 1))).toMatchObject({ owners: [{ complete: false }], file: { name: 'a.bin' } })
  })

  it('refuses unknown reject reasons and tracker error codes', () => {
    // The first value past each enum, whatever it grows to.
    const nextReason = Math.max(...REJECT_REASONS) + 1
    const nextCode = Math.max(...ERROR_CODES) + 1
    expect(REJECT_REASONS).toContain(RejectReason.BadCookie)
    expect(ERROR_CODES).toEqual(expect.arrayContaining([TrackerErrorCode.BadConnection, TrackerErrorCode.BadSignature, TrackerErrorCode.Replay, TrackerErrorCode.Limit]))
    for (const r of [0, nextReason, 0xff]) expectMalformed(frame(MessageType.Reject, w => { w.u8(r) }), 'out-of-bounds')
    for (const c of [0, nextCode, 0xffff]) expectMalformed(frame(MessageType.Error, w => { w.u16(c).u8(0) }), 'out-of-bounds')
    for (const r of REJECT_REASONS) expect(decode(frame(MessageType.Reject, w => { w.u8(r) }))).toMatchObject({ reason: r })
    for (const c of ERROR_CODES) expect(decode(frame(MessageType.Error, w => { w.u16(c).u8(0) }))).toMatchObject({ code: c })
    expectMalformed(frame(MessageType.Error, w => { w.u16(1).u8(MAX_ERROR_TEXT_BYTES + 1).bytes(Buffer.alloc(MAX_ERROR_TEXT_BYTES + 1, 0x61)) }), 'out-of-bounds')
    expectMalformed(frame(MessageType.Error, w => { w.u16(1); rawString8(w, [0xc3]) }), 'bad-utf8')
  })
})

describe('NeedReply owners', () => {
  it('refuses an owner host that is not an IP address', () => {
    for (const host of ['example.com', 'localhost', '', '1.2.3', '256.1.1.1', '1.2.3.4 ', '::g', '0x7f.1']) {
      expect(isIP(host)).toBe(0)
      expectMalformed(needReplyDatagram([{ host: Buffer.from(host) }]), 'out-of-bounds')
    }
    expectMalformed(needReplyDatagram([{ host: [0xc3, 0x28] }]), 'bad-utf8')
    expectMalformed(needReplyDatagram([{ host: Buffer.from('1'.repeat(46)) }]), 'out-of-bounds')
  })

  it('refuses port 0', () => {
    expectMalformed(needReplyDatagram([{ port: 0 }]), 'out-of-bounds')
    expectMalformed(needReplyDatagram([{}, { port: 0 }]), 'out-of-bounds')
    expect(decode(needReplyDatagram([{ port: 1 }, { port: 65_535, host: Buffer.from('::1') }]))).toMatchObject({
      owners: [{ port: 1, host: '10.0.0.1' }, { port: 65_535, host: '::1' }]
    })
  })

  it('refuses a credit above Number.MAX_SAFE_INTEGER', () => {
    expectMalformed(needReplyDatagram([{ credit: BigInt(Number.MAX_SAFE_INTEGER) + 1n }]), 'out-of-bounds')
    expect(decode(needReplyDatagram([{ credit: BigInt(Number.MAX_SAFE_INTEGER) }]))).toMatchObject({ owners: [{ credit: Number.MAX_SAFE_INTEGER }] })
  })

  it('refuses an owner count larger than the owners present', () => {
    expectMalformed(needReplyDatagram([{}], 0, 2), 'truncated')
    expectMalformed(needReplyDatagram([], 0, 255), 'truncated')
  })
})

// ---- DATA header fast path ------------------------------------------------------------------------------

describe('encodeDataHeader', () => {
  it('header + payload is byte-identical to encode() of the Data message and decodes to it', () => {
    fc.assert(fc.property(arbs[MessageType.Data], msg => {
      const header = encodeDataHeader(msg.txid, msg.stream, msg.offset)
      expect(header.length).toBe(DATA_HEADER_BYTES)
      const joined = Buffer.concat([header, msg.payload])
      expect(joined.equals(encode(msg))).toBe(true)
      expect(plain(decode(joined))).toStrictEqual(plain(msg))
    }), { numRuns: RUNS })
  })

  it('DATA_HEADER_BYTES is header + stream u8 + offset u64', () => {
    expect(DATA_HEADER_BYTES).toBe(HEADER_BYTES + 1 + 8)
    expect(encodeDataHeader(0, Stream.Manifest, 1).toString('hex')).toBe('5554' + '01' + '11' + '00000000' + '01' + '0000000000000001')
  })
})

// ---- no amplification: what answers an unproven address is never larger than what asked --------

describe('datagram sizes that bound amplification', () => {
  it('CONNECT encodes to exactly the size of CONNECT_REPLY', () => {
    fc.assert(fc.property(arbs[MessageType.Connect], arbs[MessageType.ConnectReply], (connect, reply) => {
      expect(encode(connect).length).toBe(encode(reply).length)
    }), { numRuns: RUNS })
    expect(encode({ type: MessageType.Connect, txid: 1 }).length).toBe(HEADER_BYTES + CONNECTION_ID_BYTES)
    // The padding is zeros.
    expect(encode({ type: MessageType.Connect, txid: 1 }).subarray(HEADER_BYTES).equals(Buffer.alloc(CONNECTION_ID_BYTES))).toBe(true)
  })

  it('HELLO encodes to exactly the size of HELLO_ACK', () => {
    fc.assert(fc.property(arbs[MessageType.Hello], arbs[MessageType.HelloAck], (hello, ack) => {
      expect(encode(hello).length).toBe(encode(ack).length)
    }), { numRuns: RUNS })
    expect(encode({ type: MessageType.Hello, txid: 1 }).length).toBe(HEADER_BYTES + COOKIE_BYTES)
    expect(encode({ type: MessageType.Hello, txid: 1 }).subarray(HEADER_BYTES).equals(Buffer.alloc(COOKIE_BYTES))).toBe(true)
  })

  it('a Reject is smaller than any Request', () => {
    fc.assert(fc.property(arbs[MessageType.Reject], arbs[MessageType.Request], (reject, request) => {
      expect(encode(reject).length).toBeLessThan(encode(request).length)
    }), { numRuns: RUNS })
  })

  it('every signed request has room for an Error reply (the tracker refuses with one no larger than the request)', () => {
    const signedTypes = [MessageType.Register, MessageType.Own, MessageType.Need, MessageType.Update, MessageType.Exit] as const
    const emptyError = encode({ type: MessageType.Error, txid: 1, code: TrackerErrorCode.BadConnection, text: '' }).length
    fc.assert(fc.property(fc.constantFrom(...signedTypes).chain(t => arbs[t] as fc.Arbitrary<Message>), msg => {
      expect(encode(msg).length).toBeGreaterThanOrEqual(emptyError + 16)
    }), { numRuns: RUNS })
  })

  it('a zero-padded CONNECT and HELLO decode (control for the test below)', () => {
    expect(decode(frame(MessageType.Connect, w => { w.bytes(Buffer.alloc(CONNECTION_ID_BYTES)) }))).toEqual({ type: MessageType.Connect, txid: 7 })
    expect(decode(frame(MessageType.Hello, w => { w.bytes(Buffer.alloc(COOKIE_BYTES)) }))).toEqual({ type: MessageType.Hello, txid: 7 })
  })

  /** Padding that is not zero would give one message two encodings and a hidden channel. */
  it('a CONNECT or HELLO whose padding is not zero is refused', () => {
    for (const type of [MessageType.Connect, MessageType.Hello]) {
      expectMalformed(frame(type, w => { w.bytes(Buffer.alloc(8, 0xff)) }))
    }
  })
})

// ---- edge cases that were defects, now fixed in src/messages --------

describe('edge cases that were defects', () => {
  /**
   * BufferReader.string8 decodes with `new TextDecoder('utf-8', { fatal: true })`, whose default
   * ignoreBOM:false silently strips a leading EF BB BF. A name or text that starts with U+FEFF is
   * accepted by checkFileName but arrives without it. Correct behaviour: either the name is refused
   * everywhere, or it round-trips unchanged.
   */
  it('formerly broken: a file name starting with U+FEFF is accepted but loses it on the wire', () => {
    const name = '\uFEFFreport.pdf'
    const accepted = isValidFileName(name)
    const res = tryDecode(needDatagram(Buffer.from(name, 'utf8')))
    if (accepted) expect(res.ok && res.msg.type === MessageType.Need && res.msg.name === name).toBe(true)
    else expect(res.ok).toBe(false)
  })

  it('formerly broken: two different wire names (with and without a leading BOM) decode to the same name', () => {
    const a = decode(needDatagram(Buffer.from('x.bin')))
    const res = tryDecode(needDatagram(Buffer.from('\uFEFFx.bin', 'utf8')))
    expect(res.ok && plain(res.msg)).not.toStrictEqual(plain(a))
  })

  it('formerly broken: Error text starting with U+FEFF does not round-trip', () => {
    const msg: Message = { type: MessageType.Error, txid: 1, code: TrackerErrorCode.BadRequest, text: '\uFEFFbad' }
    expect(plain(decode(encode(msg)))).toStrictEqual(plain(msg))
  })

  /**
   * checkFileName accepts strings with unpaired UTF-16 surrogates; Buffer.from(s, 'utf8') turns them
   * into U+FFFD, so a name checkFileName accepts does not survive encode → decode.
   */
  it('formerly broken: a name with a lone surrogate is accepted but does not round-trip', () => {
    const name = 'a\uD800b'
    const accepted = isValidFileName(name)
    const res = tryDecode(encode({ type: MessageType.Need, txid: 1, ...SIGNED, name }))
    if (accepted) expect(res.ok && res.msg.type === MessageType.Need && res.msg.name === name).toBe(true)
    else expect(accepted).toBe(false)
  })
})

describe('BufferReader.u64 (read as two u32 halves)', () => {
  const read = (value: bigint, max: number): number => {
    const b = Buffer.alloc(8)
    b.writeBigUInt64BE(value)
    return new BufferReader(b).u64('field', max)
  }

  it('reads every value up to the bound exactly, across the 32-bit boundary', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: BigInt(Number.MAX_SAFE_INTEGER) }), (v) => {
      expect(read(v, Number.MAX_SAFE_INTEGER)).toBe(Number(v))
    }))
    expect(read(0xffff_ffffn, MAX_FILE_SIZE_BYTES)).toBe(0xffff_ffff)
    expect(read(0x1_0000_0000n, MAX_FILE_SIZE_BYTES)).toBe(0x1_0000_0000)
    expect(read(BigInt(MAX_FILE_SIZE_BYTES), MAX_FILE_SIZE_BYTES)).toBe(MAX_FILE_SIZE_BYTES)
  })

  it('refuses one above the bound, and anything a double cannot hold exactly', () => {
    expect(() => read(BigInt(MAX_FILE_SIZE_BYTES) + 1n, MAX_FILE_SIZE_BYTES)).toThrow(/field 70368744177665 exceeds/)
    expect(() => read(2n ** 53n, Number.MAX_SAFE_INTEGER)).toThrow(MalformedMessageError)
    // 2^53 + 1 rounds to 2^53 as a double: only the high-half check catches it when max is 2^53.
    expect(() => read(2n ** 53n + 1n, 2 ** 53)).toThrow(MalformedMessageError)
    expect(() => read(2n ** 64n - 1n, Number.MAX_SAFE_INTEGER)).toThrow(/18446744073709551615 exceeds/)
  })
})
