import { describe, expect, it } from 'vitest'
import { clientServerBound, p2pBound } from '../../src/sim/bounds.js'

const MB = 1_000_000
const link = { fileBytes: 10 * MB, seedUpload: 5 * MB, peerUpload: 1 * MB, peerDownload: Infinity }

describe('distribution bounds (Kurose & Ross §2.5)', () => {
  it('client-server grows linearly with N: N·F/u_s', () => {
    expect(clientServerBound({ ...link, peers: 1 })).toBeCloseTo(2)
    expect(clientServerBound({ ...link, peers: 32 })).toBeCloseTo(64)
  })

  it('peer-to-peer: F/u_s for one peer, N·F/(u_s + N·u) once the peers\' upload is the limit', () => {
    expect(p2pBound({ ...link, peers: 1 })).toBeCloseTo(2) // max(2, 10/6)
    expect(p2pBound({ ...link, peers: 32 })).toBeCloseTo(320 / 37)
    // It approaches F/u as N grows, never the linear growth of client-server.
    expect(p2pBound({ ...link, peers: 10_000 })).toBeLessThan(10)
  })

  it('a download limit bounds both from below: F/d_min', () => {
    expect(p2pBound({ ...link, peers: 2, peerDownload: 0.5 * MB })).toBeCloseTo(20)
    expect(clientServerBound({ ...link, peers: 2, peerDownload: 0.5 * MB })).toBeCloseTo(20)
  })
})
