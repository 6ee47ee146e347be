import { readFileSync } from 'node:fs'
import { BlockList } from 'node:net'
import os from 'node:os'
import { describe, expect, it } from 'vitest'
import { DATAGRAM_PROBE_LADDER, DEFAULT_OFF_LINK_MAX_DATAGRAM_BYTES, MAX_DATAGRAM_BYTES } from '../../configs.js'
import { pathDatagramCap } from '../../src/transport/path-mtu.js'

const TOP = Math.min(MAX_DATAGRAM_BYTES, Math.max(...DATAGRAM_PROBE_LADDER))

/** MTU of a network interface as the kernel reports it (read-only; no traffic). */
function sysMtu (name: string): number | undefined {
  try {
    const mtu = Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim())
    return Number.isInteger(mtu) && mtu > 0 ? mtu : undefined
  } catch {
    return undefined
  }
}

interface LocalSubnet { name: string, address: string, cidr: string, mtu: number }

/** The first directly attached, non-loopback subnet of `family` whose interface MTU is readable. */
function localSubnet (family: 'IPv4' | 'IPv6'): LocalSubnet | undefined {
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal || a.family !== family || a.cidr === null) continue
      if (family === 'IPv6' && a.address.toLowerCase().startsWith('fe80')) continue // link-local needs a scope
      const mtu = sysMtu(name)
      if (mtu !== undefined) return { name, address: a.address, cidr: a.cidr, mtu }
    }
  }
  return undefined
}

/** Whether `ip` is on any subnet of this machine's non-internal interfaces. */
function onLocalSubnet (ip: string, family: 'ipv4' | 'ipv6'): boolean {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal || a.family.toLowerCase() !== family || a.cidr === null) continue
      const [net, prefix] = a.cidr.split('/') as [string, string]
      const list = new BlockList()
      list.addSubnet(net, Number(prefix), family)
      if (list.check(ip, family)) return true
    }
  }
  return false
}

/** Another host address on the same IPv4 subnet (the last bit flipped), when the prefix leaves room. */
function neighbourV4 (address: string, prefix: number): string | undefined {
  if (prefix > 30) return undefined
  const parts = address.split('.').map(Number)
  const last = parts[3] as number
  let other = last ^ 1
  if (other === 0 || other === 255) other = last ^ 2
  parts[3] = other
  return parts.join('.')
}

const v4 = localSubnet('IPv4')
const v6 = localSubnet('IPv6')
const TEST_NET_3 = '203.0.113.9'

describe('pathDatagramCap', () => {
  it('loopback gets the top of the probe ladder, capped at MAX_DATAGRAM_BYTES', () => {
    expect(TOP).toBeGreaterThan(DEFAULT_OFF_LINK_MAX_DATAGRAM_BYTES)
    expect(TOP).toBeLessThanOrEqual(MAX_DATAGRAM_BYTES)
    for (const host of ['127.0.0.1', '127.5.6.7', '127.255.255.254', '::1', '::ffff:127.0.0.1', '::ffff:127.1.2.3']) {
      expect(pathDatagramCap(host), host).toBe(TOP)
    }
  })

  it('a string that is not an IP address gets the off-link default', () => {
    for (const host of ['not-an-ip', '', 'localhost', 'example.com', '1.2.3', '256.1.1.1', '::ffff:', 'fd00::zz']) {
      expect(pathDatagramCap(host), host).toBe(DEFAULT_OFF_LINK_MAX_DATAGRAM_BYTES)
    }
  })

  // Regression (fixed): src/transport/path-mtu.ts tests the loopback case with `plain.startsWith('127.')` before
  // checking that the host is an IP address, so a host NAME beginning with "127." is given the
  // loopback cap: pathDatagramCap('127.example.com') returns 65000 instead of
  // DEFAULT_OFF_LINK_MAX_DATAGRAM_BYTES (1472). (Latent today: node.ts passes tracker-reported IPs.)
  it('a host name that merely starts with "127." is not loopback', () => {
    expect(pathDatagramCap('127.example.com')).toBe(DEFAULT_OFF_LINK_MAX_DATAGRAM_BYTES)
  })

  it.skipIf(onLocalSubnet(TEST_NET_3, 'ipv4'))('a routed public address gets the off-link default', () => {
    expect(pathDatagramCap(TEST_NET_3)).toBe(DEFAULT_OFF_LINK_MAX_DATAGRAM_BYTES)
    expect(pathDatagramCap(`::ffff:${TEST_NET_3}`)).toBe(DEFAULT_OFF_LINK_MAX_DATAGRAM_BYTES)
  })

  it.skipIf(onLocalSubnet('2001:db8::9', 'ipv6'))('a routed IPv6 address gets the off-link default', () => {
    expect(pathDatagramCap('2001:db8::9')).toBe(DEFAULT_OFF_LINK_MAX_DATAGRAM_BYTES)
  })

  it.skipIf(v4 === undefined)('an address on a local IPv4 subnet gets min(top, interface MTU − 28)', () => {
    const s = v4 as LocalSubnet
    const expected = Math.min(TOP, s.mtu - 28)
    expect(pathDatagramCap(s.address), `${s.address} on ${s.name} (${s.cidr}, mtu ${s.mtu})`).toBe(expected)
    expect(pathDatagramCap(`::ffff:${s.address}`)).toBe(expected)
    const other = neighbourV4(s.address, Number(s.cidr.split('/')[1]))
    if (other !== undefined) {
      expect(onLocalSubnet(other, 'ipv4')).toBe(true)
      expect(pathDatagramCap(other), other).toBe(expected)
    }
  })

  it.skipIf(v6 === undefined)('an address on a local IPv6 subnet gets min(top, interface MTU − 48)', () => {
    const s = v6 as LocalSubnet
    expect(pathDatagramCap(s.address), `${s.address} on ${s.name} (${s.cidr}, mtu ${s.mtu})`).toBe(Math.min(TOP, s.mtu - 48))
  })
})
