import { readFileSync } from 'node:fs'
import { BlockList, isIPv4, isIPv6 } from 'node:net'
import os from 'node:os'
import { DATAGRAM_PROBE_LADDER, DEFAULT_OFF_LINK_MAX_DATAGRAM_BYTES, MAX_DATAGRAM_BYTES } from '../../configs.js'

const IPV4_UDP_HEADERS = 28
const IPV6_UDP_HEADERS = 48

/**
 * The largest datagram worth probing for towards `host`. Node cannot set the DF bit, so IPv4
 * datagrams above the outgoing interface's MTU would be fragmented, and one lost fragment loses the
 * whole datagram. So: loopback allows the largest size; a peer on a directly attached subnet allows
 * that interface's MTU (read from /sys on Linux); anything routed gets Ethernet's 1500-byte MTU.
 */
export function pathDatagramCap (host: string): number {
  const top = Math.min(MAX_DATAGRAM_BYTES, Math.max(...DATAGRAM_PROBE_LADDER))
  const plain = host.startsWith('::ffff:') ? host.slice(7) : host
  if (plain === '::1' || (isIPv4(plain) && plain.startsWith('127.'))) return top
  const family = isIPv4(plain) ? 'ipv4' : isIPv6(plain) ? 'ipv6' : undefined
  if (family === undefined) return DEFAULT_OFF_LINK_MAX_DATAGRAM_BYTES
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal || a.family.toLowerCase() !== family || a.cidr === null) continue
      const [net, prefix] = a.cidr.split('/') as [string, string]
      const list = new BlockList()
      list.addSubnet(net, Number(prefix), family)
      if (!list.check(plain, family)) continue
      const mtu = interfaceMtu(name)
      if (mtu === undefined) return DEFAULT_OFF_LINK_MAX_DATAGRAM_BYTES
      return Math.min(top, mtu - (family === 'ipv4' ? IPV4_UDP_HEADERS : IPV6_UDP_HEADERS))
    }
  }
  return DEFAULT_OFF_LINK_MAX_DATAGRAM_BYTES
}

function interfaceMtu (name: string): number | undefined {
  try {
    const mtu = Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim())
    return Number.isInteger(mtu) && mtu > 0 ? mtu : undefined
  } catch {
    return undefined
  }
}

/**
 * The datagram size every link to one host may use (RFC 8899 §4.3 keeps a PLPMTU per destination,
 * not per flow). In a swarm a node has a link to every peer and most carry only a few pieces: each
 * probing on its own from 1200 bytes, few ever got past it, and a 16 KiB piece took 14 datagrams.
 */
export class SharedPathSize {
  private largest: number

  constructor (private readonly base: number) {
    this.largest = base
  }

  /** The largest size some link to this host has had delivered since the last black hole. */
  get confirmed (): number { return this.largest }

  confirm (size: number): void {
    if (size > this.largest) this.largest = size
  }

  /** A link fell back to the base after timeouts: new fetches start there until a probe succeeds again. */
  blackHole (): void {
    this.largest = this.base
  }
}
