import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { COOKIE_BYTES, DATAGRAM_PROBE_LADDER, HELLO_COPY_AFTER_MS, INITIAL_RTO_MS, MAX_PROBES, MAX_SERVE_READS_PER_PEER, MIN_RTO_MS, PROBE_AFTER_DATAGRAMS } from '../../configs.js'
import { DATA_HEADER_BYTES, encode, MessageType, RejectReason, Stream, tryDecode, type DataMsg, type RejectMsg } from '../../src/messages/index.js'
import { AddressTokens } from '../../src/transport/auth.js'
import { BlockServer, type BlockSource } from '../../src/transport/block-server.js'
import { Endpoint } from '../../src/transport/endpoint.js'
import { PeerRejectedError, PeerTimeoutError } from '../../src/transport/errors.js'
import type { ImpairmentInit } from '../../src/transport/impairment.js'
import { SharedPathSize } from '../../src/transport/path-mtu.js'
import { NewReno, type CongestionController } from '../../src/transport/congestion.js'
import { PeerLink } from '../../src/transport/peer-link.js'
import { TokenBucket } from '../../src/transport/token-bucket.js'
import { UdpProxy } from '../../src/transport/udp-proxy.js'
import { waitFor } from '../helpers/processes.js'
import { LOCALHOST, peerRequest, WireClient } from '../helpers/wire.js'

const SIZE = 3 * 1024 * 1024
const DATAGRAM_BYTES = 1200
const PAYLOAD_BYTES = DATAGRAM_BYTES - DATA_HEADER_BYTES
const CONTENT_HASH = Buffer.alloc(32, 0xc0)
const OTHER_HASH = Buffer.alloc(32, 0x0d)

const closers: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close()
})

interface Rig {
  data: Buffer
  manifest: Buffer
  source: BlockSource
  server: Endpoint
  blockServer: BlockServer
  proxy: UdpProxy
  client: Endpoint
  link: PeerLink
}

/** BlockServer on one endpoint, PeerLink on another, talking through a UdpProxy. */
async function rig (init: { toTarget?: ImpairmentInit, fromTarget?: ImpairmentInit, idleTimeoutMs?: number } = {}): Promise<Rig> {
  const data = randomBytes(SIZE)
  const manifest = randomBytes(32 * 12)
  const source: BlockSource = {
    open: (hash, stream) => {
      if (!hash.equals(CONTENT_HASH)) return undefined
      const bytes = stream === Stream.Manifest ? manifest : data
      return { size: bytes.length, read: async (offset, length) => bytes.subarray(offset, offset + length) }
    }
  }
  const server = await Endpoint.open({ host: LOCALHOST })
  closers.push(async () => await server.close())
  const blockServer = serveBlocks(server, source)
  const proxy = await UdpProxy.start({ target: server.address, toTarget: init.toTarget, fromTarget: init.fromTarget })
  closers.push(async () => await proxy.close())
  const client = await Endpoint.open({ host: LOCALHOST })
  closers.push(async () => await client.close())
  const link = new PeerLink({ endpoint: client, remote: proxy.address, datagramBytes: DATAGRAM_BYTES, idleTimeoutMs: init.idleTimeoutMs })
  closers.push(() => link.close())
  return { data, manifest, source, server, blockServer, proxy, client, link }
}

/** A BlockServer with a fresh cookie secret, as a node makes one at every start. */
function serveBlocks (endpoint: Endpoint, source: BlockSource): BlockServer {
  return new BlockServer({
    endpoint, source, maxReadsInFlight: 64, maxReadsPerPeer: MAX_SERVE_READS_PER_PEER, cookies: new AddressTokens(randomBytes(32), COOKIE_BYTES)
  })
}

/** An owner serving `source` (behind a proxy impairing its answers, if given), and a link to it that probes up to the top size. */
async function probingLink (source: BlockSource, fromTarget?: ImpairmentInit, congestion?: CongestionController): Promise<PeerLink> {
  const owner = await Endpoint.open({ host: LOCALHOST })
  closers.push(async () => await owner.close())
  serveBlocks(owner, source)
  let remote = owner.address
  if (fromTarget !== undefined) {
    const proxy = await UdpProxy.start({ target: owner.address, fromTarget })
    closers.push(async () => await proxy.close())
    remote = proxy.address
  }
  const link = new PeerLink({ endpoint: (await rig()).client, remote, datagramBytes: DATAGRAM_BYTES, maxDatagramBytes: Math.max(...DATAGRAM_PROBE_LADDER), congestion })
  closers.push(() => link.close())
  return link
}

interface Fetched {
  bytes: Buffer
  /** onData calls whose offset had been delivered before (must stay 0). */
  repeats: number
  /** Bytes handed to onData in total. */
  delivered: number
}

/** Fetches [offset, offset+length) and checks every onData call lands inside the range. */
async function fetchRange (link: PeerLink, offset: number, length: number, opts: { stream?: Stream, contentHash?: Buffer, signal?: AbortSignal, onData?: (delivered: number) => void } = {}): Promise<Fetched> {
  const out: Fetched = { bytes: Buffer.alloc(length), repeats: 0, delivered: 0 }
  const seen = new Set<number>()
  await link.fetch({
    contentHash: opts.contentHash ?? CONTENT_HASH,
    stream: opts.stream ?? Stream.Content,
    offset,
    length,
    signal: opts.signal,
    onData: (at, payload) => {
      if (seen.has(at)) out.repeats++
      seen.add(at)
      if (at < offset || at + payload.length > offset + length) throw new Error(`onData outside the range: ${at}+${payload.length}`)
      payload.copy(out.bytes, at - offset)
      out.delivered += payload.length
      opts.onData?.(out.delivered)
    }
  })
  return out
}

/** Resolves with how a promise settled and when, so assertions can check the kind and the timing. */
async function settle (p: Promise<unknown>): Promise<{ error: unknown, at: number }> {
  try {
    await p
    return { error: undefined, at: performance.now() }
  } catch (error) {
    return { error, at: performance.now() }
  }
}

describe('PeerLink through a UdpProxy to a BlockServer', () => {
  it('fetches 3 MB byte-identical over a clean path, and measures the RTT', async () => {
    const { link, data, blockServer } = await rig()
    const got = await fetchRange(link, 0, SIZE)
    expect(got.bytes.equals(data)).toBe(true)
    expect(got.repeats).toBe(0)
    expect(got.delivered).toBe(SIZE)
    const s = link.stats
    expect(s.bytesReceived).toBe(SIZE)
    expect(s.inflight).toBe(0)
    expect(Number.isFinite(s.srttMs)).toBe(true)
    expect(s.srttMs).toBeGreaterThan(0)
    expect(s.minRttMs).toBeGreaterThan(0)
    expect(s.rtoMs).toBeGreaterThanOrEqual(MIN_RTO_MS)
    expect(blockServer.stats.rejected).toBe(0)
    // One handshake for the whole transfer (its first HELLO copied once if a busy machine held the
    // answer past HELLO_COPY_AFTER_MS), and every request carried its cookie.
    expect(blockServer.stats.hellos).toBeGreaterThanOrEqual(1)
    expect(blockServer.stats.hellos).toBeLessThanOrEqual(2)
    expect(blockServer.stats.badCookies).toBe(0)
    expect(blockServer.stats.requests).toBe(s.requestsSent + s.probesSent)
  })

  it('an owner that restarts (new cookie secret) refuses the old cookie once; the link says HELLO again and carries on', async () => {
    const { link, data, server, source, blockServer: before } = await rig()
    const first = await fetchRange(link, 0, 500_000)
    expect(first.bytes.equals(data.subarray(0, 500_000))).toBe(true)
    expect(before.stats.hellos).toBeGreaterThanOrEqual(1)
    expect(before.stats.hellos).toBeLessThanOrEqual(2) // the first HELLO and perhaps its copy
    // Same socket, new server state: what a restarted node looks like to its peers.
    const after = serveBlocks(server, source)
    const second = await fetchRange(link, 500_000, 500_000)
    expect(second.bytes.equals(data.subarray(500_000, 1_000_000))).toBe(true)
    expect(second.repeats).toBe(0)
    expect(after.stats.badCookies).toBeGreaterThan(0)
    expect(after.stats.hellos).toBe(1)
    // A refused cookie is not loss: nothing was counted as a retransmission or a timeout.
    expect(link.stats.timeouts).toBe(0)
    expect(link.stats.inflight).toBe(0)
  })

  it('a REQUEST without a cookie from this server gets one REJECT BadCookie and no data; with a handshake it is served', async () => {
    const { server, source, data } = await rig()
    const blockServer = serveBlocks(server, source)
    const attacker = await WireClient.open()
    closers.push(async () => await attacker.close())
    const forged = await attacker.request(server.address, { ...peerRequest(CONTENT_HASH, 0, 60_000), cookie: randomBytes(COOKIE_BYTES) })
    expect(forged.map((m) => m.type)).toEqual([MessageType.Reject])
    expect(forged[0]).toMatchObject({ reason: RejectReason.BadCookie })
    expect(blockServer.stats).toMatchObject({ badCookies: 1, datagramsSent: 0, bytesSent: 0 })
    // A cookie issued to another address is just as useless.
    const other = await WireClient.open()
    closers.push(async () => await other.close())
    const othersCookie = await other.hello(server.address)
    const stolen = await attacker.request(server.address, { ...peerRequest(CONTENT_HASH, 0, 1000), cookie: othersCookie })
    expect(stolen.map((m) => m.type)).toEqual([MessageType.Reject])
    expect(blockServer.stats).toMatchObject({ badCookies: 2, datagramsSent: 0 })
    // Control: the handshake's own cookie gets the data.
    const served = await attacker.request(server.address, peerRequest(CONTENT_HASH, 0, 1000))
    expect(served[0]).toMatchObject({ type: MessageType.Data, offset: 0, payload: data.subarray(0, 1000) })
    expect(blockServer.stats.badCookies).toBe(2)
  })

  it('survives 5% loss, 2% duplication and 3% reordering both ways, re-requesting only what was lost', async () => {
    const impair = (seed: number): ImpairmentInit => ({ seed, lossPercent: 5, duplicatePercent: 2, reorderPercent: 3 })
    const { link, data, proxy } = await rig({ toTarget: impair(11), fromTarget: impair(12) })
    const got = await fetchRange(link, 0, SIZE)
    expect(got.bytes.equals(data)).toBe(true)
    expect(got.repeats).toBe(0)
    expect(got.delivered).toBe(SIZE)

    // The impairment really happened, in both directions.
    const p = proxy.stats
    expect(p.toTarget.dropped).toBeGreaterThan(0)
    expect(p.fromTarget.dropped).toBeGreaterThan(0)
    expect(p.fromTarget.duplicated).toBeGreaterThan(0)
    expect(p.fromTarget.reordered).toBeGreaterThan(0)

    const s = link.stats
    expect(s.retransmits).toBeGreaterThan(0)
    expect(s.duplicates).toBeGreaterThan(0) // duplicates did arrive, and onData still never repeated
    // Only the missing blocks are asked for again: far less than the file.
    expect(s.retransmits * PAYLOAD_BYTES).toBeLessThan(0.2 * SIZE)
    expect(s.srttMs).toBeGreaterThan(0)
    expect(s.rtoMs).toBeGreaterThanOrEqual(MIN_RTO_MS)
  })

  it('a lost HELLO is sent again well before the initial RTO, and the first answer to any attempt completes the handshake', async () => {
    const { link, data, server } = await rig()
    const serve = server.onPeerRequest
    const hellos: number[] = []
    server.onPeerRequest = (msg, from) => {
      if (msg.type === MessageType.Hello) {
        hellos.push(performance.now())
        if (hellos.length === 1) return // the first HELLO is lost
      }
      serve?.(msg, from)
    }
    const got = await fetchRange(link, 0, 100_000)
    expect(got.bytes.equals(data.subarray(0, 100_000))).toBe(true)
    expect(hellos.length).toBe(2)
    expect((hellos[1] as number) - (hellos[0] as number)).toBeLessThan(INITIAL_RTO_MS * 0.8)
    // The answer was an RTT sample: the link's RTO is already a few RTTs, not the initial one.
    expect(link.stats.rtoMs).toBeLessThan(INITIAL_RTO_MS)
  })

  it('the first HELLO to a path slower than HELLO_COPY_AFTER_MS gets one copy, which is no retry; a fast path gets none', async () => {
    const count = (server: Endpoint): number[] => {
      const sent: number[] = []
      const serve = server.onPeerRequest
      server.onPeerRequest = (msg, from) => {
        if (msg.type === MessageType.Hello) sent.push(performance.now())
        serve?.(msg, from)
      }
      return sent
    }
    const isHello = (data: Buffer): boolean => { const d = tryDecode(data); return d.ok && d.msg.type === MessageType.Hello }
    // On the client: when each HELLO went out, and when the first answer reached the link.
    const timeHandshake = (client: Endpoint): { sent: number[], answeredAt?: number } => {
      const t: { sent: number[], answeredAt?: number } = { sent: [] }
      const send = client.send.bind(client)
      client.send = (data, to) => {
        const now = performance.now() // before decoding, which is slow the first time
        if (Buffer.isBuffer(data) && isHello(data)) t.sent.push(now)
        send(data, to)
      }
      const register = client.register.bind(client)
      client.register = (handler) => register((msg, from) => {
        if (msg.type === MessageType.HelloAck && t.answeredAt === undefined) t.answeredAt = performance.now()
        handler(msg, from)
      })
      return t
    }
    const fast = await rig()
    const fastHellos = count(fast.server)
    const handshake = timeHandshake(fast.client)
    await fetchRange(fast.link, 0, 10_000)
    // Loopback answers in well under a millisecond, so the copy is normally not sent. On a loaded
    // machine the event loop can stall past the copy's timer with the answer already waiting, and
    // then a copy is right; what must hold is the rule: a copy goes out no sooner than
    // HELLO_COPY_AFTER_MS after the first HELLO, and only while no answer has reached the link.
    expect(handshake.sent.length).toBe(fastHellos.length)
    const [first, copy] = handshake.sent as [number, number | undefined]
    if (copy !== undefined) {
      expect(copy - first).toBeGreaterThanOrEqual(HELLO_COPY_AFTER_MS - 1)
      expect(copy).toBeLessThan(handshake.answeredAt as number)
    }
    if ((handshake.answeredAt as number) - first < HELLO_COPY_AFTER_MS - 1) expect(fastHellos.length).toBe(1)
    expect(fastHellos.length).toBeLessThanOrEqual(2)

    const DELAY_MS = 4 * HELLO_COPY_AFTER_MS
    const slow = await rig({ fromTarget: { delayMs: DELAY_MS } })
    const slowHellos = count(slow.server)
    const slowHandshake = timeHandshake(slow.client)
    const got = await fetchRange(slow.link, 0, 10_000)
    expect(got.bytes.equals(slow.data.subarray(0, 10_000))).toBe(true)
    expect(slowHellos.length).toBe(2)
    // Timed where they were sent: the owner's clock would add its own delays in handling them.
    const [slowFirst, slowCopy] = slowHandshake.sent as [number, number]
    expect(slowCopy - slowFirst).toBeGreaterThanOrEqual(HELLO_COPY_AFTER_MS - 1)
    expect(slowCopy).toBeLessThan(slowHandshake.answeredAt as number)
    expect(slowCopy - slowFirst).toBeLessThan(DELAY_MS)
    // The RTT sample came from an answer: the RTO is a few RTTs, not a backed-off initial RTO.
    expect(slow.link.stats.srttMs).toBeGreaterThanOrEqual(DELAY_MS)
    expect(slow.link.stats.rtoMs).toBeLessThan(INITIAL_RTO_MS)
  })

  it('a REQUEST lost on the way is asked again 1/8 RTT after a later answer overtook it, not when the link goes quiet', async () => {
    // A 10 MB/s bottleneck keeps data flowing without a pause for the 0.3 s of the transfer: the link never goes quiet.
    const { link, data, server } = await rig({ fromTarget: { rateBytesPerSecond: 10e6 } })
    const DROPPED = 20
    // The owner never sees the 20th content REQUEST, sent with the pipeline full; it sees, in order, every offset asked of it.
    const serve = server.onPeerRequest
    const asked: number[] = []
    let contentRequests = 0
    let droppedOffset: number | undefined
    server.onPeerRequest = (msg, from) => {
      if (msg.type === MessageType.Request && msg.stream === Stream.Content) {
        if (++contentRequests === DROPPED) {
          droppedOffset = msg.offset
          return
        }
        asked.push(msg.offset)
      }
      serve?.(msg, from)
    }
    const got = await fetchRange(link, 0, SIZE)
    expect(got.bytes.equals(data)).toBe(true)
    expect(droppedOffset).toBeDefined()
    const again = asked.indexOf(droppedOffset as number)
    expect(again).toBeGreaterThan(0)
    // Asked again while fresh blocks were still being requested: the rest of the transfer did not stall behind it.
    const lastBlockOffset = Math.floor((SIZE - 1) / PAYLOAD_BYTES) * PAYLOAD_BYTES
    const lastFresh = asked.findIndex((offset, i) => i > 0 && offset <= lastBlockOffset && lastBlockOffset < offset + 64 * PAYLOAD_BYTES)
    expect(again).toBeLessThan(lastFresh)
    // Within a few requests of the drop (asked[] lacks the dropped one, so its successor is at DROPPED - 1).
    expect(again - (DROPPED - 1)).toBeLessThanOrEqual(16)
  })

  it('still delivers byte-identical data with 20% loss both ways', async () => {
    const { link, data, proxy } = await rig({ toTarget: { seed: 21, lossPercent: 20 }, fromTarget: { seed: 22, lossPercent: 20 } })
    const got = await fetchRange(link, 0, SIZE)
    expect(got.bytes.equals(data)).toBe(true)
    expect(got.repeats).toBe(0)
    expect(proxy.stats.fromTarget.dropped).toBeGreaterThan(0.1 * proxy.stats.fromTarget.seen)
    expect(link.stats.retransmits).toBeGreaterThan(0)
  })

  it('completes several concurrent fetches on one link, including unaligned ranges and the manifest', async () => {
    const { link, data, manifest } = await rig({ toTarget: { seed: 31, lossPercent: 2 }, fromTarget: { seed: 32, lossPercent: 2, reorderPercent: 2 } })
    const ranges: Array<[number, number]> = [[0, 700_000], [700_000, 1_000_001], [1_700_001, 12_345], [SIZE - 999_999, 999_999]]
    const results = await Promise.all([
      ...ranges.map(async ([offset, length]) => await fetchRange(link, offset, length)),
      fetchRange(link, 0, manifest.length, { stream: Stream.Manifest })
    ])
    for (const [i, [offset, length]] of ranges.entries()) {
      const r = results[i] as Fetched
      expect(r.bytes.equals(data.subarray(offset, offset + length)), `range ${offset}+${length}`).toBe(true)
      expect(r.repeats).toBe(0)
    }
    expect((results[4] as Fetched).bytes.equals(manifest)).toBe(true)
    expect(link.stats.inflight).toBe(0)
  })

  it('a lost first request is found by the answers to the next ones, not by an RTO: a request carries a batch, not the whole window', async () => {
    const { data, source } = await rig()
    let dropped = 0
    const owner = await Endpoint.open({
      host: LOCALHOST,
      // Drops the first content REQUEST only, as 5 % loss does to the start of many downloads.
      inboundFilter: {
        push: (d, deliver) => {
          const decoded = tryDecode(d)
          if (dropped === 0 && decoded.ok && decoded.msg.type === MessageType.Request && decoded.msg.stream === Stream.Content) {
            dropped++
            return
          }
          deliver(d)
        },
        close: () => {}
      }
    })
    closers.push(async () => await owner.close())
    serveBlocks(owner, source)
    const client = await Endpoint.open({ host: LOCALHOST })
    closers.push(async () => await client.close())
    // An RTO of 10 s: found by the RTO, the loss would hold the fetch far past the deadline below.
    const link = new PeerLink({ endpoint: client, remote: owner.address, datagramBytes: DATAGRAM_BYTES, rtt: { minRtoMs: 10_000 } })
    closers.push(() => link.close())
    const length = 40 * PAYLOAD_BYTES
    let deadline: NodeJS.Timeout | undefined
    const late = new Promise<never>((_resolve, reject) => { deadline = setTimeout(() => reject(new Error('fetch waited for the RTO')), 3_000) })
    try {
      expect((await Promise.race([fetchRange(link, 0, length), late])).bytes.equals(data.subarray(0, length))).toBe(true)
    } finally {
      clearTimeout(deadline)
    }
    expect(dropped).toBe(1)
    expect(link.stats.retransmits).toBeGreaterThan(0)
    expect(link.stats.timeouts).toBe(0)
  })

  it('answers that arrived while the event loop was busy past the RTO are read before anything is timed out', async () => {
    const { data, source } = await rig()
    const owner = await Endpoint.open({ host: LOCALHOST })
    closers.push(async () => await owner.close())
    serveBlocks(owner, source)
    const client = await Endpoint.open({ host: LOCALHOST })
    closers.push(async () => await client.close())
    const link = new PeerLink({ endpoint: client, remote: owner.address, datagramBytes: DATAGRAM_BYTES })
    closers.push(() => link.close())
    const blocks = 12
    // Once the owner has sent every answer, this process stalls for many RTOs, inside the callback
    // that read the requests: the answers wait unread on the client's socket, and the link's timer,
    // due long ago, runs before the next read of the sockets, as after a stall in a download.
    let sent = 0
    let stalledMs = 0
    const sendDatagrams = owner.sendDatagrams.bind(owner)
    owner.sendDatagrams = (datagrams, to) => {
      sendDatagrams(datagrams, to)
      sent += datagrams.length
      if (sent < blocks || stalledMs > 0) return
      const from = performance.now()
      while (performance.now() - from < 10 * Math.max(MIN_RTO_MS, link.stats.rtoMs)) { /* the stall */ }
      stalledMs = performance.now() - from
    }
    const got = await fetchRange(link, 0, blocks * PAYLOAD_BYTES)
    expect(got.bytes.equals(data.subarray(0, blocks * PAYLOAD_BYTES))).toBe(true)
    expect(stalledMs).toBeGreaterThan(0)
    expect(link.stats).toMatchObject({ timeouts: 0, retransmits: 0 })
  })

  it('an UNCHOKE counts only when it names the request the owner last refused as Choked, and only once', async () => {
    const { source } = await rig()
    const owner = await Endpoint.open({ host: LOCALHOST })
    closers.push(async () => await owner.close())
    const refused: Array<{ peer: string, txid: number }> = []
    const server = new BlockServer({
      endpoint: owner,
      source,
      maxReadsInFlight: 64,
      maxReadsPerPeer: MAX_SERVE_READS_PER_PEER,
      cookies: new AddressTokens(randomBytes(32), COOKIE_BYTES),
      gate: { allows: (peer, txid) => { refused.push({ peer, txid }); return false }, served: () => {} }
    })
    const client = await Endpoint.open({ host: LOCALHOST })
    closers.push(async () => await client.close())
    const link = new PeerLink({ endpoint: client, remote: owner.address, datagramBytes: DATAGRAM_BYTES })
    closers.push(() => link.close())
    const error = (await settle(fetchRange(link, 0, 5000))).error
    expect(error).toBeInstanceOf(PeerRejectedError)
    expect((error as PeerRejectedError).reason).toBe(RejectReason.Choked)
    // The fetch went out as several requests; the first refusal ended it, the owner names the last.
    expect(refused.length).toBeGreaterThan(1)
    const last = refused.at(-1) as { peer: string, txid: number }
    expect(last.peer).toBe(`${client.address.host}:${client.address.port}`)
    // A forged one (any other txid) is ignored.
    expect(link.acceptUnchoke((last.txid + 1) >>> 0)).toBe(false)
    // The owner's, sent over the wire, arrives at the endpoint's handler and is accepted once.
    const arrived = new Promise<number>((resolve) => { client.onUnchoke = (msg) => resolve(msg.txid) })
    server.sendUnchoke(last.peer, last.txid)
    const txid = await arrived
    expect(txid).toBe(last.txid)
    expect(server.stats.unchokes).toBe(1)
    expect(link.acceptUnchoke(txid)).toBe(true)
    expect(link.acceptUnchoke(txid)).toBe(false)
  })

  it('a datagram size one link has confirmed is used by the next link to the same host from its first fetch', async () => {
    const { data, source } = await rig()
    const top = Math.max(...DATAGRAM_PROBE_LADDER)
    const pathSize = new SharedPathSize(DATAGRAM_BYTES)
    const linkTo = async (): Promise<PeerLink> => {
      const owner = await Endpoint.open({ host: LOCALHOST })
      closers.push(async () => await owner.close())
      serveBlocks(owner, source)
      const link = new PeerLink({ endpoint: (await rig()).client, remote: owner.address, datagramBytes: DATAGRAM_BYTES, maxDatagramBytes: top, pathSize })
      closers.push(() => link.close())
      return link
    }
    const first = await linkTo()
    expect((await fetchRange(first, 0, SIZE)).bytes.equals(data)).toBe(true)
    expect(first.stats.datagramBytes).toBe(top)
    expect(pathSize.confirmed).toBe(top)
    const second = await linkTo()
    const piece = 16 * 1024
    expect((await fetchRange(second, 0, piece)).bytes.equals(data.subarray(0, piece))).toBe(true)
    expect(second.stats.datagramBytes).toBe(top)
    expect(second.stats.datagramsReceived).toBe(1)
    expect(second.stats.probesSent).toBe(0)
  })

  it('probes every larger size at once: one fetch at the base size takes a link to the top', async () => {
    const { source } = await rig()
    const top = Math.max(...DATAGRAM_PROBE_LADDER)
    const link = await probingLink(source)
    // Enough datagrams for one round of probes (PROBE_AFTER_DATAGRAMS), not for a second, and a
    // range long enough to carry the largest probe.
    await fetchRange(link, 0, Math.max((PROBE_AFTER_DATAGRAMS + 8) * PAYLOAD_BYTES, top))
    await waitFor('the top size confirmed', () => link.stats.datagramBytes === top, 2_000, 5)
    expect(link.stats.probesSent).toBe(DATAGRAM_PROBE_LADDER.filter((size) => size > DATAGRAM_BYTES).length)
  })

  it('a probe the owner refuses as Choked is not a lost probe: the size is tried again later, and an UNCHOKE naming it counts', async () => {
    const { source } = await rig()
    const top = Math.max(...DATAGRAM_PROBE_LADDER)
    const owner = await Endpoint.open({ host: LOCALHOST })
    closers.push(async () => await owner.close())
    serveBlocks(owner, source)
    // The owner refuses every probe (a request for datagrams above the base size) until told to stop.
    const serve = owner.onPeerRequest
    let refusing = true
    const refusedTop: number[] = []
    owner.onPeerRequest = (msg, from) => {
      if (refusing && msg.type === MessageType.Request && msg.datagramBytes > DATAGRAM_BYTES) {
        if (msg.datagramBytes === top) refusedTop.push(msg.txid)
        owner.send(encode({ type: MessageType.Reject, txid: msg.txid, reason: RejectReason.Choked }), from)
        return
      }
      serve?.(msg, from)
    }
    const link = new PeerLink({ endpoint: (await rig()).client, remote: owner.address, datagramBytes: DATAGRAM_BYTES, maxDatagramBytes: top })
    closers.push(() => link.close())
    // Fetches at the base size until the top size has been refused MAX_PROBES times: left to time
    // out, as many refusals would have ended its probing for good.
    const deadline = performance.now() + 5_000
    while (refusedTop.length < MAX_PROBES) {
      if (performance.now() > deadline) throw new Error(`only ${refusedTop.length} probes of ${top} B refused in 5 s`)
      await fetchRange(link, 0, top)
    }
    expect(link.stats.datagramBytes).toBe(DATAGRAM_BYTES)
    // The owner's UNCHOKE names the last request it refused, here a probe: the link takes it, once
    // the refusal has arrived (it may still be on its way when the fetch ends).
    const last = refusedTop.at(-1) as number
    await waitFor('an UNCHOKE naming the refused probe accepted', () => link.acceptUnchoke(last), 2_000, 5)
    refusing = false
    await fetchRange(link, 0, top)
    await waitFor('the top size confirmed once the owner serves probes', () => link.stats.datagramBytes === top, 2_000, 5)
  })

  it('a fetch begun at the base size, still running after the link probed up, is counted in bytes: the window does not balloon', async () => {
    const { data, source } = await rig()
    const top = Math.max(...DATAGRAM_PROBE_LADDER)
    const cc = new NewReno()
    let link: PeerLink | undefined
    // What the window is credited with, in bytes at the link's datagram size when credited.
    let credited = 0
    const onDelivered = cc.onDelivered.bind(cc)
    cc.onDelivered = (datagrams: number) => {
      credited += datagrams * (link?.stats.datagramBytes ?? DATAGRAM_BYTES)
      onDelivered(datagrams)
    }
    link = await probingLink(source, undefined, cc)
    // One fetch of 3 MB at 1200 B: it keeps its blocks after the probes confirm 65000 B.
    const got = await fetchRange(link, 0, SIZE)
    expect(got.bytes.equals(data)).toBe(true)
    expect(link.stats.datagramBytes).toBe(top)
    // Each 1200 B datagram counted as one of 65000 B credited the window with 54 times the bytes.
    // (What a probe's answer delivered is not credited: probes ride outside the window.)
    expect(credited).toBeGreaterThan(0.9 * SIZE)
    expect(credited).toBeLessThan(1.1 * SIZE * DATAGRAM_BYTES / PAYLOAD_BYTES)
    expect(link.stats.inflight).toBe(0)
  })

  it('a probe answer is kept: the blocks of its fetch it covers are delivered, not fetched again', async () => {
    const { data, source } = await rig()
    // A window of 4 datagrams, so the piece is still mostly unasked for when the probes come back.
    const window = 4
    const link = await probingLink(source, undefined, new NewReno({ initialCwnd: window, minCwnd: window, maxCwnd: window }))
    // One-block fetches, too short to carry a probe, then a 16 KiB piece: every probe (up to 16401
    // bytes) asks for that piece's start, and the 16401 one holds all of it. A window's worth more
    // than PROBE_AFTER_DATAGRAMS, so the piece's first request leaves after the probes.
    const smallCount = PROBE_AFTER_DATAGRAMS + window
    const small = Array.from({ length: smallCount }, async (_, i) => await fetchRange(link, i * PAYLOAD_BYTES, PAYLOAD_BYTES))
    const pieceAt = smallCount * PAYLOAD_BYTES
    const piece = fetchRange(link, pieceAt, 16 * 1024)
    await Promise.all(small)
    const got = await piece
    expect(got.bytes.equals(data.subarray(pieceAt, pieceAt + 16 * 1024))).toBe(true)
    expect(got.repeats).toBe(0)
    // One request each for the small fetches and at most a window's for the piece before the
    // probe's answer completed it. By requests alone, at this window, it takes about 14.
    expect(link.stats.requestsSent).toBeLessThanOrEqual(smallCount + window)
  })

  it('on a path that drops datagrams above 8 KiB the search stops below it, and data still arrives whole', async () => {
    const { data, source } = await rig()
    const mtu = 8192
    const link = await probingLink(source, { maxDatagramBytes: mtu })
    expect((await fetchRange(link, 0, SIZE)).bytes.equals(data)).toBe(true)
    const best = Math.max(...DATAGRAM_PROBE_LADDER.filter((size) => size <= mtu))
    expect(link.stats.datagramBytes).toBe(best)
    expect((await fetchRange(link, 0, SIZE)).bytes.equals(data)).toBe(true)
    expect(link.stats.datagramBytes).toBe(best)
  })

  it('fetches queued before the datagram size grew start at the grown size, not the one they were queued at', async () => {
    const { data, source } = await rig()
    const top = Math.max(...DATAGRAM_PROBE_LADDER)
    const link = await probingLink(source)
    // A download queues its window of pieces at once, at the base size: 48 pieces of 64 KiB.
    const piece = 64 * 1024
    const pieces = SIZE / piece
    const got = await Promise.all(Array.from({ length: pieces }, async (_, i) => await fetchRange(link, i * piece, piece)))
    got.forEach((f, i) => expect(f.bytes.equals(data.subarray(i * piece, (i + 1) * piece)), `piece ${i}`).toBe(true))
    expect(link.stats.datagramBytes).toBeGreaterThan(DATAGRAM_BYTES)
    // All at the base size this takes SIZE / PAYLOAD_BYTES (2659) datagrams; here about 630.
    expect(link.stats.datagramsReceived).toBeLessThan(SIZE / PAYLOAD_BYTES / 3)
  })

  it('a 16 KiB piece fits one datagram at a probed size: the ladder carries power-of-two payloads', () => {
    const sizes = DATAGRAM_PROBE_LADDER.filter((size) => size > 1472 && size < Math.max(...DATAGRAM_PROBE_LADDER))
    expect(sizes.length).toBeGreaterThan(0)
    for (const size of sizes) expect(Math.log2(size - DATA_HEADER_BYTES) % 1, `${size}`).toBe(0)
    expect(sizes).toContain(16 * 1024 + DATA_HEADER_BYTES)
  })

  it('rejects a range outside the resource or unknown content with PeerRejectedError, and the link keeps working', async () => {
    const { link, data } = await rig()
    const outside = await settle(fetchRange(link, SIZE - 100, 200))
    expect(outside.error).toBeInstanceOf(PeerRejectedError)
    expect((outside.error as PeerRejectedError).reason).toBe(RejectReason.OutOfRange)
    const unknown = await settle(fetchRange(link, 0, 100, { contentHash: OTHER_HASH }))
    expect(unknown.error).toBeInstanceOf(PeerRejectedError)
    expect((unknown.error as PeerRejectedError).reason).toBe(RejectReason.UnknownContent)
    const manifestPastEnd = await settle(fetchRange(link, 0, 32 * 12 + 1, { stream: Stream.Manifest }))
    expect((manifestPastEnd.error as PeerRejectedError).reason).toBe(RejectReason.OutOfRange)

    const ok = await fetchRange(link, SIZE - 100, 100)
    expect(ok.bytes.equals(data.subarray(SIZE - 100))).toBe(true)
    expect(link.stats.inflight).toBe(0)
  })

  it('fails with PeerTimeoutError soon after the server goes away mid-transfer', async () => {
    const idleTimeoutMs = 1_000
    const { link, server } = await rig({ idleTimeoutMs })
    let closedAt: number | undefined
    const result = settle(fetchRange(link, 0, SIZE, {
      onData: (delivered) => {
        if (closedAt === undefined && delivered >= SIZE / 3) {
          closedAt = performance.now()
          void server.close()
        }
      }
    }))
    const { error, at } = await result
    expect(closedAt).toBeDefined()
    expect(error).toBeInstanceOf(PeerTimeoutError)
    const waited = at - (closedAt as number)
    expect(waited).toBeGreaterThanOrEqual(idleTimeoutMs - 100)
    expect(waited).toBeLessThan(5_000)
    expect(link.stats.inflight).toBe(0)
  })

  it('an AbortSignal aborts a fetch promptly, and no data is delivered to it afterwards', async () => {
    const { link, data } = await rig({ fromTarget: { seed: 41, delayMs: 5 } })
    const abort = new AbortController()
    let abortedAt: number | undefined
    let afterAbort = 0
    const result = settle(fetchRange(link, 0, SIZE, {
      signal: abort.signal,
      onData: (delivered) => {
        if (abortedAt !== undefined) afterAbort++
        else if (delivered >= 200_000) {
          abortedAt = performance.now()
          abort.abort(new Error('user cancelled'))
        }
      }
    }))
    const { error, at } = await result
    expect((error as Error).message).toBe('user cancelled')
    expect(at - (abortedAt as number)).toBeLessThan(100)
    expect(afterAbort).toBe(0)

    // An already-aborted signal rejects at once, and the link stays usable.
    await expect(link.fetch({ contentHash: CONTENT_HASH, stream: Stream.Content, offset: 0, length: 10, signal: AbortSignal.abort(), onData: () => {} }))
      .rejects.toMatchObject({ name: 'AbortError' })
    const ok = await fetchRange(link, 1000, 50_000)
    expect(ok.bytes.equals(data.subarray(1000, 51_000))).toBe(true)
    expect(afterAbort).toBe(0)
  })
})

describe('BlockServer per-peer limit', () => {
  const BIG = 5_000
  const STALLED = 2

  /**
   * One peer (with a valid cookie) starts STALLED reads that hang, then sends 30 more requests of
   * BIG bytes, which the per-peer cap must drop. The reads are then released, and another peer asks
   * for 10 000 bytes. Resolves with what that peer got (or the error if it got nothing).
   */
  async function floodOnePeer (
    uploadLimiter: TokenBucket | undefined, caps: { maxReadsPerPeer: number, maxBytesInFlight?: number, dropped: number } = { maxReadsPerPeer: STALLED, dropped: 30 }
  ): Promise<{ server: BlockServer, attacker: WireClient, honest: Array<DataMsg | RejectMsg> | Error }> {
    const data = randomBytes(1_000_000)
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => { release = resolve })
    let stall = true
    const source: BlockSource = {
      open: (hash) => hash.equals(CONTENT_HASH)
        ? { size: data.length, read: async (offset, length) => { if (stall) await gate; return data.subarray(offset, offset + length) } }
        : undefined
    }
    const endpoint = await Endpoint.open({ host: LOCALHOST })
    closers.push(async () => await endpoint.close())
    const server = new BlockServer({
      endpoint, source, maxReadsInFlight: 64, maxReadsPerPeer: caps.maxReadsPerPeer, maxBytesInFlight: caps.maxBytesInFlight, uploadLimiter, cookies: new AddressTokens(randomBytes(32), COOKIE_BYTES)
    })
    const attacker = await WireClient.open()
    closers.push(async () => await attacker.close())
    const cookie = await attacker.hello(endpoint.address)
    const mark = attacker.mark()
    for (let i = 0; i < STALLED; i++) {
      attacker.send(encode({ type: MessageType.Request, txid: 1000 + i, cookie, ...peerRequest(CONTENT_HASH, i * 1000, 1000) }), endpoint.address)
    }
    for (let i = 0; i < 30; i++) {
      attacker.send(encode({ type: MessageType.Request, txid: 2000 + i, cookie, ...peerRequest(CONTENT_HASH, 100_000 + i * BIG, BIG) }), endpoint.address)
    }
    await waitFor('the server to have seen all 32 requests', () => server.stats.requests === STALLED + 30, 5_000, 5)
    // Everything past the per-peer cap was dropped (by the cap, or by the queue limit once it looks full).
    expect(server.stats.dropped).toBe(caps.dropped)
    stall = false
    release()
    const answered = await attacker.waitForDatagram(() => attacker.since(mark).filter((d) => d.msg?.type === MessageType.Data).length >= STALLED, mark, 5_000)
    expect(answered).toBeDefined()
    const honest = await WireClient.open()
    closers.push(async () => await honest.close())
    const blocks = Math.ceil(10_000 / PAYLOAD_BYTES)
    const got = await honest.request(endpoint.address, peerRequest(CONTENT_HASH, 500_000, 10_000), { timeoutMs: 3_000, settle: (r) => r.length === blocks })
      .catch((err: unknown) => err as Error)
    if (!(got instanceof Error)) {
      const bytes = Buffer.concat(got.map((m) => m.type === MessageType.Data ? m.payload : Buffer.alloc(0)))
      expect(bytes.equals(data.subarray(500_000, 510_000))).toBe(true)
    }
    return { server, attacker, honest: got }
  }

  it('one peer cannot hold more than maxReadsPerPeer reads; what it sends beyond is dropped, and others are still served', async () => {
    const { honest, attacker } = await floodOnePeer(undefined)
    expect(honest).not.toBeInstanceOf(Error)
    // The attacker got exactly its STALLED answers, nothing for the dropped requests.
    expect(attacker.log.filter((d) => d.msg?.type === MessageType.Data)).toHaveLength(STALLED)
  })

  it('answers held in memory are capped in bytes too: past maxBytesInFlight a request is dropped, and others are served once it drains', async () => {
    // Room for the stalled reads and three of the big ones; the other 27 are dropped.
    const { honest, attacker } = await floodOnePeer(undefined, { maxReadsPerPeer: 100, maxBytesInFlight: STALLED * 1000 + 3 * BIG, dropped: 27 })
    expect(honest).not.toBeInstanceOf(Error)
    await waitFor('the admitted answers', () => attacker.log.filter((d) => d.msg?.type === MessageType.Data).length === STALLED + 3 * Math.ceil(BIG / PAYLOAD_BYTES), 5_000, 5)
  })

  /**
   * A request dropped by the per-peer cap must not count toward the upload queue: if it did, any
   * peer could inflate the queue estimate with a burst over the cap until the owner, under an
   * upload limit, dropped everyone's requests for good.
   */
  it('requests dropped by the per-peer cap leave the upload queue untouched, so other peers are still served', async () => {
    const { honest } = await floodOnePeer(new TokenBucket(100_000, 100_000))
    expect(honest).not.toBeInstanceOf(Error)
  })

  /** An owner of 200 kB of random content that uploads at 50 kB/s with a 1 kB burst. */
  async function slowOwner (maxReadsPerPeer: number): Promise<{ endpoint: Endpoint, server: BlockServer }> {
    const data = randomBytes(200_000)
    const source: BlockSource = {
      open: (hash) => hash.equals(CONTENT_HASH) ? { size: data.length, read: async (offset, length) => data.subarray(offset, offset + length) } : undefined
    }
    const endpoint = await Endpoint.open({ host: LOCALHOST })
    closers.push(async () => await endpoint.close())
    const server = new BlockServer({
      endpoint, source, maxReadsInFlight: 64, maxReadsPerPeer, uploadLimiter: new TokenBucket(50_000, 1_000), cookies: new AddressTokens(randomBytes(32), COOKIE_BYTES)
    })
    return { endpoint, server }
  }

  /**
   * Under an upload limit an answer can wait longer than the requester's RTO; its re-request for
   * the same bytes must not make the owner send them twice, which spends the upload it rations.
   * A re-request for bytes whose answer has already gone out is served again (it was lost).
   */
  it('a re-request for bytes still queued behind the upload limit is not answered twice', async () => {
    // 50 kB/s with a 1 kB burst: the first 10 000-byte answer takes 200 ms, the second waits behind it.
    const { endpoint, server } = await slowOwner(8)
    const peer = await WireClient.open()
    closers.push(async () => await peer.close())
    const cookie = await peer.hello(endpoint.address)
    const mark = peer.mark()
    const ask = (txid: number, offset: number, length: number): void => {
      peer.send(encode({ type: MessageType.Request, txid, cookie, ...peerRequest(CONTENT_HASH, offset, length) }), endpoint.address)
    }
    ask(1, 0, 10_000)
    ask(2, 10_000, 10_000)
    // The second request's answer has not begun: asking again for all or part of it is dropped.
    ask(3, 10_000, 10_000)
    ask(4, 10_000 + PAYLOAD_BYTES, PAYLOAD_BYTES)
    await waitFor('the server to have seen the four requests', () => server.stats.requests === 4, 5_000, 5)
    expect(server.stats.alreadyQueued).toBe(2)
    const blocks = Math.ceil(10_000 / PAYLOAD_BYTES)
    await waitFor('both answers', () => peer.since(mark).filter((d) => d.msg?.type === MessageType.Data).length >= 2 * blocks, 5_000, 5)
    // Once sent, the same bytes are served again: a re-request then means they were lost.
    ask(5, 10_000, PAYLOAD_BYTES)
    await waitFor('the answer to the later re-request', () => peer.since(mark).some((d) => d.msg?.type === MessageType.Data && d.msg.txid === 5), 5_000, 5)
    const answered = peer.since(mark).filter((d) => d.msg?.type === MessageType.Data).map((d) => (d.msg as DataMsg).txid)
    expect(answered.filter((t) => t === 3 || t === 4)).toEqual([])
    expect(answered.filter((t) => t === 2)).toHaveLength(blocks)
    expect(server.stats.alreadyQueued).toBe(2)
  })

  it('a fetch given up on sends CANCEL, and the owner drops the answers it still had queued for it', async () => {
    // 50 kB/s: 100 000 bytes would take 2 s to send.
    const { endpoint, server } = await slowOwner(64)
    const client = await Endpoint.open({ host: LOCALHOST })
    closers.push(async () => await client.close())
    const link = new PeerLink({ endpoint: client, remote: endpoint.address, datagramBytes: DATAGRAM_BYTES })
    closers.push(() => link.close())
    const ac = new AbortController()
    const fetched = settle(fetchRange(link, 0, 100_000, { signal: ac.signal, onData: (n) => { if (n >= 10_000) ac.abort() } }))
    expect((await fetched).error).toBeDefined()
    const cancels = link.stats.cancelsSent
    expect(cancels).toBeGreaterThan(0)
    // Some of them may name answers sent in full already, on their way: those have nothing to drop.
    await waitFor('the owner to take a cancel', () => server.stats.cancelled > 0, 5_000, 5)
    expect(server.stats.cancelled).toBeLessThanOrEqual(cancels)
    // What was queued for the fetch is not sent: the owner goes quiet well short of the 100 000 bytes.
    let sent = -1
    await waitFor('the owner to go quiet', () => {
      const quiet = server.stats.contentBytesSent === sent
      sent = server.stats.contentBytesSent
      return quiet
    }, 5_000, 200)
    expect(sent).toBeLessThan(50_000)
  })
})
