import { isIP } from 'node:net'
import {
  CONNECTION_ID_BYTES, HASH_BYTES, MAX_ERROR_TEXT_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, MAX_FILE_NAME_BYTES, MAX_FILE_SIZE_BYTES, MAX_PIECE_SIZE, MAX_PIECES,
  MAX_UPDATE_ENTRIES, MIN_PIECE_SIZE
} from '../../configs.js'
import { BufferReader, BufferWriter } from './buffer-codec.js'
import { MalformedMessageError } from './errors.js'
import { checkFileName } from './names.js'
import {
  MessageType, TrackerErrorCode,
  type AckMsg, type ConnectMsg, type ConnectReplyMsg, type ErrorMsg, type ExitMsg, type SignedTrackerRequest, type FileIdentity, type NeedMsg, type NeedReplyMsg, type OwnerEntry,
  type OwnMsg, type RegisterAckMsg, type RegisterMsg, type UpdateMsg
} from './types.js'

/** The most owners a NEED reply can carry on the wire (a u8 count). */
export const MAX_OWNERS_ON_WIRE = 255
const MAX_HOST_BYTES = 45 // the longest textual IPv6 address
const MAX_CREDIT = Number.MAX_SAFE_INTEGER

function readName (r: BufferReader): string {
  const raw = r.string8('name', MAX_FILE_NAME_BYTES)
  try {
    const name = checkFileName(raw)
    // A non-normalised name on the wire is refused rather than silently rewritten: both ends normalise.
    if (name !== raw) throw new Error('name is not NFC')
    return name
  } catch (err) {
    throw new MalformedMessageError('bad-name', (err as Error).message)
  }
}

export function checkPieceGeometry (size: number, pieceSize: number): void {
  if (pieceSize < MIN_PIECE_SIZE || pieceSize > MAX_PIECE_SIZE) {
    throw new MalformedMessageError('out-of-bounds', `piece size ${pieceSize} outside ${MIN_PIECE_SIZE}..${MAX_PIECE_SIZE}`)
  }
  if (Math.ceil(size / pieceSize) > MAX_PIECES) {
    throw new MalformedMessageError('out-of-bounds', `${Math.ceil(size / pieceSize)} pieces exceeds ${MAX_PIECES}`)
  }
}

export function writeFileIdentity (w: BufferWriter, f: FileIdentity): void {
  w.string8(f.name, MAX_FILE_NAME_BYTES).u64(f.size).u32(f.pieceSize).bytes(f.contentHash)
}

export function readFileIdentity (r: BufferReader): FileIdentity {
  const name = readName(r)
  const size = r.u64('size', MAX_FILE_SIZE_BYTES)
  const pieceSize = r.u32('piece size')
  checkPieceGeometry(size, pieceSize)
  const contentHash = r.bytes(HASH_BYTES, 'content hash')
  return { name, size, pieceSize, contentHash }
}

/** A CONNECT is padded to the size of its reply, so answering an unproven address never amplifies. */
export const CONNECT_PADDING_BYTES = CONNECTION_ID_BYTES
const MAX_SEQ = Number.MAX_SAFE_INTEGER

type SignedFields = Pick<SignedTrackerRequest, 'connectionId' | 'nodeId' | 'seq'>

function writeSignedHead (w: BufferWriter, m: SignedFields): BufferWriter {
  return w.bytes(m.connectionId).u32(m.nodeId).u64(m.seq)
}

function readSignedHead (r: BufferReader): SignedFields {
  return { connectionId: r.bytes(CONNECTION_ID_BYTES, 'connection id'), nodeId: r.u32('node id'), seq: r.u64('seq', MAX_SEQ) }
}

/** The signature is the datagram's last field and covers every byte before it. */
const readSignature = (r: BufferReader): Buffer => r.bytes(SIGNATURE_BYTES, 'signature')

function writeOwner (w: BufferWriter, o: OwnerEntry): void {
  w.u32(o.nodeId).string8(o.host, MAX_HOST_BYTES).u16(o.port).u64(Math.min(o.credit, MAX_CREDIT)).u8(o.complete ? 1 : 0)
}

function readOwner (r: BufferReader): OwnerEntry {
  const nodeId = r.u32('owner id')
  const host = r.string8('owner host', MAX_HOST_BYTES)
  if (isIP(host) === 0) throw new MalformedMessageError('out-of-bounds', 'owner host is not an IP address')
  const port = r.u16('owner port')
  if (port === 0) throw new MalformedMessageError('out-of-bounds', 'owner port 0')
  const credit = r.u64('owner credit', MAX_CREDIT)
  const flags = r.u8('owner flags')
  if (flags > 1) throw new MalformedMessageError('out-of-bounds', `owner flags ${flags}`)
  return { nodeId, host, port, credit, complete: flags === 1 }
}

export const trackerCodecs = {
  [MessageType.Connect]: {
    write: (w: BufferWriter, _m: ConnectMsg) => { w.bytes(Buffer.alloc(CONNECT_PADDING_BYTES)) },
    read: (r: BufferReader, txid: number): ConnectMsg => {
      r.zeros(CONNECT_PADDING_BYTES, 'connect padding')
      return { type: MessageType.Connect, txid }
    }
  },
  [MessageType.ConnectReply]: {
    write: (w: BufferWriter, m: ConnectReplyMsg) => { w.bytes(m.connectionId) },
    read: (r: BufferReader, txid: number): ConnectReplyMsg => ({ type: MessageType.ConnectReply, txid, connectionId: r.bytes(CONNECTION_ID_BYTES, 'connection id') })
  },
  [MessageType.Register]: {
    write: (w: BufferWriter, m: RegisterMsg) => { writeSignedHead(w, m).bytes(m.publicKey).bytes(m.signature) },
    read: (r: BufferReader, txid: number): RegisterMsg => {
      const head = readSignedHead(r)
      return { type: MessageType.Register, txid, ...head, publicKey: r.bytes(PUBLIC_KEY_BYTES, 'public key'), signature: readSignature(r) }
    }
  },
  [MessageType.Own]: {
    write: (w: BufferWriter, m: OwnMsg) => { writeFileIdentity(writeSignedHead(w, m), m.file); w.u8(m.complete ? 1 : 0).bytes(m.signature) },
    read: (r: BufferReader, txid: number): OwnMsg => {
      const head = readSignedHead(r)
      const file = readFileIdentity(r)
      const flags = r.u8('own flags')
      if (flags > 1) throw new MalformedMessageError('out-of-bounds', `own flags ${flags}`)
      return { type: MessageType.Own, txid, ...head, file, complete: flags === 1, signature: readSignature(r) }
    }
  },
  [MessageType.Need]: {
    write: (w: BufferWriter, m: NeedMsg) => { writeSignedHead(w, m).string8(m.name, MAX_FILE_NAME_BYTES).bytes(m.signature) },
    read: (r: BufferReader, txid: number): NeedMsg => {
      const head = readSignedHead(r)
      return { type: MessageType.Need, txid, ...head, name: readName(r), signature: readSignature(r) }
    }
  },
  [MessageType.Update]: {
    write: (w: BufferWriter, m: UpdateMsg) => {
      writeSignedHead(w, m).bytes(m.contentHash).u8(m.received.length)
      for (const e of m.received) w.u32(e.ownerId).u64(e.bytes)
      w.bytes(m.signature)
    },
    read: (r: BufferReader, txid: number): UpdateMsg => {
      const head = readSignedHead(r)
      const contentHash = r.bytes(HASH_BYTES, 'content hash')
      const n = r.u8('entry count')
      if (n > MAX_UPDATE_ENTRIES) throw new MalformedMessageError('out-of-bounds', `${n} update entries, limit ${MAX_UPDATE_ENTRIES}`)
      const received: UpdateMsg['received'] = []
      for (let i = 0; i < n; i++) received.push({ ownerId: r.u32('owner id'), bytes: r.u64('bytes', MAX_FILE_SIZE_BYTES) })
      return { type: MessageType.Update, txid, ...head, contentHash, received, signature: readSignature(r) }
    }
  },
  [MessageType.Exit]: {
    write: (w: BufferWriter, m: ExitMsg) => { writeSignedHead(w, m).bytes(m.signature) },
    read: (r: BufferReader, txid: number): ExitMsg => ({ type: MessageType.Exit, txid, ...readSignedHead(r), signature: readSignature(r) })
  },
  [MessageType.Ack]: {
    write: (_w: BufferWriter, _m: AckMsg) => {},
    read: (_r: BufferReader, txid: number): AckMsg => ({ type: MessageType.Ack, txid })
  },
  [MessageType.RegisterAck]: {
    write: (w: BufferWriter, m: RegisterAckMsg) => { w.u32(m.heartbeatMs).u8(m.known ? 1 : 0) },
    read: (r: BufferReader, txid: number): RegisterAckMsg => {
      const heartbeatMs = r.u32('heartbeat')
      const known = r.u8('known')
      if (known > 1) throw new MalformedMessageError('out-of-bounds', `known flag ${known}`)
      return { type: MessageType.RegisterAck, txid, heartbeatMs, known: known === 1 }
    }
  },
  [MessageType.NeedReply]: {
    write: (w: BufferWriter, m: NeedReplyMsg) => {
      if (m.owners.length > MAX_OWNERS_ON_WIRE) throw new RangeError(`${m.owners.length} owners exceeds ${MAX_OWNERS_ON_WIRE}`)
      w.u8(m.file === null ? 0 : 1)
      if (m.file !== null) writeFileIdentity(w, m.file)
      w.u8(Math.min(m.variants, 255)).u8(m.owners.length)
      for (const o of m.owners) writeOwner(w, o)
    },
    read: (r: BufferReader, txid: number): NeedReplyMsg => {
      const present = r.u8('file present')
      if (present > 1) throw new MalformedMessageError('out-of-bounds', `file-present flag ${present}`)
      const file = present === 1 ? readFileIdentity(r) : null
      const variants = r.u8('variants')
      const n = r.u8('owner count')
      const owners: OwnerEntry[] = []
      for (let i = 0; i < n; i++) owners.push(readOwner(r))
      return { type: MessageType.NeedReply, txid, file, variants, owners }
    }
  },
  [MessageType.Error]: {
    write: (w: BufferWriter, m: ErrorMsg) => { w.u16(m.code).string8(truncateUtf8(m.text, MAX_ERROR_TEXT_BYTES), MAX_ERROR_TEXT_BYTES) },
    read: (r: BufferReader, txid: number): ErrorMsg => {
      const code = r.u16('error code')
      if (!(code in TrackerErrorCode)) throw new MalformedMessageError('out-of-bounds', `error code ${code}`)
      return { type: MessageType.Error, txid, code: code as TrackerErrorCode, text: r.string8('error text', MAX_ERROR_TEXT_BYTES) }
    }
  }
} as const

/** Cuts a string to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8 (s: string, maxBytes: number): string {
  if (Buffer.byteLength(s) <= maxBytes) return s
  let out = ''
  for (const ch of s) {
    if (Buffer.byteLength(out + ch) > maxBytes) break
    out += ch
  }
  return out
}
