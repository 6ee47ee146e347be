// Builds the optional UDP addon (udp_gso.c: segmented sends, batched receives) at `npm install`. It
// is an optimisation only: when it cannot be built (not Linux, no compiler, no node-gyp) this says so
// and exits 0, and udptorrent sends and receives with plain dgram (src/transport/segmented-send.ts,
// src/transport/batch-receive.ts). UDPTORRENT_NO_NATIVE=1 skips it.
import { spawnSync } from 'node:child_process'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const skip = (why) => {
  console.log(`udptorrent: UDP addon not built (${why}); datagrams are sent and received one system call each`)
  process.exit(0)
}
if (process.platform !== 'linux') skip('it needs Linux')
if (process.env.UDPTORRENT_NO_NATIVE === '1') skip('UDPTORRENT_NO_NATIVE=1')
// npm names its bundled node-gyp to lifecycle scripts; a global one is the fallback.
const gyp = process.env.npm_config_node_gyp
const [cmd, args] = gyp !== undefined && gyp !== '' ? [process.execPath, [gyp]] : ['node-gyp', []]
// Bounded: a node-gyp that hangs (fetching headers with no network, say) must not hang the install.
const run = spawnSync(cmd, [...args, 'rebuild', '--loglevel=error'], { cwd: here, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', timeout: 180_000 })
if (run.error !== undefined || run.status !== 0) {
  const detail = (run.error?.message ?? run.stderr.trim().split('\n').slice(-3).join(' | ')) || `exit ${run.status}`
  skip(`node-gyp failed: ${detail}`)
}
console.log('udptorrent: built the UDP addon (native/build/Release/udp_gso.node)')
