/**
 * A UDP relay for tests and benchmarks, "client <-> proxy <-> target", that impairs each direction
 * with its own seeded Impairment (after holepunchto/libudx's test proxy). Point a client at
 * proxy.address instead of the target; the target sees the proxy's per-client upstream socket.
 */

import dgram from 'node:dgram'
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { DEFAULT_SOCKET_BUFFER_BYTES } from '../../configs.js'
import { DEFAULT_IMPAIRMENT_SEED, Impairment } from './impairment.js'
import type { ImpairmentInit, ImpairmentStats } from './impairment.js'
import { deriveSeed } from './prng.js'

export const DEFAULT_UDP_PROXY_HOST = '127.0.0.1'
export const DEFAULT_UDP_PROXY_PORT = 0

export interface UdpProxyInit {
  target: { host: string, port: number }
  /** Bind address, default DEFAULT_UDP_PROXY_HOST. */
  host?: string
  /** Default DEFAULT_UDP_PROXY_PORT (ephemeral). */
  port?: number
  /** Applied to client -> target datagrams. */
  toTarget?: ImpairmentInit
  /** Applied to target -> client datagrams. */
  fromTarget?: ImpairmentInit
}

export interface UdpProxyStats {
  toTarget: ImpairmentStats
  fromTarget: ImpairmentStats
}

interface Client {
  readonly upstream: dgram.Socket
  readonly toTarget: Impairment
  readonly fromTarget: Impairment
  readonly sendToTarget: (d: Buffer) => void
  readonly sendToClient: (d: Buffer) => void
}

type Family = 4 | 6

/**
 * Resolved once up front: dgram would otherwise run dns.lookup() per datagram for a host name,
 * and those lookups complete out of order, which would reorder datagrams behind our back.
 */
async function resolve (host: string): Promise<{ address: string, family: Family }> {
  const literal = isIP(host)
  if (literal === 4 || literal === 6) return { address: host, family: literal }
  const { address, family } = await lookup(host)
  return { address, family: family === 6 ? 6 : 4 }
}

function socketType (family: Family): dgram.SocketType {
  return family === 6 ? 'udp6' : 'udp4'
}

function setBuffers (socket: dgram.Socket): void {
  // Best effort: the kernel clamps to net.core.[rw]mem_max, and some sandboxes refuse outright.
  // A smaller buffer only means more kernel drops under bursts, never wrong behaviour.
  try {
    socket.setRecvBufferSize(DEFAULT_SOCKET_BUFFER_BYTES)
    socket.setSendBufferSize(DEFAULT_SOCKET_BUFFER_BYTES)
  } catch {}
}

async function bind (socket: dgram.Socket, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      socket.off('listening', onListening)
      reject(err)
    }
    const onListening = (): void => {
      socket.off('error', onError)
      resolve()
    }
    socket.once('error', onError)
    socket.once('listening', onListening)
    socket.bind(port, host)
  })
}

async function closeSocket (socket: dgram.Socket): Promise<void> {
  await new Promise<void>(resolve => {
    // 'error' too: a close queued behind a bind that then fails is never run, and close() must
    // not hang on it.
    socket.once('error', () => { resolve() })
    try {
      socket.close(() => { resolve() })
    } catch {
      resolve() // already closed
    }
  })
}

function emptyStats (): ImpairmentStats {
  return { seen: 0, delivered: 0, dropped: 0, duplicated: 0, reordered: 0, queueDrops: 0 }
}

function addStats (into: ImpairmentStats, from: ImpairmentStats): void {
  into.seen += from.seen
  into.delivered += from.delivered
  into.dropped += from.dropped
  into.duplicated += from.duplicated
  into.reordered += from.reordered
  into.queueDrops += from.queueDrops
}

export class UdpProxy {
  private readonly clients = new Map<string, Client>()
  private readonly toTargetInit: ImpairmentInit
  private readonly fromTargetInit: ImpairmentInit
  private readonly toTargetSeed: number
  private readonly fromTargetSeed: number
  private closed = false
  private closing: Promise<void> | undefined
  private errorCount = 0

  private constructor (
    private readonly socket: dgram.Socket,
    private readonly bound: { host: string, port: number },
    private readonly target: { address: string, family: Family, port: number },
    init: UdpProxyInit
  ) {
    this.toTargetInit = init.toTarget ?? {}
    this.fromTargetInit = init.fromTarget ?? {}
    this.toTargetSeed = this.toTargetInit.seed ?? DEFAULT_IMPAIRMENT_SEED
    this.fromTargetSeed = this.fromTargetInit.seed ?? DEFAULT_IMPAIRMENT_SEED
    socket.on('message', this.onClientMessage)
    socket.on('error', this.onSocketError)
  }

  static async start (init: UdpProxyInit): Promise<UdpProxy> {
    const targetPort = init.target.port
    if (!Number.isInteger(targetPort) || targetPort < 1 || targetPort > 65535) {
      throw new RangeError(`UdpProxy target port must be 1..65535, got ${targetPort}`)
    }
    // Constructing throwaway impairments surfaces a bad init here rather than at the first datagram.
    new Impairment(init.toTarget ?? {}).close()
    new Impairment(init.fromTarget ?? {}).close()
    const target = await resolve(init.target.host)
    const local = await resolve(init.host ?? DEFAULT_UDP_PROXY_HOST)
    const socket = dgram.createSocket(socketType(local.family))
    try {
      await bind(socket, init.port ?? DEFAULT_UDP_PROXY_PORT, local.address)
    } catch (err) {
      await closeSocket(socket)
      throw err
    }
    setBuffers(socket)
    const { port } = socket.address()
    return new UdpProxy(socket, { host: local.address, port }, { ...target, port: targetPort }, init)
  }

  get port (): number { return this.bound.port }

  get address (): { host: string, port: number } { return { host: this.bound.host, port: this.bound.port } }

  /** Totals over every client so far, computed on each read. */
  get stats (): UdpProxyStats {
    const stats: UdpProxyStats = { toTarget: emptyStats(), fromTarget: emptyStats() }
    for (const client of this.clients.values()) {
      addStats(stats.toTarget, client.toTarget.stats)
      addStats(stats.fromTarget, client.fromTarget.stats)
    }
    return stats
  }

  /** Socket 'error' events and failed sends: counted, never thrown, since a test proxy must not crash its test. */
  get errors (): number { return this.errorCount }

  /** Distinct client addresses seen, each with its own upstream socket. */
  get clientCount (): number { return this.clients.size }

  async close (): Promise<void> {
    this.closing ??= this.closeAll()
    await this.closing
  }

  private async closeAll (): Promise<void> {
    this.closed = true
    const sockets = [this.socket]
    for (const client of this.clients.values()) {
      client.toTarget.close()
      client.fromTarget.close()
      sockets.push(client.upstream)
    }
    await Promise.all(sockets.map(closeSocket))
  }

  private readonly onSocketError = (): void => {
    this.errorCount++
  }

  private readonly onSent = (err: Error | null): void => {
    if (err !== null) this.errorCount++
  }

  private readonly onClientMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    if (this.closed) return
    try {
      const key = `${rinfo.address}/${rinfo.port}`
      let client = this.clients.get(key)
      if (client === undefined) {
        client = this.addClient(rinfo.address, rinfo.port)
        this.clients.set(key, client)
      }
      client.toTarget.push(msg, client.sendToTarget)
    } catch {
      this.errorCount++
    }
  }

  private addClient (address: string, port: number): Client {
    // Client n gets streams 2n (to target) and 2n+1 (from target): a run is reproducible as long
    // as clients first appear in the same order, and the two directions never share a pattern
    // even when both inits carry the same seed.
    const index = this.clients.size
    const toTarget = new Impairment({ ...this.toTargetInit, seed: deriveSeed(this.toTargetSeed, 2 * index) })
    const fromTarget = new Impairment({ ...this.fromTargetInit, seed: deriveSeed(this.fromTargetSeed, 2 * index + 1) })
    const upstream = dgram.createSocket(socketType(this.target.family))
    const target = this.target
    const send = (socket: dgram.Socket, d: Buffer, toPort: number, toAddress: string): void => {
      if (this.closed) return
      try {
        socket.send(d, toPort, toAddress, this.onSent)
      } catch {
        this.errorCount++
      }
    }
    const client: Client = {
      upstream,
      toTarget,
      fromTarget,
      sendToTarget: d => { send(upstream, d, target.port, target.address) },
      sendToClient: d => { send(this.socket, d, port, address) }
    }
    upstream.on('error', this.onSocketError)
    upstream.on('listening', () => { setBuffers(upstream) })
    // Whatever reaches the upstream socket goes back to its client: in a test, only the target
    // knows this ephemeral port.
    upstream.on('message', (msg: Buffer) => {
      if (this.closed) return
      try {
        fromTarget.push(msg, client.sendToClient)
      } catch {
        this.errorCount++
      }
    })
    // Sends made before the bind completes are queued by dgram, so the first datagram is not lost.
    upstream.bind(0)
    return client
  }
}
