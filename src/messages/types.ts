import type { Buffer } from 'node:buffer'

/** On-wire type byte. Replies to tracker requests have the high bit set. */
export enum MessageType {
  Register = 0x01,
  Own = 0x02,
  Need = 0x03,
  Update = 0x04,
  Exit = 0x05,
  Ack = 0x80,
  RegisterAck = 0x81,
  NeedReply = 0x83,
  Error = 0xff,
  Request = 0x10,
  Data = 0x11,
  Reject = 0x12
}

/** Why a tracker refused a request. */
export enum TrackerErrorCode {
  BadRequest = 1,
  UnknownNode = 2,
  NotFound = 3,
  Conflict = 4,
  Forbidden = 5,
  Overloaded = 6
}

/** Why an owner refused a block request. */
export enum RejectReason {
  UnknownContent = 1,
  OutOfRange = 2,
  Busy = 3
}

/** What a data request addresses: the file's bytes, or its manifest (the piece-hash list). */
export enum Stream {
  Content = 0,
  Manifest = 1
}

/** A file's identity: the same name with another content hash is another file. */
export interface FileIdentity {
  name: string
  size: number
  pieceSize: number
  /** SHA-256 of the concatenated per-piece SHA-256 hashes (the manifest). */
  contentHash: Buffer
}

export interface OwnerEntry {
  nodeId: number
  host: string
  port: number
  credit: number
  /** False for a partial owner (a node still downloading). */
  complete: boolean
}

interface Base { txid: number }

export interface RegisterMsg extends Base { type: MessageType.Register, nodeId: number }
export interface OwnMsg extends Base { type: MessageType.Own, nodeId: number, file: FileIdentity }
export interface NeedMsg extends Base { type: MessageType.Need, nodeId: number, name: string }
export interface UpdateMsg extends Base {
  type: MessageType.Update
  nodeId: number
  contentHash: Buffer
  /** Bytes this node received from each owner since its last report. */
  received: Array<{ ownerId: number, bytes: number }>
}
export interface ExitMsg extends Base { type: MessageType.Exit, nodeId: number }
export interface AckMsg extends Base { type: MessageType.Ack }
export interface RegisterAckMsg extends Base {
  type: MessageType.RegisterAck
  heartbeatMs: number
  /** False when the tracker did not know this node (first join, or it was pruned or restarted). */
  known: boolean
}
export interface NeedReplyMsg extends Base {
  type: MessageType.NeedReply
  /** Absent when nobody live owns the name. */
  file: FileIdentity | null
  /** How many different contents the tracker holds under this name (more than 1 is a conflict). */
  variants: number
  owners: OwnerEntry[]
}
export interface ErrorMsg extends Base { type: MessageType.Error, code: TrackerErrorCode, text: string }
export interface RequestMsg extends Base {
  type: MessageType.Request
  contentHash: Buffer
  stream: Stream
  offset: number
  length: number
  /** The largest datagram the requester wants back. */
  datagramBytes: number
}
export interface DataMsg extends Base { type: MessageType.Data, stream: Stream, offset: number, payload: Buffer }
export interface RejectMsg extends Base { type: MessageType.Reject, reason: RejectReason }

export type TrackerRequest = RegisterMsg | OwnMsg | NeedMsg | UpdateMsg | ExitMsg
export type TrackerReply = AckMsg | RegisterAckMsg | NeedReplyMsg | ErrorMsg
export type PeerMessage = RequestMsg | DataMsg | RejectMsg
export type Message = TrackerRequest | TrackerReply | PeerMessage

/** A message before a transaction id is assigned (distributes over unions, unlike Omit). */
export type WithoutTxid<T> = T extends unknown ? Omit<T, 'txid'> : never
