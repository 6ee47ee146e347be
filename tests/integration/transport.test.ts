import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { MIN_RTO_MS } from '../../configs.js'
import { DATA_HEADER_BYTES, RejectReason, Stream } from '../../src/messages/index.js'
import { BlockServer, type BlockSource } from '../../src/transport/block-server.js'
import { Endpoint } from '../../src/transport/endpoint.js'
import { PeerRejectedError, PeerTimeoutError } from '../../src/transport/errors.js'
import type { ImpairmentInit } from '../../src/transport/impairment.js'
import { PeerLink } from '../../src/transport/peer-link.js'
import { UdpProxy } from '../../src/transport/udp-proxy.js'
import { LOCALHOST } from '../helpers/wire.js'

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
  const blockServer = new BlockServer({ endpoint: server, source, maxReadsInFlight: 64 })
  const proxy = await UdpProxy.start({ target: server.address, toTarget: init.toTarget, fromTarget: init.fromTarget })
  closers.push(async () => await proxy.close())
  const client = await Endpoint.open({ host: LOCALHOST })
  closers.push(async () => await client.close())
  const link = new PeerLink({ endpoint: client, remote: proxy.address, datagramBytes: DATAGRAM_BYTES, idleTimeoutMs: init.idleTimeoutMs })
  closers.push(() => link.close())
  return { data, manifest, server, blockServer, proxy, client, link }
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
