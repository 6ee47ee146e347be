/**
 * npm run demo: a tracker, two seeds and three downloaders on loopback, in a fresh temporary home.
 * It generates a random file, lets the swarm distribute it, verifies every copy and prints a table.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { copyFile, mkdir, mkdtemp, open, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { killAll, startNode, startTracker } from '../src/harness/processes.js'

const FILE = 'demo.bin'
const SIZE = Number(process.env.DEMO_BYTES ?? 50_000_000)
const SEEDS = [1, 2]
const DOWNLOADERS = [3, 4, 5]

async function sha256 (file: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer)
  return h.digest('hex')
}

async function writeRandom (file: string, size: number): Promise<void> {
  const fh = await open(file, 'w')
  try {
    for (let at = 0; at < size; at += 1 << 20) await fh.write(randomBytes(Math.min(1 << 20, size - at)))
  } finally {
    await fh.close()
  }
}

const home = await mkdtemp(path.join(os.tmpdir(), 'udptorrent-demo-'))
const dirOf = (id: number): string => path.join(home, 'node_files', `node${id}`)
try {
  console.log(`udptorrent demo in ${home}`)
  await mkdir(dirOf(1), { recursive: true })
  await writeRandom(path.join(dirOf(1), FILE), SIZE)
  for (const id of SEEDS.slice(1)) {
    await mkdir(dirOf(id), { recursive: true })
    await copyFile(path.join(dirOf(1), FILE), path.join(dirOf(id), FILE))
  }
  const want = await sha256(path.join(dirOf(1), FILE))
  console.log(`generated ${FILE}: ${(SIZE / 1e6).toFixed(1)} MB, sha256 ${want.slice(0, 16)}…`)

  const tracker = await startTracker(home)
  console.log(`tracker on ${tracker.address}`)
  for (const id of SEEDS) {
    const seed = await startNode(home, id, tracker.address, ['--send', FILE])
    await seed.waitForLine(/^sharing /)
    console.log(`node ${id} shares ${FILE}`)
  }
  const started = performance.now()
  const downloads = await Promise.all(DOWNLOADERS.map(async (id) => {
    const node = await startNode(home, id, tracker.address, ['--download', FILE, '--exit-when-done'])
    const code = await node.waitExit(300_000)
    const done = node.lines.find((l) => l.startsWith('download complete'))
    const seconds = Number(/in ([\d.]+) s/.exec(done ?? '')?.[1] ?? NaN)
    const identical = code === 0 && await sha256(path.join(dirOf(id), FILE)) === want
    return { id, code, seconds, identical, failure: node.lines.find((l) => l.startsWith('download failed')) }
  }))
  const wall = (performance.now() - started) / 1000

  console.log('\nnode  exit  seconds  MB/s    byte-identical')
  for (const d of downloads) {
    console.log(`${String(d.id).padEnd(6)}${String(d.code).padEnd(6)}${d.seconds.toFixed(2).padEnd(9)}${(SIZE / 1e6 / d.seconds).toFixed(1).padEnd(8)}${d.identical ? 'yes' : `NO ${d.failure ?? ''}`}`)
  }
  const ok = downloads.every((d) => d.identical)
  console.log(`\n${downloads.length} downloads of ${(SIZE / 1e6).toFixed(1)} MB in ${wall.toFixed(2)} s: ${ok ? 'all verified' : 'FAILED'}`)
  console.log(`logs: ${path.join(home, 'logs')}`)
  process.exitCode = ok ? 0 : 1
} finally {
  killAll()
  if (process.env.DEMO_KEEP === undefined) await rm(path.join(home, 'node_files'), { recursive: true, force: true })
}
