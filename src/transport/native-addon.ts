import type dgram from 'node:dgram'
import { createRequire } from 'node:module'

/** udp_gso.c's sendSegments: 0 when the run left, or a negative errno. */
export type SendSegments = (fd: number, parts: Buffer[], segmentBytes: number, host: string, port: number, ipv6Socket: boolean) => number
/** udp_gso.c's recvBatch: datagrams received (0 when none was waiting), or a negative errno. */
export type RecvBatch = (fd: number, arena: Buffer, slotBytes: number, meta: Buffer) => number
/** udp_gso.c's adviseHugePages: 0 when the kernel took the hint (or the buffer spans no whole huge page), or a negative errno. */
export type AdviseHugePages = (buffer: Buffer) => number
/** udp_gso.c's copyBytes: memcpy of source[sourceStart, sourceEnd) to target at targetStart; the bytes copied, or a negative errno when a range does not fit. */
export type CopyBytes = (target: Buffer, targetStart: number, source: Buffer, sourceStart: number, sourceEnd: number) => number

export interface NativeAddon {
  sendSegments?: SendSegments
  recvBatch?: RecvBatch
  adviseHugePages?: AdviseHugePages
  copyBytes?: CopyBytes
}

/** Where native/build.mjs puts the addon: from dist/src/transport/ (the build, the package), and from src/transport/ (tests). */
const ADDON_PATHS = ['../../../native/build/Release/udp_gso.node', '../../native/build/Release/udp_gso.node']

let loaded: NativeAddon | undefined

/** The optional addon's functions; none when it was not built. */
export function nativeAddon (): NativeAddon {
  if (loaded === undefined) {
    loaded = {}
    const require = createRequire(import.meta.url)
    for (const path of ADDON_PATHS) {
      try {
        const addon = require(path) as Record<string, unknown>
        loaded = {
          sendSegments: typeof addon.sendSegments === 'function' ? addon.sendSegments as SendSegments : undefined,
          recvBatch: typeof addon.recvBatch === 'function' ? addon.recvBatch as RecvBatch : undefined,
          adviseHugePages: typeof addon.adviseHugePages === 'function' ? addon.adviseHugePages as AdviseHugePages : undefined,
          copyBytes: typeof addon.copyBytes === 'function' ? addon.copyBytes as CopyBytes : undefined
        }
        break
      } catch {}
    }
  }
  return loaded
}

/** The file descriptor under a bound dgram socket, or undefined where Node does not expose one. */
export function socketFd (socket: dgram.Socket): number | undefined {
  // dgram keeps its handle under a symbol; `socket._handle` reads the same one but is deprecated (DEP0112).
  const key = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol')
  if (key === undefined) return undefined
  const state = (socket as unknown as Record<symbol, { handle?: { fd?: unknown } } | undefined>)[key]
  const fd = state?.handle?.fd
  return typeof fd === 'number' && fd >= 0 ? fd : undefined
}
