import type dgram from 'node:dgram'
import { isIP } from 'node:net'
import { constants } from 'node:os'
import { getSystemErrorName } from 'node:util'
import { MAX_SEGMENTS_PER_SEND, SEGMENTED_BURST_DATAGRAMS, SEGMENTED_DATAGRAMS_PER_MS } from '../../configs.js'
import { nativeAddon, socketFd, type SendSegments } from './native-addon.js'
import { TokenBucket } from './token-bucket.js'

const { EINVAL, EMSGSIZE, EIO, EDESTADDRREQ, EAFNOSUPPORT, ENOPROTOOPT, EOPNOTSUPP, ENOSYS, EBADF, ENOTSOCK } = constants.errno
/** This socket or kernel cannot send runs at all (no UDP_SEGMENT): runs stop for the socket. */
const NO_SEGMENTATION = new Set([ENOPROTOOPT, EOPNOTSUPP, ENOSYS, EBADF, ENOTSOCK])
/**
 * The route to this destination refuses runs of this segment size: above its MTU (EINVAL,
 * EMSGSIZE), a device without checksum offload (EIO), an address the addon cannot build. That host
 * gets one call per datagram at this size and larger from then on. Anything else (a full socket
 * buffer, an unreachable network, a firewall's EPERM) concerns this run only.
 */
const PER_DESTINATION = new Set([EINVAL, EMSGSIZE, EIO, EDESTADDRREQ, EAFNOSUPPORT])
/** The addon takes 256 parts, a header and a payload per datagram. */
const MAX_RUN_DATAGRAMS = 128
/** Destinations whose refusals are remembered; past that the oldest is forgotten (and tried again). */
const MAX_REFUSED_HOSTS = 1024

export interface SegmentedSenderInit {
  socket: dgram.Socket
  /** Tests pass a stand-in for the addon; undefined means the built addon, if any. */
  sendSegments?: SendSegments
  maxSegments?: number
  /** Datagrams runs may carry at once, and per millisecond (SEGMENTED_BURST_DATAGRAMS, SEGMENTED_DATAGRAMS_PER_MS). */
  burstDatagrams?: number
  datagramsPerMs?: number
}

export interface SegmentedSendStats {
  /** sendmsg calls that each carried a run of datagrams. */
  runs: number
  datagrams: number
  /** Runs handed back to dgram, one call per datagram (a full socket buffer, a refused destination). */
  fallbacks: number
  /** Runs sent one call per datagram because runs had used up their burst (SEGMENTED_BURST_DATAGRAMS). */
  overBurst: number
}

/**
 * Sends a run of equal-sized datagrams in one system call (UDP GSO), where the kernel allows it.
 * Every refusal falls back to dgram, so the caller's datagrams always leave one way or the other.
 */
export class SegmentedSender {
  readonly maxSegments: number
  readonly stats: SegmentedSendStats = { runs: 0, datagrams: 0, fallbacks: 0, overBurst: 0 }
  /** Why runs stopped for good on this socket (an errno name), if they did. */
  disabledBy: string | undefined
  /** Per host, the smallest segment size its route refused. */
  private readonly refusedHosts = new Map<string, number>()
  private readonly ipv6: boolean
  /** Counts datagrams, not bytes. */
  private readonly burst: TokenBucket
  /** dgram sends not yet handed to the kernel (see plainSendQueued). */
  private plainPending = 0

  private constructor (private readonly socket: dgram.Socket, private readonly fd: number, private readonly sendSegments: SendSegments, init: SegmentedSenderInit) {
    this.ipv6 = socket.address().family === 'IPv6'
    this.maxSegments = Math.min(MAX_RUN_DATAGRAMS, init.maxSegments ?? MAX_SEGMENTS_PER_SEND)
    this.burst = new TokenBucket((init.datagramsPerMs ?? SEGMENTED_DATAGRAMS_PER_MS) * 1000, init.burstDatagrams ?? SEGMENTED_BURST_DATAGRAMS)
  }

  /** A sender for a bound socket, or undefined without the addon or a file descriptor. */
  static open (init: SegmentedSenderInit): SegmentedSender | undefined {
    const send = init.sendSegments ?? nativeAddon().sendSegments
    const fd = socketFd(init.socket)
    if (send === undefined || fd === undefined) return undefined
    return new SegmentedSender(init.socket, fd, send, init)
  }

  /**
   * Sends `count` datagrams laid end to end in `parts`, each `segmentBytes` long but the last. False
   * when it did not, and the caller must send them one by one.
   */
  trySend (parts: Buffer[], segmentBytes: number, count: number, host: string, port: number): boolean {
    // A zone (fe80::1%eth0) is more than the addon parses: such peers get one call per datagram.
    if (this.disabledBy !== undefined || count < 2 || count > this.maxSegments || isIP(host) === 0 || host.includes('%')) return false
    if (segmentBytes >= (this.refusedHosts.get(host) ?? Infinity)) return false
    // Datagrams dgram has not handed to the kernel yet, or queued when the socket buffer was full,
    // would leave after this run: keep the order.
    if (this.plainPending > 0 || this.socket.getSendQueueCount() > 0) return false
    if (this.burst.delayFor(count) > 0) {
      this.stats.overBurst++
      return false
    }
    const result = this.sendSegments(this.fd, parts, segmentBytes, host, port, this.ipv6)
    if (result === 0) {
      this.burst.take(count)
      this.stats.runs++
      this.stats.datagrams += count
      return true
    }
    this.stats.fallbacks++
    const err = -result
    if (NO_SEGMENTATION.has(err)) {
      this.disabledBy = getSystemErrorName(result)
    } else if (PER_DESTINATION.has(err)) {
      this.refusedHosts.delete(host)
      this.refusedHosts.set(host, segmentBytes)
      if (this.refusedHosts.size > MAX_REFUSED_HOSTS) this.refusedHosts.delete(this.refusedHosts.keys().next().value as string)
    }
    return false
  }

  /**
   * A datagram went to dgram. dgram resolves the address, even an IP literal, on a later tick
   * (dns.lookup answers through process.nextTick) and only then calls the kernel: a run sent
   * meanwhile would overtake it. This tick is queued after dgram's, so when it runs that send is made.
   */
  plainSendQueued (): void {
    this.plainPending++
    process.nextTick(() => { this.plainPending-- })
  }
}
