import type dgram from 'node:dgram'
import { constants } from 'node:os'
import { getSystemErrorName } from 'node:util'
import { MAX_DATAGRAM_BYTES, RECEIVE_BATCH_DATAGRAMS } from '../../configs.js'
import type { RemoteAddress } from './endpoint.js'
import { nativeAddon, socketFd, type RecvBatch } from './native-addon.js'

/** What udp_gso.c's recvBatch writes per datagram: length u32, port u16, address length u8, family u8, address text. */
const META_BYTES = 72
const ADDRESS_AT = 8
const TRUNCATED = 0xffffffff
/** udp_gso.c reads at most this many datagrams a call. */
const MAX_BATCH_DATAGRAMS = 64

const { EBADF, ENOTSOCK, EINVAL, EFAULT, ENOSYS, EOPNOTSUPP, EPERM, EACCES } = constants.errno
/**
 * This socket cannot be read this way at all (EPERM, EACCES: a seccomp filter refusing recvmmsg):
 * batches stop for it, and dgram reads everything.
 */
const NO_BATCHES = new Set([EBADF, ENOTSOCK, EINVAL, EFAULT, ENOSYS, EOPNOTSUPP, EPERM, EACCES])

export interface BatchReceiverInit {
  socket: dgram.Socket
  /** Tests pass a stand-in for the addon; undefined means the built addon, if any. */
  recvBatch?: RecvBatch
  /** Datagrams one batch reads at most (RECEIVE_BATCH_DATAGRAMS). */
  datagrams?: number
}

export interface BatchReceiveStats {
  /** recvmmsg calls that returned datagrams. */
  batches: number
  datagrams: number
  /** Datagrams dropped: larger than a buffer, or from an address family the addon does not name. */
  dropped: number
  /** Calls that failed without stopping batches (a full kernel, an ICMP error). */
  errors: number
}

/**
 * Reads the datagrams waiting on a socket in one system call, into buffers it reuses. It works
 * beside dgram, which still reads the first datagram of every wake-up and everything else when
 * batches are off: after each datagram dgram hands over, the endpoint drains one batch of the rest,
 * so datagrams are delivered in the order they arrived.
 */
export class BatchReceiver {
  readonly stats: BatchReceiveStats = { batches: 0, datagrams: 0, dropped: 0, errors: 0 }
  /** Why batches stopped for good on this socket (an errno name), if they did. */
  disabledBy: string | undefined
  /** The most datagrams one batch reads: a batch that reads fewer emptied the socket's queue. */
  readonly capacity: number
  private readonly arena: Buffer
  private readonly meta: Buffer

  private constructor (private readonly fd: number, private readonly recvBatch: RecvBatch, datagrams: number) {
    const n = Math.max(1, Math.min(MAX_BATCH_DATAGRAMS, datagrams))
    this.capacity = n
    // Untouched pages cost nothing: only the slots a batch fills are ever faulted in.
    this.arena = Buffer.allocUnsafe(n * MAX_DATAGRAM_BYTES)
    this.meta = Buffer.allocUnsafe(n * META_BYTES)
  }

  /** A receiver for a bound socket, or undefined without the addon or a file descriptor. */
  static open (init: BatchReceiverInit): BatchReceiver | undefined {
    const recv = init.recvBatch ?? nativeAddon().recvBatch
    const fd = socketFd(init.socket)
    if (recv === undefined || fd === undefined) return undefined
    return new BatchReceiver(fd, recv, init.datagrams ?? RECEIVE_BATCH_DATAGRAMS)
  }

  /**
   * Reads one batch of what is waiting and hands each datagram to `deliver`, in arrival order; returns
   * how many datagrams the batch read, dropped ones included.
   * Where `mayLend` allows, the datagram is a view of this receiver's buffers, valid only until
   * `deliver` returns; otherwise it is a copy of its own.
   */
  drain (deliver: (datagram: Buffer, from: RemoteAddress) => void, mayLend: (datagram: Buffer) => boolean): number {
    if (this.disabledBy !== undefined) return 0
    const got = this.recvBatch(this.fd, this.arena, MAX_DATAGRAM_BYTES, this.meta)
    if (got < 0) {
      if (NO_BATCHES.has(-got)) this.disabledBy = getSystemErrorName(got)
      else this.stats.errors++
      return 0
    }
    if (got === 0) return 0
    this.stats.batches++
    this.stats.datagrams += got
    const meta = this.meta
    for (let i = 0; i < got; i++) {
      const m = i * META_BYTES
      const length = meta.readUInt32LE(m)
      const hostLength = meta[m + 6] as number
      if (length === TRUNCATED || length > MAX_DATAGRAM_BYTES || hostLength === 0) {
        this.stats.dropped++
        continue
      }
      const from = { host: meta.toString('latin1', m + ADDRESS_AT, m + ADDRESS_AT + hostLength), port: meta.readUInt16LE(m + 4) }
      const at = i * MAX_DATAGRAM_BYTES
      const view = this.arena.subarray(at, at + length)
      deliver(mayLend(view) ? view : Buffer.from(view), from)
    }
    return got
  }
}
