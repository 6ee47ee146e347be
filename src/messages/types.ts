import type { Buffer } from 'node:buffer'

/** On-wire type byte. Replies to tracker requests have the high bit set. */
export enum MessageType {
  Register = 0x01,
  Own = 0x02,
  Need = 0x03,
  Update = 0x04,
  Exit = 0x05,
  /** BEP 15-style: get a connection id proving the source address before anything else. */
  Connect = 0x06,
  Ack = 0x80,
  RegisterAck = 0x81,
  NeedReply = 0x83,
  ConnectReply = 0x86,
  Error = 0xff,
  Request = 0x10,
  Data = 0x11,
  Reject = 0x12,
  /** The data handshake: a cookie proving the requester's address, needed on every REQUEST. */
  Hello = 0x13,
  HelloAck = 0x14,
  /**
   * Owner to requester, unasked: a slot is free for you now. It carries the txid of the request the
   * owner last refused as Choked, which only the requester knows, so an off-path sender cannot
   * forge one. It spares choked requesters from asking again and again.
   */
  Unchoke = 0x15,
  /**
   * Requester to owner: forget the answer to request `txid`, not sent yet (BitTorrent's CANCEL, for
   * the end game's losing duplicates). It carries the cookie, as a REQUEST does, and is not answered.
   */
  Cancel = 0x16
}

/** Why a tracker refused a request. */
export enum TrackerErrorCode {
  BadRequest = 1,
  UnknownNode = 2,
  NotFound = 3,
  Conflict = 4,
  Forbidden = 5,
  Overloaded = 6,
  /** The connection id is missing, forged or expired: CONNECT again. */
  BadConnection = 7,
  BadSignature = 8,
  Replay = 9,
  /** A resource cap (nodes per address, files per node) was reached. */
  Limit = 10
}

/** Why an owner refused a block request. */
export enum RejectReason {
  UnknownContent = 1,
  OutOfRange = 2,
  Busy = 3,
  /** The handshake cookie is missing, forged or expired: HELLO again. */
  BadCookie = 4,
  /** No upload slot for you right now (tit-for-tat): ask again later, or ask someone else. */
  Choked = 5,
  /** A partial owner does not have (all of) that range yet: its bitfield was stale. */
  Missing = 6
}

/** What a data request addresses: the file's bytes, or its manifest (the piece-hash list). */
export enum Stream {
  Content = 0,
  Manifest = 1,
  /** The owner's verified pieces, one bit per piece (most significant bit first), polled as BitTorrent's HAVE. */
  Bitfield = 2
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

/**
 * What every request from a node to the tracker carries besides its body: the connection id that
 * proves its address, its node id, a sequence number that only grows (replays are refused), and an
 * Ed25519 signature over the whole datagram before it (filled in by the sender, checked by the tracker).
 */
interface Signed extends Base {
  connectionId: Buffer
  nodeId: number
  seq: number
  signature: Buffer
}

export interface ConnectMsg extends Base { type: MessageType.Connect }
export interface ConnectReplyMsg extends Base { type: MessageType.ConnectReply, connectionId: Buffer }
export interface RegisterMsg extends Signed { type: MessageType.Register, publicKey: Buffer }
/** `complete` false: the node is still downloading and serves the pieces it has verified. */
export interface OwnMsg extends Signed { type: MessageType.Own, file: FileIdentity, complete: boolean }
export interface NeedMsg extends Signed { type: MessageType.Need, name: string }
export interface UpdateMsg extends Signed {
  type: MessageType.Update
  contentHash: Buffer
  /** Bytes this node received from each owner since its last report: its signed receipt. */
  received: Array<{ ownerId: number, bytes: number }>
}
export interface ExitMsg extends Signed { type: MessageType.Exit }
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
export interface HelloMsg extends Base { type: MessageType.Hello }
export interface HelloAckMsg extends Base { type: MessageType.HelloAck, cookie: Buffer }
export interface RequestMsg extends Base {
  type: MessageType.Request
  /** From HELLO_ACK: data goes only to an address that proved it receives at that address. */
  cookie: Buffer
  contentHash: Buffer
  stream: Stream
  offset: number
  length: number
  /** The largest datagram the requester wants back. */
  datagramBytes: number
}
export interface DataMsg extends Base { type: MessageType.Data, stream: Stream, offset: number, payload: Buffer }
export interface RejectMsg extends Base { type: MessageType.Reject, reason: RejectReason }
export interface UnchokeMsg extends Base { type: MessageType.Unchoke }
export interface CancelMsg extends Base { type: MessageType.Cancel, cookie: Buffer }

export type SignedTrackerRequest = RegisterMsg | OwnMsg | NeedMsg | UpdateMsg | ExitMsg
export type TrackerRequest = ConnectMsg | SignedTrackerRequest
export type TrackerReply = AckMsg | RegisterAckMsg | NeedReplyMsg | ConnectReplyMsg | ErrorMsg
export type PeerMessage = RequestMsg | DataMsg | RejectMsg | HelloMsg | HelloAckMsg | UnchokeMsg | CancelMsg
export type Message = TrackerRequest | TrackerReply | PeerMessage

/** A message before a transaction id is assigned (distributes over unions, unlike Omit). */
export type WithoutTxid<T> = T extends unknown ? Omit<T, 'txid'> : never
