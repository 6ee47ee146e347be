import dgram from 'node:dgram'
import { randomBytes } from 'node:crypto'
import { constants, networkInterfaces } from 'node:os'
import { afterEach, describe, expect, it } from 'vitest'
import { MAX_DATAGRAM_BYTES, RECEIVE_BATCH_DATAGRAMS } from '../../configs.js'
import { encode, encodeDataHeader, MessageType, Stream, type DataMsg } from '../../src/messages/index.js'
import type { RecvBatch } from '../../src/transport/native-addon.js'
import { nativeAddon, socketFd } from '../../src/transport/native-addon.js'
import { Endpoint, type DatagramFilter, type EndpointInit, type RemoteAddress } from '../../src/transport/endpoint.js'
import { waitFor } from '../helpers/processes.js'
import { LOCALHOST } from '../helpers/wire.js'

const closers: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close()
})

const NATIVE_EXPECTED = process.platform === 'linux' && process.env.UDPTORRENT_NO_NATIVE !== '1'
/** An interface's link-local IPv6 address, where there is one. */
const LINK_LOCAL = Object.entries(networkInterfaces()).flatMap(([zone, addrs]) =>
  (addrs ?? []).filter((a) => a.family === 'IPv6' && a.address.startsWith('fe80:')).map((a) => ({ address: a.address, zone })))[0]

async function endpoint (init: EndpointInit = {}): Promise<Endpoint> {
  const ep = await Endpoint.open({ host: LOCALHOST, socketBufferBytes: DEFAULT_KERNEL_RCVBUF, ...init })
  closers.push(async () => await ep.close())
  return ep
}

/** A plain socket to send from; every send of one call is queued before the receiver can read any. */
async function sender (): Promise<dgram.Socket> {
  const socket = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => socket.bind(0, LOCALHOST, resolve))
  closers.push(async () => await new Promise<void>((resolve) => socket.close(() => resolve())))
  return socket
}

/** DATA for `txid` at `offset`, its payload random (or filled with `fill`). */
function data (txid: number, offset: number, size: number, fill?: number): Buffer {
  const payload = fill === undefined ? randomBytes(size) : Buffer.alloc(size, fill)
  return Buffer.concat([encodeDataHeader(txid, Stream.Content, offset), payload])
}

/**
 * Registers a txid whose DATA payloads are copied, in arrival order, with whether each was lent: a
 * view of a batch's buffers, far larger than the one datagram dgram allocates (or its 8 KiB pool).
 */
function collect (ep: Endpoint): { txid: number, got: Array<{ offset: number, payload: Buffer, lent: boolean, from: RemoteAddress }> } {
  const got: Array<{ offset: number, payload: Buffer, lent: boolean, from: RemoteAddress }> = []
  const txid = ep.register((msg, from) => {
    if (msg.type !== MessageType.Data) return
    const payload = (msg as DataMsg).payload
    got.push({ offset: (msg as DataMsg).offset, payload: Buffer.from(payload), lent: payload.buffer.byteLength >= 2 * MAX_DATAGRAM_BYTES, from })
  })
  return { txid, got }
}

/**
 * A kernel with net.core.rmem_max at its default holds about 400 KB of queued datagrams, whatever
 * the endpoint asks for: every burst here stays well inside that.
 */
const DEFAULT_KERNEL_RCVBUF = 212_992

describe('batched receives (recvmmsg)', () => {
  it('the addon has the batched receive on Linux (npm install builds it; UDPTORRENT_NO_NATIVE=1 opts out)', () => {
    expect(nativeAddon().recvBatch !== undefined).toBe(NATIVE_EXPECTED)
  })

  it.runIf(NATIVE_EXPECTED)('a burst arrives whole and in order, most of it in batches and lent, sizes up to 65000 bytes', async () => {
    const ep = await endpoint()
    const { txid, got } = collect(ep)
    const sizes = Array.from({ length: 120 }, (_, i) => i % 60 === 7 ? 65_000 - 17 : 1 + ((i * 97) % 1200))
    const sent = sizes.map((size, i) => data(txid, i, size))
    const out = await sender()
    for (const d of sent) out.send(d, ep.address.port, LOCALHOST)
    await waitFor('every datagram', () => got.length === sent.length, 5_000)
    expect(got.map((g) => g.offset)).toEqual(sent.map((_, i) => i))
    for (let i = 0; i < sent.length; i++) expect(got[i]?.payload.equals((sent[i] as Buffer).subarray(17))).toBe(true)
    const stats = ep.receiveBatches
    expect(stats?.disabledBy).toBeUndefined()
    expect(stats?.datagrams).toBeGreaterThan(sent.length / 2)
    expect(stats?.batches).toBeLessThan(stats?.datagrams ?? 0)
    expect(ep.stats.datagramsIn).toBe(sent.length)
    // What a batch read was handed on without a copy; what dgram read was not.
    expect(got.filter((g) => g.lent).length).toBe(stats?.datagrams)
  })

  it.runIf(NATIVE_EXPECTED)('only DATA is lent: a request kept as raw bytes from a batch survives the batches after it', async () => {
    const ep = await endpoint()
    const { txid, got } = collect(ep)
    // A tracker checks a request's signature over the raw datagram, and may do so later.
    let kept: Buffer | undefined
    ep.onTrackerRequest = (_msg, _from, raw) => { kept = raw }
    const connect = encode({ type: MessageType.Connect, txid: 7 })
    const out = await sender()
    // The first datagram of a wake-up is dgram's; the CONNECT lands in a batch, and the DATA after
    // it fills the batch's buffers several times over.
    out.send(data(txid, 0, 100), ep.address.port, LOCALHOST)
    out.send(connect, ep.address.port, LOCALHOST)
    for (let i = 1; i <= 120; i++) out.send(data(txid, i, 600, 0xff), ep.address.port, LOCALHOST)
    await waitFor('every datagram', () => got.length === 121, 5_000)
    expect(ep.receiveBatches?.datagrams).toBeGreaterThan(64)
    expect(kept?.equals(connect)).toBe(true)
  })

  it.runIf(NATIVE_EXPECTED)('with an inbound filter holding datagrams, DATA is copied too: what the filter releases later is intact', async () => {
    const held: Array<() => void> = []
    const filter: DatagramFilter = { push: (d, deliver) => { held.push(() => deliver(d)) }, close: () => {} }
    const ep = await endpoint({ inboundFilter: filter })
    const { txid, got } = collect(ep)
    const sent = Array.from({ length: 150 }, (_, i) => data(txid, i, 1200))
    const out = await sender()
    for (const d of sent) out.send(d, ep.address.port, LOCALHOST)
    await waitFor('every datagram held', () => held.length === sent.length, 5_000)
    expect(ep.receiveBatches?.datagrams).toBeGreaterThan(32)
    for (const release of held) release()
    expect(got.length).toBe(sent.length)
    expect(got.some((g) => g.lent)).toBe(false)
    for (let i = 0; i < sent.length; i++) expect(got[i]?.payload.equals((sent[i] as Buffer).subarray(17))).toBe(true)
  })

  it.runIf(NATIVE_EXPECTED)('readWaiting reads what already waits on the socket, at once, batch after batch up to its bound', async () => {
    const ep = await endpoint()
    const { txid, got } = collect(ep)
    const out = await sender()
    const fd = socketFd(out) as number
    const sendSegments = nativeAddon().sendSegments
    // One system call per run, made here and now: the datagrams wait on the endpoint's socket
    // before the event loop has had a chance to read any of them (as after a stall).
    const queue = (first: number, count: number): void => {
      const parts = Array.from({ length: count }, (_, i) => data(txid, first + i, 300, 0xab)).flatMap((d) => [d.subarray(0, 17), d.subarray(17)])
      expect(sendSegments?.(fd, parts, 317, LOCALHOST, ep.address.port, false)).toBe(0)
    }
    queue(0, 40)
    queue(40, 40)
    expect(got.length).toBe(0)
    const first = Math.min(80, RECEIVE_BATCH_DATAGRAMS)
    expect(ep.readWaiting(1)).toBe(first) // one batch, as bounded
    expect(got.length).toBe(first)
    expect(ep.readWaiting()).toBe(80 - first)
    expect(got.map((g) => g.offset)).toEqual(Array.from({ length: 80 }, (_, i) => i))
    expect(ep.readWaiting()).toBe(0)
  })

  it('a socket that cannot be read in batches stops them and dgram reads everything; a passing error does not', async () => {
    const { EBADF, ENOBUFS } = constants.errno
    const failing = (errno: number): RecvBatch => () => -errno
    const bad = await endpoint({ batchReceiver: { recvBatch: failing(EBADF) } })
    const passing = await endpoint({ batchReceiver: { recvBatch: failing(ENOBUFS) } })
    for (const ep of [bad, passing]) {
      const { txid, got } = collect(ep)
      const out = await sender()
      for (let i = 0; i < 20; i++) out.send(data(txid, i, 500), ep.address.port, LOCALHOST)
      await waitFor('every datagram through dgram', () => got.length === 20, 5_000)
      expect(got.map((g) => g.offset)).toEqual(Array.from({ length: 20 }, (_, i) => i))
    }
    expect(bad.receiveBatches).toMatchObject({ disabledBy: 'EBADF', batches: 0, datagrams: 0, errors: 0 })
    expect(passing.receiveBatches?.disabledBy).toBeUndefined()
    expect(passing.receiveBatches?.errors).toBeGreaterThan(1)
  })

  it('a datagram cut short, or from an address the addon could not name, is dropped and counted; the rest of its batch is delivered', async () => {
    let ep: Endpoint | undefined
    let calls = 0
    // A stand-in that, once, reports three datagrams: one too long, one without an address, one good.
    const recvBatch: RecvBatch = (_fd, arena, slotBytes, meta) => {
      if (calls++ > 0) return 0
      const good = data(txidGood, 1, 10)
      const write = (i: number, length: number, host: string): void => {
        meta.writeUInt32LE(length, i * 72)
        meta.writeUInt16LE(ep?.address.port ?? 0, i * 72 + 4)
        meta[i * 72 + 6] = host.length
        meta.write(host, i * 72 + 8, 'latin1')
      }
      write(0, 0xffffffff, LOCALHOST)
      write(1, good.length, '')
      good.copy(arena, 2 * slotBytes)
      write(2, good.length, LOCALHOST)
      return 3
    }
    ep = await endpoint({ batchReceiver: { recvBatch } })
    const { txid, got } = collect(ep)
    const txidGood = txid
    const out = await sender()
    out.send(data(txid, 0, 10), ep.address.port, LOCALHOST)
    await waitFor('the real datagram and the good one of the batch', () => got.length === 2, 5_000)
    expect(got.map((g) => g.offset)).toEqual([0, 1])
    expect(ep.receiveBatches).toMatchObject({ batches: 1, datagrams: 3, dropped: 2 })
  })

  it.runIf(NATIVE_EXPECTED && LINK_LOCAL !== undefined)('a link-local IPv6 peer has the same name, zone and all, in a batch as from dgram', async () => {
    const { address, zone } = LINK_LOCAL as { address: string, zone: string }
    const ep = await endpoint({ host: '::' })
    const { txid, got } = collect(ep)
    const socket = dgram.createSocket('udp6')
    await new Promise<void>((resolve) => socket.bind(0, `${address}%${zone}`, resolve))
    closers.push(async () => await new Promise<void>((resolve) => socket.close(() => resolve())))
    for (let i = 0; i < 40; i++) socket.send(data(txid, i, 200), ep.address.port, `${address}%${zone}`)
    await waitFor('every datagram', () => got.length === 40, 5_000)
    expect(got.filter((g) => g.lent).length).toBeGreaterThan(0)
    expect(new Set(got.map((g) => `${g.from.host}:${g.from.port}`))).toEqual(new Set([`${address}%${zone}:${socket.address().port}`]))
  })

  it('--no-recv-batch (batchReceive: false): no batches, and datagrams still arrive', async () => {
    const ep = await endpoint({ batchReceive: false })
    expect(ep.receiveBatches).toBeUndefined()
    const { txid, got } = collect(ep)
    const out = await sender()
    for (let i = 0; i < 50; i++) out.send(data(txid, i, 1000), ep.address.port, LOCALHOST)
    await waitFor('every datagram', () => got.length === 50, 5_000)
  })
})
