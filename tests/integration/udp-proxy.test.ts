import dgram from 'node:dgram'
import { afterEach, describe, expect, it } from 'vitest'
import { Impairment } from '../../src/transport/impairment.js'
import type { ImpairmentInit } from '../../src/transport/impairment.js'
import { deriveSeed } from '../../src/transport/prng.js'
import { UdpProxy } from '../../src/transport/udp-proxy.js'

const HOST = '127.0.0.1'
const WAIT_MS = 10_000
/** "No more datagrams are coming": this long without one. */
const QUIET_MS = 200
/**
 * Everything runs in one process, so a datagram sent is only read once the event loop turns.
 * Sending in small batches, each once the proxy has read the previous one, keeps every socket
 * buffer far from full: a kernel drop would look like impairment and break exact counts.
 */
const BATCH = 16

interface Received { data: Buffer, from: string }

/** A bound socket that records what it receives and can be awaited on. */
class Peer {
  readonly received: Received[] = []
  private waiters: Array<() => void> = []

  private constructor (readonly socket: dgram.Socket) {
    socket.on('message', (data, rinfo) => {
      this.received.push({ data, from: `${rinfo.address}:${rinfo.port}` })
      const waiters = this.waiters
      this.waiters = []
      for (const w of waiters) w()
    })
  }

  static async bind (): Promise<Peer> {
    const socket = dgram.createSocket('udp4')
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(0, HOST, () => {
        socket.off('error', reject)
        resolve()
      })
    })
    socket.setRecvBufferSize(4 * 1024 * 1024)
    return new Peer(socket)
  }

  get port (): number { return this.socket.address().port }

  get indexes (): number[] { return this.received.map(r => r.data.readUInt32BE(0)) }

  async send (data: Buffer, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.socket.send(data, port, HOST, err => { err === null ? resolve() : reject(err) })
    })
  }

  private async nextMessage (deadline: number, what: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter(w => w !== onMessage)
        reject(new Error(`timed out waiting for ${what}; have ${this.received.length} datagrams`))
      }, Math.max(0, deadline - Date.now()))
      const onMessage = (): void => {
        clearTimeout(timer)
        resolve()
      }
      this.waiters.push(onMessage)
    })
  }

  /** Resolves once at least n datagrams have arrived. */
  async until (n: number): Promise<void> {
    const deadline = Date.now() + WAIT_MS
    while (this.received.length < n) await this.nextMessage(deadline, `${n} datagrams`)
  }

  /** Resolves after QUIET_MS with no new datagram; fails if they keep coming for WAIT_MS. */
  async quiet (): Promise<void> {
    const deadline = Date.now() + WAIT_MS
    for (;;) {
      const quietUntil = Math.min(Date.now() + QUIET_MS, deadline)
      try {
        await this.nextMessage(quietUntil, 'silence')
      } catch {
        if (quietUntil < deadline) return
        throw new Error(`datagrams still arriving after ${WAIT_MS} ms; have ${this.received.length}`)
      }
    }
  }

  async close (): Promise<void> {
    await new Promise<void>(resolve => { this.socket.close(() => { resolve() }) })
  }
}

/** Waits for a condition that no event announces (the proxy's counters), checking every turn. */
async function waitUntil (cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 1))
  }
}

function payload (i: number, tag = 0): Buffer {
  const b = Buffer.alloc(32)
  b.writeUInt32BE(i, 0)
  b.writeUInt32BE(tag, 4)
  return b
}

/** Echo server: every datagram goes straight back to where it came from. */
async function echoServer (): Promise<Peer> {
  const server = await Peer.bind()
  server.socket.on('message', (data, rinfo) => { server.socket.send(data, rinfo.port, rinfo.address) })
  return server
}

async function sendThrough (proxy: UdpProxy, client: Peer, datagrams: Buffer[]): Promise<void> {
  const start = proxy.stats.toTarget.seen
  for (let i = 0; i < datagrams.length; i += BATCH) {
    const batch = datagrams.slice(i, i + BATCH)
    for (const d of batch) await client.send(d, proxy.port)
    const sent = i + batch.length
    await waitUntil(() => proxy.stats.toTarget.seen - start >= sent, `the proxy to read ${sent} datagrams`)
  }
}

const cleanups: Array<() => Promise<void>> = []

function track<T extends { close: () => Promise<void> }> (thing: T): T {
  cleanups.push(async () => { await thing.close() })
  return thing
}

afterEach(async () => {
  await Promise.all(cleanups.splice(0).map(async c => { await c() }))
})

async function setup (toTarget?: ImpairmentInit, fromTarget?: ImpairmentInit): Promise<{ server: Peer, proxy: UdpProxy, client: Peer }> {
  const server = track(await echoServer())
  const proxy = track(await UdpProxy.start({ target: { host: HOST, port: server.port }, toTarget, fromTarget }))
  const client = track(await Peer.bind())
  return { server, proxy, client }
}

/** The indexes (sorted) the server received of n datagrams sent through a proxy impairing client -> server. */
async function arrivals (toTarget: ImpairmentInit, n: number): Promise<number[]> {
  const { server, proxy, client } = await setup(toTarget)
  await sendThrough(proxy, client, Array.from({ length: n }, (_, i) => payload(i)))
  await server.until(proxy.stats.toTarget.delivered)
  await server.quiet()
  expect(server.received.length).toBe(proxy.stats.toTarget.delivered)
  expect(proxy.errors).toBe(0)
  return server.indexes.sort((a, b) => a - b)
}

describe('UdpProxy', () => {
  it('relays every datagram and every reply when nothing is impaired', async () => {
    const { server, proxy, client } = await setup()
    expect(proxy.address).toEqual({ host: HOST, port: proxy.port })
    expect(proxy.port).toBeGreaterThan(0)
    expect(proxy.port).not.toBe(server.port)
    const n = 500
    await sendThrough(proxy, client, Array.from({ length: n }, (_, i) => payload(i)))
    await client.until(n)
    await client.quiet()
    expect(client.indexes.sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i))
    expect(server.received.length).toBe(n)
    // Replies come from the proxy, not from the server directly.
    expect(new Set(client.received.map(r => r.from))).toEqual(new Set([`${HOST}:${proxy.port}`]))
    expect(proxy.stats.toTarget).toMatchObject({ seen: n, delivered: n, dropped: 0 })
    expect(proxy.stats.fromTarget).toMatchObject({ seen: n, delivered: n, dropped: 0 })
    expect(proxy.errors).toBe(0)
  })

  it('gives each client its own upstream socket and routes replies to the right client', async () => {
    const { server, proxy, client } = await setup()
    const other = track(await Peer.bind())
    const n = 50
    await sendThrough(proxy, client, Array.from({ length: n }, (_, i) => payload(i, 1)))
    await sendThrough(proxy, other, Array.from({ length: n }, (_, i) => payload(i, 2)))
    await client.until(n)
    await other.until(n)
    await client.quiet()
    await other.quiet()
    expect(client.received.every(r => r.data.readUInt32BE(4) === 1)).toBe(true)
    expect(other.received.every(r => r.data.readUInt32BE(4) === 2)).toBe(true)
    expect(client.received.length).toBe(n)
    expect(other.received.length).toBe(n)
    const sources = new Set(server.received.map(r => r.from))
    expect(sources.size).toBe(2)
    expect(sources.has(`${HOST}:${proxy.port}`)).toBe(false)
    expect(proxy.clientCount).toBe(2)
  })

  it('with loss=50 drops about half, and exactly the same datagrams for the same seed', async () => {
    const n = 1000
    const first = await arrivals({ lossPercent: 50, seed: 7 }, n)
    const second = await arrivals({ lossPercent: 50, seed: 7 }, n)
    expect(first.length).toBeGreaterThanOrEqual(0.35 * n)
    expect(first.length).toBeLessThanOrEqual(0.65 * n)
    expect(second).toEqual(first)

    // The first client's toTarget stream is seed-derived stream 0: the proxy's choice is exactly
    // what a standalone Impairment with that seed decides.
    const predicted: number[] = []
    const imp = new Impairment({ lossPercent: 50, seed: deriveSeed(7, 0) })
    for (let i = 0; i < n; i++) imp.push(payload(i), d => { predicted.push(d.readUInt32BE(0)) })
    expect(first).toEqual(predicted)

    const otherSeed = await arrivals({ lossPercent: 50, seed: 8 }, n)
    expect(otherSeed).not.toEqual(first)
  })

  it('with dup=100 delivers every datagram exactly twice', async () => {
    const { server, proxy, client } = await setup({ duplicatePercent: 100 })
    const n = 300
    await sendThrough(proxy, client, Array.from({ length: n }, (_, i) => payload(i)))
    await server.until(2 * n)
    await server.quiet()
    expect(server.received.length).toBe(2 * n)
    const counts = new Map<number, number>()
    for (const i of server.indexes) counts.set(i, (counts.get(i) ?? 0) + 1)
    expect(counts.size).toBe(n)
    expect([...counts.values()].every(c => c === 2)).toBe(true)
    expect(proxy.stats.toTarget).toMatchObject({ seen: n, delivered: 2 * n, duplicated: n })
    // Replies are not impaired, so the client gets both echoes of each.
    await client.until(2 * n)
    await client.quiet()
    expect(client.received.length).toBe(2 * n)
  })

  it('impairs the two directions independently', async () => {
    const { server, proxy, client } = await setup({}, { lossPercent: 100 })
    const n = 100
    await sendThrough(proxy, client, Array.from({ length: n }, (_, i) => payload(i)))
    await server.until(n)
    await waitUntil(() => proxy.stats.fromTarget.seen === n, 'the echoes to reach the proxy')
    await client.quiet()
    expect(server.received.length).toBe(n)
    expect(client.received.length).toBe(0)
    expect(proxy.stats.fromTarget).toMatchObject({ seen: n, dropped: n, delivered: 0 })
  })

  it('stops relaying once closed, and close() is idempotent', async () => {
    const { server, proxy, client } = await setup()
    await sendThrough(proxy, client, [payload(1)])
    await client.until(1)
    await proxy.close()
    await proxy.close()
    await client.send(payload(2), proxy.port)
    await server.quiet()
    await client.quiet()
    expect(server.received.length).toBe(1)
    expect(client.received.length).toBe(1)
  })

  it('rejects a bad target port and a bad impairment before binding', async () => {
    await expect(UdpProxy.start({ target: { host: HOST, port: 0 } })).rejects.toThrow(RangeError)
    await expect(UdpProxy.start({ target: { host: HOST, port: 9 }, toTarget: { lossPercent: 200 } })).rejects.toThrow(RangeError)
  })
})
