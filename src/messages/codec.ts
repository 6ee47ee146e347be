import { MAX_DATAGRAM_BYTES } from '../../configs.js'
import { BufferReader, BufferWriter } from './buffer-codec.js'
import { MalformedMessageError } from './errors.js'
import { readHeader, writeHeader } from './header.js'
import { peerCodecs } from './peer-messages.js'
import { trackerCodecs } from './tracker-messages.js'
import type { Message, MessageType } from './types.js'

interface Codec<M extends Message> {
  write: (w: BufferWriter, m: M) => void
  read: (r: BufferReader, txid: number) => M
}

const codecs: { [T in MessageType]: Codec<Extract<Message, { type: T }>> } = { ...trackerCodecs, ...peerCodecs }

export function encode (msg: Message): Buffer {
  const w = writeHeader(new BufferWriter(), msg.type, msg.txid)
  ;(codecs[msg.type] as Codec<Message>).write(w, msg)
  const out = w.finish()
  if (out.length > MAX_DATAGRAM_BYTES) throw new RangeError(`message of ${out.length} bytes exceeds one datagram`)
  return out
}

/** Parses one datagram. Throws MalformedMessageError, and only that, for anything it cannot accept. */
export function decode (buf: Buffer): Message {
  if (buf.length > MAX_DATAGRAM_BYTES) throw new MalformedMessageError('out-of-bounds', `datagram of ${buf.length} bytes`)
  const r = new BufferReader(buf)
  const { type, txid } = readHeader(r)
  const msg = (codecs[type] as Codec<Message>).read(r, txid)
  r.end()
  return msg
}

/** decode() that reports failure as a value, for socket handlers that must never throw. */
export function tryDecode (buf: Buffer): { ok: true, msg: Message } | { ok: false, error: MalformedMessageError } {
  try {
    return { ok: true, msg: decode(buf) }
  } catch (err) {
    if (err instanceof MalformedMessageError) return { ok: false, error: err }
    // Anything else is a bug in a codec; still never let it escape the socket loop.
    return { ok: false, error: new MalformedMessageError('out-of-bounds', `decoder failure: ${(err as Error).message}`) }
  }
}
