import type { Logger } from 'pino'
import {
  BLACK_HOLE_TIMEOUTS, DATAGRAM_PROBE_LADDER, DEFAULT_CONGESTION_CONTROL, DEFAULT_DATAGRAM_BYTES, HELLO_COPY_AFTER_MS, HELLO_FIRST_RETRY_MS, LOSS_REORDER_THRESHOLD,
  LOSS_REORDER_WINDOW_RTT, LOSS_TIME_GRANULARITY_MS, MAX_CHOKED_TXIDS, MAX_DATAGRAMS_PER_REQUEST, MAX_HELLOS_OUTSTANDING, MAX_PROBES, PACING_BURST_MS, PACING_GAIN, PEER_IDLE_TIMEOUT_MS, PROBE_AFTER_DATAGRAMS
} from '../../configs.js'
import { DATA_HEADER_BYTES, encode, MessageType, RejectReason, type DataMsg, type HelloAckMsg, type RejectMsg, type Stream } from '../messages/index.js'
import { createCongestionController, type CongestionController } from './congestion.js'
import { sameAddress, type Endpoint, type RemoteAddress } from './endpoint.js'
import { abortError, PeerRejectedError, PeerTimeoutError, TransportClosedError } from './errors.js'
import type { SharedPathSize } from './path-mtu.js'
import { RttEstimator, type RttEstimatorInit } from './rtt.js'
import { TokenBucket } from './token-bucket.js'

export interface PeerLinkInit {
  endpoint: Endpoint
  remote: RemoteAddress
  /** Size of the data datagrams safe on any path, header included: where probing starts over after a black hole. */
  datagramBytes?: number
  /** What the links to the same host have confirmed, shared by all of them (RFC 8899 §4.3). */
  pathSize?: SharedPathSize
  /** The largest datagram worth probing for on this path (see pathDatagramCap). Equal to datagramBytes: no probing. */
  maxDatagramBytes?: number
  /** Shared by every link of a node: its download rate limit. */
  downloadLimiter?: TokenBucket
  congestion?: CongestionController
  rtt?: RttEstimatorInit
  /** Nothing heard from the owner for this long, with requests outstanding: the link fails. */
  idleTimeoutMs?: number
  logger?: Logger
}

export interface FetchInit {
  contentHash: Buffer
  stream: Stream
  offset: number
  length: number
  /**
   * Called once for every block of the range, in arrival order, never twice for the same bytes.
   * `payload` may be a view of the endpoint's receive buffers (BatchReceiver): copy what you keep.
   */
  onData: (offset: number, payload: Buffer) => void
  signal?: AbortSignal
}

/** What libudx exposes per stream, plus counters that explain where bytes went. */
export interface PeerLinkStats {
  srttMs: number | undefined
  rttVarMs: number
  minRttMs: number | undefined
  rtoMs: number
  cwnd: number
  inflight: number
  /** The datagram size new fetches use (grows as probes succeed). */
  datagramBytes: number
  probesSent: number
  requestsSent: number
  datagramsReceived: number
  bytesReceived: number
  /** Datagrams re-requested after being declared lost. */
  retransmits: number
  timeouts: number
  /** Data that arrived twice (a late original after its retransmission). */
  duplicates: number
  /** Data for an offset or size that was not asked for, or from the wrong address. */
  unexpected: number
  /** Requests whose answers were still due when their fetch was given up (CANCEL). */
  cancelsSent: number
}

const WAITING = 0
const RECEIVED = 1
const LOST = 2

interface Fetch {
  init: FetchInit
  /** Fixed from the fetch's first request on, so block boundaries never move under it. */
  datagramBytes: number
  payloadBytes: number
  blockCount: number
  received: Uint8Array
  receivedCount: number
  nextFresh: number
  retransmit: number[]
  txids: number[]
  resolve: () => void
  reject: (err: Error) => void
  onAbort: () => void
}

interface Request {
  txid: number
  fetch: Fetch
  firstBlock: number
  state: Uint8Array
  waiting: number
  highestSeen: number
  lossScanFrom: number
  sentAt: number
  lastActivity: number
  sampled: boolean
  /** When data of a later request first arrived while this one still missed blocks (0 until then). */
  overtakenAt: number
  open: boolean
}

/**
 * Receiver-driven reliable delivery from one owner. The owner keeps no state: it answers each
 * REQUEST with the data datagrams for that range. This side keeps the window of outstanding
 * datagrams (congestion control), the RTT estimate, and re-requests exactly the blocks that were
 * declared lost. Several fetches may share one link; earlier fetches are served first so pieces
 * complete in order and memory stays bounded.
 */
export class PeerLink {
  readonly remote: RemoteAddress
  readonly rtt: RttEstimator
  readonly cc: CongestionController
  private datagramBytes: number
  private readonly baseDatagramBytes: number
  private readonly probeLadder: number[]
  private readonly cap: number
  private readonly pathSize: SharedPathSize | undefined
  /** Probes out, by datagram size. */
  private readonly probes = new Map<number, { txid: number, sentAt: number, attempts: number }>()
  /** The owner's handshake cookie; requests wait for it. */
  private cookie: Buffer | undefined
  /** HELLOs sent and not answered yet, oldest first; any one's answer completes the handshake. */
  private hellos: Array<{ txid: number, sentAt: number }> = []
  private helloAttempts = 0
  private deliveredSinceProbe = 0
  /**
   * An owner refused a probe (Choked, or any other REJECT): that says nothing about the path, so the
   * size is not counted as failed, but it is not asked again until a new fetch or an UNCHOKE.
   */
  private probesHeld = false
  private readonly fullLadder: number[]
  private timeoutsInARow = 0
  /**
   * The txids of requests the owner may have refused as Choked: the one whose refusal ended its
   * fetch, and that fetch's others still open (the fetch ends at the first refusal, so the later
   * ones' go unheard, and the owner's UNCHOKE names the last request it refused).
   */
  private readonly chokedTxids = new Set<number>()
  private readonly pacer: TokenBucket
  private readonly downloadLimiter: TokenBucket | undefined
  private pumpTimer: NodeJS.Timeout | undefined
  private readonly endpoint: Endpoint
  private readonly idleTimeoutMs: number
  private readonly logger: Logger | undefined

  private readonly fetches: Fetch[] = []
  private readonly byTxid = new Map<number, Request>()
  private readonly open: Request[] = []
  /**
   * Bytes of data datagrams asked for and not yet received or declared lost. The window counts
   * datagrams of the link's current size, but a fetch keeps the block size it began with, so
   * outstanding blocks are summed in bytes and converted (see inflight).
   */
  private inflightBytes = 0
  private lastHeard = 0
  private timer: NodeJS.Timeout | undefined
  private timerAt = Infinity
  private closed = false
  private readonly counters = {
    requestsSent: 0, datagramsReceived: 0, bytesReceived: 0, retransmits: 0, timeouts: 0, duplicates: 0, unexpected: 0, probesSent: 0, cancelsSent: 0
  }

  constructor (init: PeerLinkInit) {
    this.endpoint = init.endpoint
    this.remote = init.remote
    this.baseDatagramBytes = init.datagramBytes ?? DEFAULT_DATAGRAM_BYTES
    this.cap = init.maxDatagramBytes ?? this.baseDatagramBytes
    this.fullLadder = DATAGRAM_PROBE_LADDER.filter((size) => size > this.baseDatagramBytes && size <= this.cap)
    this.probeLadder = [...this.fullLadder]
    this.pathSize = init.pathSize
    this.datagramBytes = this.baseDatagramBytes
    this.downloadLimiter = init.downloadLimiter
    // Refreshed from cwnd/srtt as samples come in; until then it does not hold anything back.
    this.pacer = new TokenBucket(Number.MAX_SAFE_INTEGER / 4, Number.MAX_SAFE_INTEGER / 4)
    this.cc = init.congestion ?? createCongestionController(DEFAULT_CONGESTION_CONTROL)
    this.rtt = new RttEstimator(init.rtt)
    this.idleTimeoutMs = init.idleTimeoutMs ?? PEER_IDLE_TIMEOUT_MS
    this.logger = init.logger
    // A new link starts at what the host's other links confirmed, with the initial window in
    // datagrams of that size: it has nothing in flight whose bytes the window must keep.
    this.adoptPathSize(false)
  }

  /**
   * Whether an UNCHOKE from the owner is genuine: it names the request it last refused as Choked,
   * a txid an off-path sender cannot know. Each refusal is answered by at most one UNCHOKE.
   */
  acceptUnchoke (txid: number): boolean {
    if (!this.chokedTxids.has(txid)) return false
    this.chokedTxids.clear()
    this.probesHeld = false
    return true
  }

  /** Outstanding data in datagrams of the link's current size (fractional while older fetches run). */
  private get inflight (): number { return this.inflightBytes / this.datagramBytes }

  get stats (): PeerLinkStats {
    return {
      srttMs: this.rtt.srtt,
      rttVarMs: this.rtt.rttvar,
      minRttMs: this.rtt.minRtt,
      rtoMs: this.rtt.rto,
      cwnd: this.cc.cwnd,
      inflight: Math.ceil(this.inflight),
      datagramBytes: this.datagramBytes,
      ...this.counters
    }
  }

  /** Resolves once every byte of the range has been handed to onData. */
  async fetch (init: FetchInit): Promise<void> {
    if (this.closed) throw new TransportClosedError('link is closed')
    if (init.signal?.aborted === true) throw abortError(init.signal)
    if (init.length === 0) return
    await new Promise<void>((resolve, reject) => {
      const fetch: Fetch = {
        init,
        datagramBytes: 0,
        payloadBytes: 0,
        blockCount: 0,
        received: new Uint8Array(0),
        receivedCount: 0,
        nextFresh: 0,
        retransmit: [],
        txids: [],
        resolve,
        reject,
        onAbort: () => this.endFetch(fetch, abortError(init.signal as AbortSignal), true)
      }
      this.sizeBlocks(fetch)
      init.signal?.addEventListener('abort', fetch.onAbort, { once: true })
      // The idle clock starts when the link starts waiting, not at the last reply of an old fetch.
      if (this.fetches.length === 0) this.lastHeard = performance.now()
      this.fetches.push(fetch)
      this.probesHeld = false
      this.pump()
    })
  }

  close (): void {
    if (this.closed) return
    for (const f of [...this.fetches]) this.endFetch(f, new TransportClosedError('link closed'))
    this.closed = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    if (this.pumpTimer !== undefined) clearTimeout(this.pumpTimer)
    for (const size of [...this.probes.keys()]) this.endProbe(size)
    this.endHandshake()
  }

  /**
   * Sends requests while the congestion window has room. A request waits until the room is worth
   * a batch (a quarter window, up to a full request): asking for each freed slot on its own would
   * turn every arriving datagram into a one-block request (silly window syndrome).
   */
  private pump (): void {
    if (this.closed || this.pumpTimer !== undefined) return
    if (this.cookie === undefined) {
      if (this.fetches.length > 0) this.sayHello()
      return
    }
    this.adoptPathSize()
    const cwnd = this.cc.cwnd
    const batch = Math.max(1, Math.min(MAX_DATAGRAMS_PER_REQUEST, Math.floor(cwnd / 4)))
    for (const fetch of this.fetches) {
      this.sizeBlocks(fetch)
      // Room and batch in this fetch's blocks, which may be smaller than the link's datagrams now.
      const blocksPerDatagram = this.datagramBytes / fetch.datagramBytes
      const fetchBatch = Math.max(1, Math.floor(batch * blocksPerDatagram))
      for (;;) {
        const room = Math.floor((cwnd - this.inflight) * blocksPerDatagram)
        if (room <= 0) return
        if (room < fetchBatch && this.inflightBytes > 0 && room < this.blocksLeftToRequest(fetch)) return
        if (this.blocksLeftToRequest(fetch) === 0) break
        const wait = this.sendDelay(Math.min(room, fetchBatch) * fetch.payloadBytes)
        if (wait > 0) {
          this.pumpTimer = setTimeout(() => { this.pumpTimer = undefined; this.pump() }, Math.max(1, wait))
          return
        }
        // A request takes a batch, not all the room: with the whole window in one request, as at the
        // start, that request lost meant silence until the RTO (60 ms, then a window of 4 datagrams;
        // one at the start of most downloads at 5 % loss). With four or more, a later one's data
        // tells the loss within an eighth of an RTT.
        const run = this.takeRun(fetch, Math.min(room, fetchBatch, MAX_DATAGRAMS_PER_REQUEST))
        if (run === undefined) break
        this.sendRequest(fetch, run.first, run.count)
      }
    }
  }

  /** Asks the owner for a cookie (HELLO), unless a HELLO is already out; the timer resends it. */
  private sayHello (): void {
    if (this.hellos.length > 0) return
    this.sendHello()
  }

  private sendHello (attempt = true): void {
    // Set just before the send, after the encoding, so the RTT sample and the copy's timer count
    // from when the HELLO left (the first encoding in a process can take milliseconds).
    let sentAt = 0
    const txid = this.endpoint.register((msg, from) => {
      if (!sameAddress(from, this.remote) || msg.type !== MessageType.HelloAck) return
      const now = performance.now()
      // Each attempt has its own txid, so this answer belongs to this attempt: a clean RTT sample
      // (Karn's rule), and the first requests time out after a few RTTs, not the initial RTO.
      this.rtt.sample(now - sentAt)
      this.updatePacer()
      this.endHandshake()
      this.lastHeard = now
      this.cookie = (msg as HelloAckMsg).cookie
      this.pump()
    })
    const hello = encode({ type: MessageType.Hello, txid })
    sentAt = performance.now()
    this.hellos.push({ txid, sentAt })
    if (attempt) this.helloAttempts++
    this.endpoint.send(hello, this.remote)
    this.armTimer(sentAt + this.helloTimeout())
    if (this.copyDue()) this.armTimer(sentAt + HELLO_COPY_AFTER_MS)
  }

  /**
   * Whether the first HELLO to a path with no RTT yet still owes its copy. A lost HELLO (or answer)
   * otherwise stalls the download for HELLO_FIRST_RETRY_MS: at 5 % loss each way, a tenth of all
   * starts. The copy is a few dozen bytes, sent only when no answer came within HELLO_COPY_AFTER_MS,
   * and it is not a retry: it neither backs off the RTO nor counts as an attempt.
   */
  private copyDue (): boolean {
    return this.helloAttempts === 1 && this.hellos.length === 1 && this.rtt.srtt === undefined
  }

  /**
   * How long the latest HELLO waits before another is sent. Before the path has an RTT, a short
   * wait that doubles with each attempt, up to the RTO: a HELLO and its answer are a few dozen
   * bytes, and waiting the whole initial RTO for a lost one stalls the start of every download.
   * Earlier attempts stay valid, so a slow path is not penalised for the early retry.
   */
  private helloTimeout (): number {
    if (this.rtt.srtt !== undefined) return this.rtt.rto
    return Math.min(this.rtt.rto, HELLO_FIRST_RETRY_MS * 2 ** (this.helloAttempts - 1))
  }

  private checkHello (now: number): void {
    const latest = this.hellos.at(-1)
    if (latest === undefined) return
    if (this.copyDue()) {
      if (now >= latest.sentAt + HELLO_COPY_AFTER_MS) {
        this.sendHello(false)
      } else {
        this.armTimer(latest.sentAt + HELLO_COPY_AFTER_MS)
      }
    }
    // Node's timers may fire a fraction of a millisecond early by this clock: not due yet, look again then.
    const due = latest.sentAt + this.helloTimeout()
    if (now < due) {
      this.armTimer(due)
      return
    }
    if (this.hellos.length >= MAX_HELLOS_OUTSTANDING) this.endpoint.release((this.hellos.shift() as { txid: number }).txid)
    this.rtt.backoff() // RFC 6298 §5.5, so a peer that never answers is asked ever less often
    this.sendHello()
  }

  private endHandshake (): void {
    for (const h of this.hellos) this.endpoint.release(h.txid)
    this.hellos = []
    this.helloAttempts = 0
  }

  /** How long the pacer and the node's download limit want the next request of `bytes` held back. */
  private sendDelay (bytes: number): number {
    return Math.max(this.pacer.delayFor(bytes), this.downloadLimiter?.delayFor(bytes) ?? 0)
  }

  /** Pacing rate: the window spread over one RTT, with headroom (RFC 9002 §7.7). */
  private updatePacer (): void {
    const srtt = this.rtt.srtt
    if (srtt === undefined || srtt <= 0) return
    const windowBytes = this.cc.cwnd * this.datagramBytes
    const rate = (PACING_GAIN * windowBytes) / (srtt / 1000)
    // At most half a window at once, and at least what the timer granularity needs to keep up.
    this.pacer.setRate(rate, Math.max((rate * PACING_BURST_MS) / 1000, windowBytes / 2))
  }

  /**
   * Cuts a fetch into blocks of the link's current datagram size. Only before its first request
   * (or a probe's answer delivered some of it):
   * after that its block boundaries are what the owner answers, and must not move. A fetch queued
   * behind others thus starts at the size the path has confirmed by then, not the one it had when
   * it was queued (a window of queued pieces would otherwise lag a whole ladder step behind).
   */
  private sizeBlocks (fetch: Fetch): void {
    if (fetch.txids.length > 0 || fetch.receivedCount > 0 || fetch.datagramBytes === this.datagramBytes) return
    fetch.datagramBytes = this.datagramBytes
    fetch.payloadBytes = this.datagramBytes - DATA_HEADER_BYTES
    fetch.blockCount = Math.ceil(fetch.init.length / fetch.payloadBytes)
    fetch.received = new Uint8Array(fetch.blockCount)
  }

  private blocksLeftToRequest (fetch: Fetch): number {
    return fetch.retransmit.length + fetch.blockCount - fetch.nextFresh
  }

  /** The next contiguous run of blocks to ask for: retransmissions first, then fresh blocks. */
  private takeRun (fetch: Fetch, max: number): { first: number, count: number } | undefined {
    const rt = fetch.retransmit
    while (rt.length > 0 && fetch.received[rt[0] as number] === 1) rt.shift()
    if (rt.length > 0) {
      rt.sort((a, b) => a - b)
      const first = rt.shift() as number
      let count = 1
      while (count < max && rt.length > 0 && rt[0] === first + count) {
        rt.shift()
        count++
      }
      return { first, count }
    }
    // Blocks a probe's answer already delivered (a prefix of the fetch) are not asked for.
    while (fetch.nextFresh < fetch.blockCount && fetch.received[fetch.nextFresh] === 1) fetch.nextFresh++
    if (fetch.nextFresh >= fetch.blockCount) return undefined
    const first = fetch.nextFresh
    const count = Math.min(max, fetch.blockCount - first)
    fetch.nextFresh += count
    return { first, count }
  }

  private blockLength (fetch: Fetch, block: number): number {
    return Math.min(fetch.payloadBytes, fetch.init.length - block * fetch.payloadBytes)
  }

  private sendRequest (fetch: Fetch, firstBlock: number, count: number): void {
    const now = performance.now()
    const req: Request = {
      txid: 0,
      fetch,
      firstBlock,
      state: new Uint8Array(count),
      waiting: count,
      highestSeen: -1,
      lossScanFrom: 0,
      sentAt: now,
      lastActivity: now,
      sampled: false,
      overtakenAt: 0,
      open: true
    }
    req.txid = this.endpoint.register((msg, from, receivedAt) => this.onReply(req, msg as DataMsg | RejectMsg, from, receivedAt))
    const cookie = this.cookie as Buffer
    fetch.txids.push(req.txid)
    this.byTxid.set(req.txid, req)
    this.open.push(req)
    this.inflightBytes += count * fetch.datagramBytes
    let length = 0
    for (let b = firstBlock; b < firstBlock + count; b++) length += this.blockLength(fetch, b)
    this.counters.requestsSent++
    this.pacer.take(length)
    this.downloadLimiter?.take(length)
    this.endpoint.send(encode({
      type: MessageType.Request,
      txid: req.txid,
      cookie,
      contentHash: fetch.init.contentHash,
      stream: fetch.init.stream,
      offset: fetch.init.offset + firstBlock * fetch.payloadBytes,
      length,
      datagramBytes: fetch.datagramBytes
    }), this.remote)
    this.armTimer(now + this.rtt.rto)
  }

  private onReply (req: Request, msg: DataMsg | RejectMsg, from: RemoteAddress, now: number): void {
    if (!sameAddress(from, this.remote)) {
      this.counters.unexpected++
      return
    }
    const fetch = req.fetch
    // lastHeard moves only for a reply that makes sense: an owner that answers every request with
    // data for the wrong offset must still time out, not keep the download waiting forever.
    if (msg.type === MessageType.Reject) this.lastHeard = now
    if (msg.type === MessageType.Reject && msg.reason === RejectReason.BadCookie) {
      // The owner restarted or the cookie aged out: not an error, not congestion. Handshake again
      // and ask for the same blocks.
      this.loseWaiting(req, now, false)
      this.cookie = undefined
      this.pump()
      return
    }
    if (msg.type === MessageType.Reject) {
      if (msg.reason === RejectReason.Choked) this.noteChoked(fetch, req)
      this.endFetch(fetch, new PeerRejectedError(`owner ${from.host}:${from.port} refused: ${RejectReason[msg.reason] ?? msg.reason}`, msg.reason))
      return
    }
    if (msg.type !== MessageType.Data) return
    const rel = msg.offset - fetch.init.offset
    const block = rel / fetch.payloadBytes
    const i = block - req.firstBlock
    if (msg.stream !== fetch.init.stream || !Number.isInteger(block) || i < 0 || i >= req.state.length ||
        msg.payload.length !== this.blockLength(fetch, block)) {
      this.counters.unexpected++
      return
    }
    this.lastHeard = now
    this.counters.datagramsReceived++
    this.timeoutsInARow = 0
    if (!req.sampled) {
      req.sampled = true
      this.rtt.sample(now - req.sentAt)
      this.cc.onRttSample(now - req.sentAt, now)
      this.updatePacer()
    }
    req.lastActivity = now
    if (req.state[i] === WAITING) {
      req.waiting--
      this.inflightBytes -= fetch.datagramBytes
    }
    req.state[i] = RECEIVED
    if (fetch.received[block] === 1) {
      this.counters.duplicates++
    } else {
      this.deliver(fetch, block, msg.offset, msg.payload)
      this.deliveredSinceProbe++
      // The window counts datagrams of the link's current size; a fetch begun at a smaller size
      // still delivers its smaller blocks. Counted as whole datagrams, a link probed from 1200 to
      // 65000 B grew its window by 54 times the bytes delivered: cwnd 4 to 98 in 7 ms against a
      // 10 MB/s owner, whose queue then held 800 ms of requests.
      this.cc.onDelivered(fetch.datagramBytes / this.datagramBytes, now)
      this.maybeProbe()
    }
    // RFC 9002 packet threshold: an owner sends a response in offset order, so a block still
    // missing well below the highest one seen was lost rather than reordered.
    if (i > req.highestSeen) {
      req.highestSeen = i
      const limit = i - LOSS_REORDER_THRESHOLD
      for (let j = req.lossScanFrom; j <= limit; j++) {
        if (req.state[j] === WAITING) this.markLost(req, j, now)
      }
      if (limit + 1 > req.lossScanFrom) req.lossScanFrom = limit + 1
    }
    this.detectLossBefore(req, now)
    if (req.waiting === 0) this.closeRequest(req)
    if (fetch.receivedCount === fetch.blockCount) {
      this.endFetch(fetch)
      return
    }
    this.pump()
  }

  /**
   * RFC 9002 time threshold across requests: the owner answers requests in order, so once data of
   * a later request arrives, whatever an earlier one still misses was due before it. RFC 9002 calls
   * a packet lost 9/8 RTT after it was sent once a later one is acknowledged, i.e. 1/8 RTT after it
   * was due: here, 1/8 RTT after later data overtook it with nothing more of its own arriving. That
   * covers its tail, and a REQUEST lost on the way or dropped at the owner's cap, without waiting
   * for an RTO. (Counting a full 9/8 RTT from its last datagram held each such piece an extra RTT,
   * and at 5 % loss the pieces in flight ran out before the window did.)
   */
  private detectLossBefore (req: Request, now: number): void {
    if (this.open[0] === req || this.open[0] === undefined) return
    // Runs for every datagram: walks the list in place (an expired request leaves it) rather than a copy.
    for (let at = 0; at < this.open.length;) {
      const earlier = this.open[at] as Request
      if (earlier === req) break
      if (earlier.sentAt < req.sentAt) {
        if (earlier.overtakenAt === 0) earlier.overtakenAt = now
        this.expireIfQuiet(earlier, now)
      }
      if (this.open[at] === earlier) at++
    }
  }

  /**
   * An overtaken request quiet for the time threshold loses what it still misses. Checked as data
   * arrives and, for when none does, on the link's timer (RFC 9002's loss time): when the rest of
   * a window's answers came in within the threshold and nothing followed, the lost request
   * otherwise waited for the whole RTO.
   */
  private expireIfQuiet (req: Request, now: number, early = 0): void {
    const threshold = Math.max(LOSS_TIME_GRANULARITY_MS, LOSS_REORDER_WINDOW_RTT * Math.max(this.rtt.smoothedOrInitial, this.rtt.latestRtt))
    const quietSince = Math.max(req.overtakenAt, req.lastActivity)
    if (now - quietSince + early > threshold) {
      this.loseWaiting(req, now)
    } else {
      this.armTimer(quietSince + threshold)
    }
  }

  private noteChoked (fetch: Fetch, refused: Request): void {
    this.rememberChoked([refused.txid, ...fetch.txids.filter((t) => this.byTxid.get(t)?.open === true)])
  }

  private rememberChoked (txids: number[]): void {
    // Bounded: the txids of refusals no UNCHOKE has answered yet, oldest forgotten first.
    for (const txid of txids) {
      this.chokedTxids.delete(txid)
      this.chokedTxids.add(txid)
    }
    for (const txid of this.chokedTxids) {
      if (this.chokedTxids.size <= MAX_CHOKED_TXIDS) break
      this.chokedTxids.delete(txid)
    }
  }

  /** Retires a request: every block it still waits for is lost. */
  private loseWaiting (req: Request, now: number, congestion = true): void {
    for (let j = 0; j < req.state.length; j++) {
      if (req.state[j] === WAITING) this.markLost(req, j, now, congestion)
    }
    this.closeRequest(req)
  }

  private markLost (req: Request, i: number, now: number, congestion = true): void {
    req.state[i] = LOST
    req.waiting--
    this.inflightBytes -= req.fetch.datagramBytes
    const block = req.firstBlock + i
    // A block that came in the answer to another request (a re-request's, or the late original's)
    // was not lost: no retransmission, and no congestion signal.
    if (req.fetch.received[block] !== 0) return
    req.fetch.retransmit.push(block)
    if (congestion) {
      this.counters.retransmits++
      this.cc.onLoss(req.sentAt, now)
    }
  }

  private closeRequest (req: Request): void {
    if (!req.open) return
    req.open = false
    const at = this.open.indexOf(req)
    if (at >= 0) this.open.splice(at, 1)
  }

  /**
   * Ends a fetch. One its caller gave up on (`cancel`, an aborted signal: the end game's losing
   * duplicate) also tells the owner, so the answers it still has queued do not spend its upload.
   */
  private endFetch (fetch: Fetch, err?: Error, cancel = false): void {
    const at = this.fetches.indexOf(fetch)
    if (at < 0) return
    this.fetches.splice(at, 1)
    fetch.init.signal?.removeEventListener('abort', fetch.onAbort)
    for (const txid of fetch.txids) {
      const req = this.byTxid.get(txid)
      if (req !== undefined) {
        // Not only the requests still open: one retired as lost may be queued at the owner still
        // (its re-request then dropped there as a duplicate), so every one with a block missing.
        if (cancel && this.cookie !== undefined && req.state.some((_, j) => fetch.received[req.firstBlock + j] === 0)) {
          this.counters.cancelsSent++
          this.endpoint.send(encode({ type: MessageType.Cancel, txid, cookie: this.cookie }), this.remote)
        }
        this.inflightBytes -= req.waiting * fetch.datagramBytes
        req.waiting = 0
        this.closeRequest(req)
        this.byTxid.delete(txid)
      }
      this.endpoint.release(txid)
    }
    if (err === undefined) fetch.resolve()
    else fetch.reject(err)
    this.pump()
  }

  /**
   * The size new fetches use. The window is counted in datagrams, so it is rescaled to stand for
   * the same bytes: a window grown in slow start at 1200 bytes would otherwise ask an owner for 54
   * times as much at once at 65000, and overflow its upload queue.
   */
  private setDatagramBytes (size: number, rescale = true): void {
    if (size === this.datagramBytes) return
    if (rescale) this.cc.rescale(size / this.datagramBytes)
    this.datagramBytes = size
    this.updatePacer()
  }

  /** Moves up to a confirmed size; the ladder keeps only the sizes above it. */
  private raiseDatagramBytes (size: number, rescale = true): void {
    this.setDatagramBytes(size, rescale)
    while (this.probeLadder.length > 0 && (this.probeLadder[0] as number) <= size) this.probeLadder.shift()
  }

  /** Takes up a larger size another link to the same host has confirmed since this one last looked. */
  private adoptPathSize (rescale = true): void {
    const shared = Math.min(this.cap, this.pathSize?.confirmed ?? 0)
    if (shared > this.datagramBytes) this.raiseDatagramBytes(shared, rescale)
  }

  private armTimer (at: number): void {
    if (this.closed || at >= this.timerAt) return
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timerAt = at
    this.timer = setTimeout(() => this.onTimer(), Math.max(1, at - performance.now()))
  }

  /**
   * RFC 8899-style probing: once the current size has been delivering, ask for one datagram of
   * every larger size on the ladder at once. New fetches use the largest that arrives; a size that
   * fails MAX_PROBES times ends the search there (so does every larger one). One rung at a time,
   * with a round trip and PROBE_AFTER_DATAGRAMS deliveries each, a 256 MB loopback download spent
   * its first 250 ms below the top size. Probes ride outside the congestion window (one datagram each).
   */
  private maybeProbe (): void {
    if (this.probeLadder.length === 0 || this.probes.size > 0 || this.probesHeld || this.cookie === undefined || this.deliveredSinceProbe < PROBE_AFTER_DATAGRAMS) return
    for (const size of this.probeLadder) {
      const fetch = this.fetches.find((f) => f.init.length >= size - DATA_HEADER_BYTES)
      if (fetch !== undefined) this.sendProbe(fetch, size, 1)
    }
  }

  private sendProbe (fetch: Fetch, size: number, attempt: number): void {
    const payload = size - DATA_HEADER_BYTES
    const txid = this.endpoint.register((msg, from) => {
      if (!sameAddress(from, this.remote)) return
      if (msg.type === MessageType.Reject) {
        this.probeRefused(size, txid, msg.reason)
        return
      }
      if (msg.type !== MessageType.Data || msg.payload.length !== payload) return
      this.endProbe(size)
      this.keepProbeData(fetch, msg as DataMsg)
      if (size <= this.datagramBytes) return
      // Smaller sizes still being probed have nothing left to tell.
      for (const smaller of [...this.probes.keys()]) if (smaller < size) this.endProbe(smaller)
      this.raiseDatagramBytes(size)
      this.pathSize?.confirm(size)
      this.deliveredSinceProbe = 0
      this.logger?.debug({ remote: this.remote, datagramBytes: size }, 'larger datagrams confirmed on this path')
    })
    const now = performance.now()
    this.probes.set(size, { txid, sentAt: now, attempts: attempt })
    this.counters.probesSent++
    this.endpoint.send(encode({
      type: MessageType.Request, txid, cookie: this.cookie as Buffer, contentHash: fetch.init.contentHash, stream: fetch.init.stream,
      offset: fetch.init.offset, length: payload, datagramBytes: size
    }), this.remote)
    this.armTimer(now + 2 * this.rtt.rto)
  }

  /**
   * The owner answered a probe with a REJECT. Left to time out, a refusal would count as the path
   * dropping the size: three (MAX_PROBES) while an owner chokes us and the size is never tried
   * again. A Choked one is also a request the owner's UNCHOKE may name, and must be accepted then.
   */
  private probeRefused (size: number, txid: number, reason: RejectReason): void {
    this.endProbe(size)
    if (reason === RejectReason.Choked) this.rememberChoked([txid])
    this.probesHeld = true
  }

  /**
   * A probe's answer is real content from the start of its fetch: the blocks it covers whole are
   * delivered as if requested. The owner counted those bytes as given to us (a super-seed counts a
   * piece given once, and leaves after one copy): thrown away, they could be the copy nobody has.
   */
  private keepProbeData (fetch: Fetch, msg: DataMsg): void {
    if (!this.fetches.includes(fetch) || msg.stream !== fetch.init.stream || msg.offset !== fetch.init.offset) return
    for (let b = 0; b < fetch.blockCount; b++) {
      const start = b * fetch.payloadBytes
      const end = start + this.blockLength(fetch, b)
      if (end > msg.payload.length) break
      if (fetch.received[b] === 0) this.deliver(fetch, b, fetch.init.offset + start, msg.payload.subarray(start, end))
    }
    if (fetch.receivedCount === fetch.blockCount) this.endFetch(fetch)
  }

  /** Hands one block, new to the fetch, to its caller. */
  private deliver (fetch: Fetch, block: number, offset: number, payload: Buffer): void {
    fetch.received[block] = 1
    fetch.receivedCount++
    this.counters.bytesReceived += payload.length
    fetch.init.onData(offset, payload)
  }

  private endProbe (size: number): void {
    const probe = this.probes.get(size)
    if (probe === undefined) return
    this.endpoint.release(probe.txid)
    this.probes.delete(size)
  }

  private checkProbes (now: number): void {
    for (const [size, probe] of [...this.probes]) {
      if (!this.probes.has(size)) continue // ended above, with a smaller size that failed
      if (now - probe.sentAt < 2 * this.rtt.rto) {
        this.armTimer(probe.sentAt + 2 * this.rtt.rto)
        continue
      }
      this.endProbe(size)
      const fetch = this.fetches.find((f) => f.init.length >= size - DATA_HEADER_BYTES)
      if (probe.attempts < MAX_PROBES && fetch !== undefined) {
        this.sendProbe(fetch, size, probe.attempts + 1)
      } else if (probe.attempts >= MAX_PROBES) {
        // This size is above the path's limit, and so is every larger one.
        const at = this.probeLadder.indexOf(size)
        if (at >= 0) this.probeLadder.length = at
        for (const larger of [...this.probes.keys()]) if (larger > size) this.endProbe(larger)
      }
    }
  }

  /** Requests with nothing new for an RTO lose their missing blocks; a silent owner fails the link. */
  private onTimer (): void {
    this.timer = undefined
    this.timerAt = Infinity
    if (this.closed) return
    // Node runs due timers before it reads the sockets. After the event loop was busy (a 90 ms
    // stall early in a download, page faults and JIT), this timer would time out every request whose
    // answer sits unread in the socket's queue and cut the window to its minimum: read that first.
    this.endpoint.readWaiting()
    if (this.closed) return
    const now = performance.now()
    this.checkProbes(now)
    if (this.fetches.length === 0) return
    if (now - this.lastHeard >= this.idleTimeoutMs) {
      const err = new PeerTimeoutError(`owner ${this.remote.host}:${this.remote.port} sent nothing for ${Math.round(now - this.lastHeard)} ms`)
      this.logger?.debug({ remote: this.remote }, err.message)
      for (const f of [...this.fetches]) this.endFetch(f, err)
      return
    }
    this.checkHello(now)
    // Node's timers may fire a fraction of a millisecond early by this clock: that counts as due.
    for (const req of [...this.open]) if (req.open && req.overtakenAt > 0) this.expireIfQuiet(req, now, LOSS_TIME_GRANULARITY_MS / 2)
    const rto = this.rtt.rto
    let expiredSilent = false
    let next = Infinity
    for (const req of [...this.open]) {
      // Owners answer in order, so a response not yet begun is waiting its turn while the link is
      // busy: its clock runs from the last datagram heard on the link, not from when it was sent.
      const since = req.sampled ? req.lastActivity : Math.max(req.lastActivity, this.lastHeard)
      if (now - since >= rto) {
        // Only a peer that sent nothing at all since this request is a timeout; otherwise it is loss.
        if (this.lastHeard <= req.sentAt) expiredSilent = true
        this.loseWaiting(req, now)
      } else {
        next = Math.min(next, since + rto)
      }
    }
    if (expiredSilent) {
      // Nothing at all came back for a whole request: RFC 6298 §5.5 backoff, and a smaller window.
      this.counters.timeouts++
      this.rtt.backoff()
      this.cc.onTimeout(now)
      // RFC 8899 black-hole detection: a path that keeps going silent after a size increase may
      // no longer carry that size. New fetches go back to the base size and the search starts over
      // (a path that really lost the size fails its probes and stays at the base). One timeout is
      // not evidence: a CPU-starved process times out too.
      this.timeoutsInARow++
      if (this.datagramBytes > this.baseDatagramBytes && this.timeoutsInARow >= BLACK_HOLE_TIMEOUTS) {
        this.logger?.debug({ remote: this.remote, from: this.datagramBytes }, 'datagram size back to base after timeouts')
        this.setDatagramBytes(this.baseDatagramBytes)
        this.pathSize?.blackHole()
        this.probeLadder.splice(0, this.probeLadder.length, ...this.fullLadder)
        this.deliveredSinceProbe = 0
      }
    }
    this.pump()
    if (next < Infinity) this.armTimer(next)
    // Keep checking for an idle owner while we wait on it, even when every request was retired,
    // and at the latest when it crosses the idle timeout: RTO back-off must not stretch that.
    if (this.fetches.length > 0) this.armTimer(Math.min(this.timerAt, now + this.rtt.rto, this.lastHeard + this.idleTimeoutMs))
  }
}
