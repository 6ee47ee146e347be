import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { appendFile, copyFile, mkdir, readFile, rm } from 'node:fs/promises'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { PART_SUFFIX } from '../../configs.js'
import {
  cleanup, makeHome, makeRandomFile, nodeFile, readLog, sha256File, startNode, startTracker, waitFor
} from '../helpers/processes.js'

const MB = 1_000_000
const homes: string[] = []
const mounts: string[] = []
afterEach(async () => {
  for (const m of mounts.splice(0)) {
    try { execFileSync('umount', ['-l', m]) } catch { /* already gone */ }
  }
  await cleanup(...homes.splice(0))
})

async function seeded (size: number, trackerArgs: string[] = []) {
  const home = await makeHome()
  homes.push(home)
  const source = await makeRandomFile(home, 1, 'data.bin', size)
  const tracker = await startTracker(home, ['--heartbeat', '1', ...trackerArgs])
  const seed = await startNode(home, 1, tracker.address, ['--send', 'data.bin'])
  await seed.waitForLine(/^sharing data\.bin/)
  return { home, tracker, seed, sourceHash: await sha256File(source) }
}

/** Node `id`'s folder as a tmpfs of `size` (root only), unmounted after the test. */
async function tmpfsNodeFolder (home: string, id: number, size: string): Promise<string> {
  const dir = path.join(home, 'node_files', `node${id}`)
  await mkdir(dir, { recursive: true })
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir])
  mounts.push(dir)
  return dir
}

describe('crash safety', () => {
  it('a downloader killed with SIGKILL resumes from its verified pieces and never keeps an unverified byte', async () => {
    const { home, tracker, sourceHash } = await seeded(40 * MB)
    const slow = ['--progress-interval', '100', '--impair', 'rate=8MB/s,queue=512KB,seed=9']
    const first = await startNode(home, 3, tracker.address, ['--download', 'data.bin', '--exit-when-done', ...slow])
    await first.waitForLine(/^progress data\.bin: (?:[2-9]\d)\.\d% /, 60_000)
    first.kill('SIGKILL')
    await first.waitExit()
    expect(existsSync(nodeFile(home, 3, 'data.bin' + PART_SUFFIX))).toBe(true)

    const second = await startNode(home, 3, tracker.address, ['--download', 'data.bin', '--exit-when-done'])
    expect(await second.waitExit(60_000)).toBe(0)
    expect(await sha256File(nodeFile(home, 3, 'data.bin'))).toBe(sourceHash)
    const done = (await readLog(home, 'node3')).find((r) => r.msg === 'download complete')
    // It resumed: pieces verified in the first run were re-checked and kept, not fetched again.
    expect(done?.resumedPieces).toBeGreaterThan(0)
    const resumed = (await readLog(home, 'node3')).find((r) => r.msg === 'resuming from verified pieces')
    expect(resumed?.resumedPieces).toBe(done?.resumedPieces)
  })

  it('a tracker killed with SIGKILL keeps its registrations; nodes carry on and a running download finishes', async () => {
    const { home, tracker, sourceHash } = await seeded(30 * MB)
    const port = tracker.port
    await waitFor('the tracker db to hold the ownership', async () =>
      (await readFile(path.join(home, 'tracker_db', 'tracker.json'), 'utf8').catch(() => '')).includes('data.bin'))
    const n3 = await startNode(home, 3, tracker.address, [
      '--download', 'data.bin', '--exit-when-done', '--progress-interval', '100', '--impair', 'rate=6MB/s,queue=512KB,seed=2'
    ])
    await n3.waitForLine(/^progress data\.bin: \d+\.\d% .*pieces [1-9]/, 60_000)
    tracker.kill('SIGKILL')
    await tracker.waitExit()
    const again = await startTracker(home, ['--heartbeat', '1'], port)
    expect((await readLog(home, 'tracker')).some((r) => r.msg === 'state restored')).toBe(true)
    expect(await n3.waitExit(90_000)).toBe(0)
    expect(await sha256File(nodeFile(home, 3, 'data.bin'))).toBe(sourceHash)
    // The finished download was announced to the restarted tracker (signed, with a fresh connection
    // id), which also still answers the seed's heartbeats from its restored state.
    const log = await readLog(home, 'tracker')
    const restartedAt = log.findIndex((r) => r.msg === 'state restored')
    expect(log.slice(restartedAt).some((r) => r.event === 'own' && r.nodeId === 3)).toBe(true)
    expect(log.slice(restartedAt).some((r) => r.event === 'join' && r.nodeId === 1)).toBe(false)
    expect(again.exitCode).toBeUndefined()
  })

  it('a shared file changed on disk is no longer offered, with a clear error in the log', async () => {
    const { home, tracker, seed } = await seeded(2 * MB)
    await appendFile(nodeFile(home, 1, 'data.bin'), 'tampered')
    const n3 = await startNode(home, 3, tracker.address, ['--download', 'data.bin', '--exit-when-done', '--owner-timeout', '2'])
    expect(await n3.waitExit(60_000)).not.toBe(0)
    await waitFor('the seed to log the withdrawal', async () =>
      (await readLog(home, 'node1')).find((r) => typeof r.msg === 'string' && r.msg.startsWith('stopped sharing')))
    // ...and tells the person at its console, not only the log.
    await seed.waitForLine(/^no longer sharing data\.bin: /)
    expect(seed.exitCode).toBeUndefined()
    expect(existsSync(nodeFile(home, 3, 'data.bin'))).toBe(false)
  })

  const canMount = process.getuid?.() === 0
  it.skipIf(!canMount)('a full disk (ENOSPC) fails the download with a clear message and keeps the node running', async () => {
    const { home, tracker } = await seeded(12 * MB)
    await tmpfsNodeFolder(home, 3, '4m')
    const n3 = await startNode(home, 3, tracker.address, ['--download', 'data.bin'], 'pipe')
    await n3.waitForLine(/^download failed: data\.bin: cannot write data\.bin in .*no space left on the device \(ENOSPC\)/, 60_000)
    n3.write('status')
    await n3.waitForLine(/^node 3 at /)
    expect(n3.exitCode).toBeUndefined()
  })

  it.skipIf(!canMount)('a read-only folder (EROFS) fails the download with a clear message and keeps the node running', async () => {
    const { home, tracker } = await seeded(2 * MB)
    const dir = await tmpfsNodeFolder(home, 3, '8m')
    const n3 = await startNode(home, 3, tracker.address, [], 'pipe')
    // The node has written its identity; now its folder goes read-only under it.
    execFileSync('mount', ['-o', 'remount,ro', dir])
    n3.write('torrent -setMode download data.bin')
    await n3.waitForLine(/^download failed: data\.bin: cannot write data\.bin in .*the file system is read-only \(EROFS\)/, 60_000)
    n3.write('status')
    await n3.waitForLine(/^node 3 at /)
    expect(n3.exitCode).toBeUndefined()
  })

  it('a shared file deleted under the node is no longer offered, with a clear error at the console', async () => {
    const { home, tracker, seed } = await seeded(2 * MB)
    await rm(nodeFile(home, 1, 'data.bin'))
    const n3 = await startNode(home, 3, tracker.address, ['--download', 'data.bin', '--exit-when-done', '--owner-timeout', '2'])
    expect(await n3.waitExit(60_000)).not.toBe(0)
    await seed.waitForLine(/^no longer sharing data\.bin: /)
    expect(seed.exitCode).toBeUndefined()
    expect(existsSync(nodeFile(home, 3, 'data.bin'))).toBe(false)
  })
})
