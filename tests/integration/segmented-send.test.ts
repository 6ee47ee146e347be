import dgram from 'node:dgram'
import { randomBytes } from 'node:crypto'
import { constants, networkInterfaces } from 'node:os'
import { afterEach, describe, expect, it } from 'vitest'
import { COOKIE_BYTES, MAX_SEGMENTS_PER_SEND, MAX_SERVE_READS_PER_PEER } from '../../configs.js'
import { DATA_HEADER_BYTES, Stream } from '../../src/messages/index.js'
import { AddressTokens } from '../../src/transport/auth.js'
import { BlockServer } from '../../src/transport/block-server.js'
import { Endpoint } from '../../src/transport/endpoint.js'
import { PeerLink } from '../../src/transport/peer-link.js'
import { nativeAddon, type SendSegments } from '../../src/transport/native-addon.js'
import { waitFor } from '../helpers/processes.js'
import { LOCALHOST } from '../helpers/wire.js'

const closers: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close()
})

/** A plain socket that keeps every datagram it receives, in arrival order. */
async function collector (type: 'udp4' | 'udp6' = 'udp4', host = LOCALHOST): Promise<{ port: number, got: Buffer[] }> {
  const socket = dgram.createSocket(type)
  const got: Buffer[] = []
  socket.on('message', (msg) => got.push(msg))
  await new Promise<void>((resolve) => socket.bind(0, host, resolve))
  // A run lands all at once: the default 208 KB buffer holds about 90 of these datagrams.
  socket.setRecvBufferSize(4 * 1024 * 1024)
  closers.push(async () => await new Promise<void>((resolve) => socket.close(() => resolve())))
  return { port: socket.address().port, got }
}

async function endpoint (init: Parameters<typeof Endpoint.open>[0] = {}): Promise<Endpoint> {
  const ep = await Endpoint.open({ host: LOCALHOST, ...init })
  closers.push(async () => await ep.close())
  return ep
}

/** Datagrams of the given sizes, each a 4-byte index then random bytes, split into a header and a body like DATA. */
function datagrams (sizes: number[]): Buffer[][] {
  return sizes.map((size, i) => {
    const d = randomBytes(size)
    d.writeUInt32BE(i, 0)
    return [d.subarray(0, DATA_HEADER_BYTES), d.subarray(DATA_HEADER_BYTES)]
  })
}

async function nextTurn (): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve))
}

const NATIVE_EXPECTED = process.platform === 'linux' && process.env.UDPTORRENT_NO_NATIVE !== '1'
/** A machine (or container) with IPv6 turned off has no ::1 to send to. */
const HAS_IPV6_LOOPBACK = Object.values(networkInterfaces()).some((addrs) => addrs?.some((a) => a.address === '::1') === true)

describe('segmented sends (UDP GSO)', () => {
  it('the addon is built on Linux (npm install builds it; UDPTORRENT_NO_NATIVE=1 opts out)', () => {
    expect(nativeAddon().sendSegments !== undefined).toBe(NATIVE_EXPECTED)
  })

  it.runIf(NATIVE_EXPECTED)('a run arrives as separate datagrams, byte for byte and in order, and takes one call per run', async () => {
    const sink = await collector()
    const ep = await endpoint({ segmenter: { burstDatagrams: 1000 } })
    // Two runs of MAX_SEGMENTS_PER_SEND 900-byte datagrams, and a third closed by a shorter one.
    const sent = datagrams([...Array(2 * MAX_SEGMENTS_PER_SEND + 5).fill(900), 700])
    ep.sendDatagrams(sent, { host: LOCALHOST, port: sink.port })
    await waitFor('every datagram', () => sink.got.length === sent.length, 5_000)
    expect(sink.got.map((d) => d.readUInt32BE(0))).toEqual(sent.map((_, i) => i))
    sink.got.forEach((d, i) => expect(d.equals(Buffer.concat(sent[i] as Buffer[]))).toBe(true))
    expect(ep.segmentation).toMatchObject({ runs: 3, datagrams: sent.length, fallbacks: 0, overBurst: 0, disabledBy: undefined })
    expect(ep.stats.datagramsOut).toBe(sent.length)
    expect(ep.stats.bytesOut).toBe(sent.reduce((n, d) => n + Buffer.concat(d).length, 0))
  })

  it.runIf(NATIVE_EXPECTED)('a run stops at 64 KB of payload before it reaches the datagram count', async () => {
    const sink = await collector()
    const ep = await endpoint({ segmenter: { burstDatagrams: 1000 } })
    // 54 of 1200 bytes fit in 65507: runs of 54 and 6.
    const sent = datagrams(Array(60).fill(1200))
    ep.sendDatagrams(sent, { host: LOCALHOST, port: sink.port })
    await waitFor('every datagram', () => sink.got.length === sent.length, 5_000)
    sink.got.forEach((d, i) => expect(d.equals(Buffer.concat(sent[i] as Buffer[]))).toBe(true))
    expect(ep.segmentation).toMatchObject({ runs: 2, datagrams: 60 })
  })

  it.runIf(NATIVE_EXPECTED)('a shorter datagram ends a run, a longer one starts the next, and a lone one goes on its own', async () => {
    const sink = await collector()
    const ep = await endpoint()
    const sizes = [1200, 1200, 800, 1472, 1472, 1472, 900, 100]
    const sent = datagrams(sizes)
    ep.sendDatagrams(sent, { host: LOCALHOST, port: sink.port })
    await waitFor('every datagram', () => sink.got.length === sent.length, 5_000)
    expect(sink.got.map((d) => d.length)).toEqual(sizes)
    sink.got.forEach((d, i) => expect(d.equals(Buffer.concat(sent[i] as Buffer[]))).toBe(true))
    // [1200 1200 800] [1472 1472 1472 900] and 100 alone.
    expect(ep.segmentation).toMatchObject({ runs: 2, datagrams: 7 })
    expect(ep.stats.datagramsOut).toBe(8)
  })

  it.runIf(NATIVE_EXPECTED && HAS_IPV6_LOOPBACK)('runs reach an IPv6 peer, and an IPv4 peer of a dual-stack socket', async () => {
    const six = await collector('udp6', '::1')
    const four = await collector()
    const ep = await endpoint({ host: '::' })
    const sent = datagrams(Array(10).fill(1200))
    ep.sendDatagrams(sent, { host: '::1', port: six.port })
    ep.sendDatagrams(sent, { host: LOCALHOST, port: four.port })
    await waitFor('both peers', () => six.got.length === 10 && four.got.length === 10, 5_000)
    expect(six.got.map((d) => d.readUInt32BE(0))).toEqual(four.got.map((d) => d.readUInt32BE(0)))
    expect(ep.segmentation).toMatchObject({ runs: 2, datagrams: 20, fallbacks: 0 })
  })

  it.runIf(NATIVE_EXPECTED)('a run does not overtake a datagram sent one call each just before it', async () => {
    const sink = await collector()
    const ep = await endpoint()
    // dgram hands its datagrams to the kernel a tick later; a run would go at once.
    ep.sendDatagrams(datagrams([100]), { host: LOCALHOST, port: sink.port })
    ep.sendDatagrams(datagrams(Array(6).fill(1200)), { host: LOCALHOST, port: sink.port })
    await waitFor('every datagram', () => sink.got.length === 7, 5_000)
    expect(sink.got.map((d) => d.length)).toEqual([100, 1200, 1200, 1200, 1200, 1200, 1200])
    await nextTurn()
    ep.sendDatagrams(datagrams(Array(6).fill(1200)), { host: LOCALHOST, port: sink.port })
    await waitFor('the next run', () => sink.got.length === 13, 5_000)
    expect(ep.segmentation?.runs).toBe(1)
  })

  it.runIf(NATIVE_EXPECTED)('past the burst, runs go one call per datagram until it refills', async () => {
    const sink = await collector()
    // 10 datagrams of burst, refilled at one per second: the second and third runs are over it.
    const ep = await endpoint({ segmenter: { burstDatagrams: 10, datagramsPerMs: 0.001 } })
    for (let i = 0; i < 3; i++) {
      ep.sendDatagrams(datagrams(Array(6).fill(1200)), { host: LOCALHOST, port: sink.port })
      await nextTurn()
    }
    await waitFor('every datagram', () => sink.got.length === 18, 5_000)
    expect(sink.got.map((d) => d.readUInt32BE(0))).toEqual([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5])
    expect(ep.segmentation).toMatchObject({ runs: 1, datagrams: 6, overBurst: 2 })
    expect(ep.stats.datagramsOut).toBe(18)
  })

  describe('every refusal still delivers the datagrams, one call each', () => {
    async function withStandIn (result: number): Promise<{ ep: Endpoint, sink: { port: number, got: Buffer[] }, calls: () => number }> {
      let calls = 0
      const standIn: SendSegments = () => { calls++; return result }
      const sink = await collector()
      const ep = await endpoint({ segmenter: { sendSegments: standIn } })
      return { ep, sink, calls: () => calls }
    }

    /** Two runs of six to the sink, a turn of the loop apart (so the first's fallback has been sent). */
    async function sendTwoRuns (ep: Endpoint, sink: { port: number, got: Buffer[] }): Promise<void> {
      ep.sendDatagrams(datagrams(Array(6).fill(1200)), { host: LOCALHOST, port: sink.port })
      await nextTurn()
      ep.sendDatagrams(datagrams(Array(6).fill(1200)), { host: LOCALHOST, port: sink.port })
      await waitFor('every datagram', () => sink.got.length === 12, 5_000)
      expect(ep.stats.datagramsOut).toBe(12)
    }

    it.each(['EAGAIN', 'ENETUNREACH'] as const)('%s (a full socket buffer, an unreachable network) concerns that run only', async (name) => {
      const { ep, sink, calls } = await withStandIn(-constants.errno[name])
      await sendTwoRuns(ep, sink)
      expect(calls()).toBe(2)
      expect(ep.segmentation).toMatchObject({ runs: 0, fallbacks: 2, disabledBy: undefined })
    })

    it('a destination whose route refuses the segment size (EINVAL) is not tried again; others are', async () => {
      const { ep, sink, calls } = await withStandIn(-constants.errno.EINVAL)
      ep.sendDatagrams(datagrams(Array(6).fill(1200)), { host: LOCALHOST, port: sink.port })
      await nextTurn() // the fallback's sends are made: runs may go again
      ep.sendDatagrams(datagrams(Array(6).fill(1200)), { host: LOCALHOST, port: sink.port })
      expect(calls()).toBe(1)
      await waitFor('every datagram', () => sink.got.length === 12, 5_000)
      // Smaller datagrams to it are still tried, and so is another host.
      await nextTurn()
      ep.sendDatagrams(datagrams(Array(3).fill(1000)), { host: LOCALHOST, port: sink.port })
      expect(calls()).toBe(2)
      await nextTurn()
      ep.sendDatagrams(datagrams(Array(3).fill(1200)), { host: '127.0.0.2', port: sink.port })
      expect(calls()).toBe(3)
      expect(ep.segmentation?.disabledBy).toBeUndefined()
    })

    it('a kernel without UDP_SEGMENT (ENOPROTOOPT) turns runs off for the socket', async () => {
      const { ep, sink, calls } = await withStandIn(-constants.errno.ENOPROTOOPT)
      await sendTwoRuns(ep, sink)
      expect(calls()).toBe(1)
      expect(ep.segmentation?.disabledBy).toBe('ENOPROTOOPT')
    })

    it('--no-udp-gso: no runs at all', async () => {
      const sink = await collector()
      const ep = await endpoint({ segmentation: false })
      ep.sendDatagrams(datagrams(Array(6).fill(1200)), { host: LOCALHOST, port: sink.port })
      await waitFor('every datagram', () => sink.got.length === 6, 5_000)
      expect(ep.segmentation).toBeUndefined()
    })
  })

  it.runIf(NATIVE_EXPECTED)('an owner answers a fetch in runs, and every block arrives intact', async () => {
    const data = randomBytes(2 * 1024 * 1024 + 333)
    const contentHash = Buffer.alloc(32, 0x5e)
    const owner = await endpoint()
    void new BlockServer({
      endpoint: owner,
      source: { open: (hash, stream) => hash.equals(contentHash) && stream === Stream.Content ? { size: data.length, read: async (offset, length) => data.subarray(offset, offset + length) } : undefined },
      maxReadsInFlight: 64,
      maxReadsPerPeer: MAX_SERVE_READS_PER_PEER,
      cookies: new AddressTokens(randomBytes(32), COOKIE_BYTES)
    })
    const client = await endpoint()
    const link = new PeerLink({ endpoint: client, remote: owner.address, datagramBytes: 1200 })
    closers.push(() => link.close())
    const got = Buffer.alloc(data.length)
    await link.fetch({ contentHash, stream: Stream.Content, offset: 0, length: data.length, onData: (offset, payload) => { payload.copy(got, offset) } })
    expect(got.equals(data)).toBe(true)
    expect(owner.segmentation?.runs).toBeGreaterThan(0)
  })
})
