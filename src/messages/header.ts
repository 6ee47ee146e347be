import { BufferReader, BufferWriter } from './buffer-codec.js'
import { MalformedMessageError } from './errors.js'
import { MessageType } from './types.js'

/** 'UT' */
export const MAGIC = 0x5554
export const PROTOCOL_VERSION = 1
/** magic u16, version u8, type u8, txid u32 */
export const HEADER_BYTES = 8
/** Where the type byte sits, for a look at a datagram before it is decoded. */
export const TYPE_BYTE_OFFSET = 3

const KNOWN_TYPES = new Set<number>(Object.values(MessageType).filter((v): v is number => typeof v === 'number'))

export function writeHeader (w: BufferWriter, type: MessageType, txid: number): BufferWriter {
  return w.u16(MAGIC).u8(PROTOCOL_VERSION).u8(type).u32(txid)
}

export function readHeader (r: BufferReader): { type: MessageType, txid: number } {
  if (r.remaining < HEADER_BYTES) throw new MalformedMessageError('too-short', `${r.remaining} bytes, header needs ${HEADER_BYTES}`)
  if (r.u16('magic') !== MAGIC) throw new MalformedMessageError('bad-magic', 'not a udptorrent datagram')
  const version = r.u8('version')
  if (version !== PROTOCOL_VERSION) throw new MalformedMessageError('bad-version', `version ${version}, expected ${PROTOCOL_VERSION}`)
  const type = r.u8('type')
  if (!KNOWN_TYPES.has(type)) throw new MalformedMessageError('unknown-type', `type 0x${type.toString(16)}`)
  return { type: type as MessageType, txid: r.u32('txid') }
}
