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
