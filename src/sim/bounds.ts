/**
 * Kurose & Ross, "Computer Networking", §2.5: the least time to distribute a file of F bytes to N
 * peers, from a server (the seed) that uploads at u_s, peers that upload at u_i and download at
 * d_i. Rates in bytes per second, times in seconds.
 *
 *   client-server:  D_cs  ≥ max(N·F / u_s, F / d_min)
 *   peer-to-peer:   D_p2p ≥ max(F / u_s, F / d_min, N·F / (u_s + Σ u_i))
 */
export interface DistributionLink {
  fileBytes: number
  peers: number
  seedUpload: number
  peerUpload: number
  /** Infinity when downloads are not limited. */
  peerDownload: number
}

export function clientServerBound (l: DistributionLink): number {
  return Math.max((l.peers * l.fileBytes) / l.seedUpload, l.fileBytes / l.peerDownload)
}

export function p2pBound (l: DistributionLink): number {
  return Math.max(
    l.fileBytes / l.seedUpload,
    l.fileBytes / l.peerDownload,
    (l.peers * l.fileBytes) / (l.seedUpload + l.peers * l.peerUpload)
  )
}
