import { COOKIE_BYTES, DATA_DATAGRAM_HEADER_BYTES, HASH_BYTES, MAX_DATAGRAM_BYTES, MAX_DATAGRAMS_PER_REQUEST, MAX_FILE_SIZE_BYTES } from '../../configs.js'
import { BufferReader, BufferWriter } from './buffer-codec.js'
import { MalformedMessageError } from './errors.js'
import { HEADER_BYTES, writeHeader } from './header.js'
import { MessageType, RejectReason, Stream, type DataMsg, type HelloAckMsg, type HelloMsg, type RejectMsg, type RequestMsg, type UnchokeMsg, type CancelMsg } from './types.js'

/** header + stream u8 + offset u64; configs.ts holds the figure because its datagram ladder is sized by it. */
export const DATA_HEADER_BYTES = DATA_DATAGRAM_HEADER_BYTES
/** The smallest datagram a requester may ask for: still room for a useful payload. */
export const MIN_DATAGRAM_BYTES = 256
/** A request never asks for more than this many bytes, whatever the datagram size. */
export const MAX_REQUEST_BYTES = MAX_DATAGRAMS_PER_REQUEST * (MAX_DATAGRAM_BYTES - DATA_HEADER_BYTES)

function readStream (r: BufferReader): Stream {
  const s = r.u8('stream')
  if (s !== Stream.Content && s !== Stream.Manifest && s !== Stream.Bitfield) throw new MalformedMessageError('out-of-bounds', `stream ${s}`)
  return s
}

/** A HELLO is padded to the size of its answer, so the handshake never amplifies. */
export const HELLO_PADDING_BYTES = COOKIE_BYTES

export const peerCodecs = {
  [MessageType.Hello]: {
    write: (w: BufferWriter, _m: HelloMsg) => { w.bytes(Buffer.alloc(HELLO_PADDING_BYTES)) },
    read: (r: BufferReader, txid: number): HelloMsg => {
      r.zeros(HELLO_PADDING_BYTES, 'hello padding')
      return { type: MessageType.Hello, txid }
    }
  },
  [MessageType.HelloAck]: {
    write: (w: BufferWriter, m: HelloAckMsg) => { w.bytes(m.cookie) },
    read: (r: BufferReader, txid: number): HelloAckMsg => ({ type: MessageType.HelloAck, txid, cookie: r.bytes(COOKIE_BYTES, 'cookie') })
  },
  [MessageType.Request]: {
    write: (w: BufferWriter, m: RequestMsg) => {
      w.bytes(m.cookie).bytes(m.contentHash).u8(m.stream).u64(m.offset).u32(m.length).u16(m.datagramBytes)
    },
    read: (r: BufferReader, txid: number): RequestMsg => {
      const cookie = r.bytes(COOKIE_BYTES, 'cookie')
      const contentHash = r.bytes(HASH_BYTES, 'content hash')
      const stream = readStream(r)
      const offset = r.u64('offset', MAX_FILE_SIZE_BYTES)
      const length = r.u32('length')
      if (length === 0 || length > MAX_REQUEST_BYTES) throw new MalformedMessageError('out-of-bounds', `request length ${length}`)
      const datagramBytes = r.u16('datagram size')
      if (datagramBytes < MIN_DATAGRAM_BYTES || datagramBytes > MAX_DATAGRAM_BYTES) {
        throw new MalformedMessageError('out-of-bounds', `datagram size ${datagramBytes}`)
      }
      // One request, a bounded answer: small datagrams must not turn one request into thousands.
      if (length > MAX_DATAGRAMS_PER_REQUEST * (datagramBytes - DATA_HEADER_BYTES)) {
        throw new MalformedMessageError('out-of-bounds', `request of ${length} bytes needs more than ${MAX_DATAGRAMS_PER_REQUEST} datagrams of ${datagramBytes}`)
      }
      return { type: MessageType.Request, txid, cookie, contentHash, stream, offset, length, datagramBytes }
    }
  },
  [MessageType.Data]: {
    write: (w: BufferWriter, m: DataMsg) => { w.u8(m.stream).u64(m.offset).bytes(m.payload) },
    read: (r: BufferReader, txid: number): DataMsg => {
      const stream = readStream(r)
      const offset = r.u64('offset', MAX_FILE_SIZE_BYTES)
      const payload = r.rest()
      if (payload.length === 0) throw new MalformedMessageError('truncated', 'data datagram without payload')
      return { type: MessageType.Data, txid, stream, offset, payload }
    }
  },
  [MessageType.Reject]: {
    write: (w: BufferWriter, m: RejectMsg) => { w.u8(m.reason) },
    read: (r: BufferReader, txid: number): RejectMsg => {
      const reason = r.u8('reject reason')
      if (!(reason in RejectReason)) throw new MalformedMessageError('out-of-bounds', `reject reason ${reason}`)
      return { type: MessageType.Reject, txid, reason: reason as RejectReason }
    }
  },
  [MessageType.Unchoke]: {
    write: (_w: BufferWriter, _m: UnchokeMsg) => {},
    read: (_r: BufferReader, txid: number): UnchokeMsg => ({ type: MessageType.Unchoke, txid })
  },
  [MessageType.Cancel]: {
    write: (w: BufferWriter, m: CancelMsg) => { w.bytes(m.cookie) },
    read: (r: BufferReader, txid: number): CancelMsg => ({ type: MessageType.Cancel, txid, cookie: r.bytes(COOKIE_BYTES, 'cookie') })
  }
} as const

/**
 * The header of a DATA datagram on its own, so the sender can hand [header, payload] to
 * socket.send() without copying file bytes into a new buffer.
 */
export function encodeDataHeader (txid: number, stream: Stream, offset: number): Buffer {
  return writeHeader(new BufferWriter(), MessageType.Data, txid).u8(stream).u64(offset).finish()
}
