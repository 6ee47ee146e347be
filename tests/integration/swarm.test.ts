/**
 * Issue 4: a real swarm. A tracker, a rate-limited seed and four peers (six processes) on loopback:
 * peers serve the pieces they have verified while still downloading, and fetch from each other.
 */
import { afterEach, describe, expect, it } from 'vitest'
import {
  cleanup, makeHome, makeRandomFile, nodeFile, readLog, sha256File, startNode, startTracker
} from '../helpers/processes.js'

const MiB = 1024 * 1024
const PEERS = [11, 12, 13, 14]
const homes: string[] = []
afterEach(async () => { await cleanup(...homes.splice(0)) })

interface OwnerRecord { nodeId: number, bytes: number, bytesWhilePartial: number, complete: boolean }

describe('swarm', () => {
  it('peers download pieces from peers that do not have the whole file yet, and every copy is byte-identical', async () => {
    const home = await makeHome()
    homes.push(home)
    const source = await makeRandomFile(home, 1, 'swarm.bin', 4 * MiB)
    const tracker = await startTracker(home, ['--heartbeat', '1'])
    // The seed alone would need 8 s per copy: peers that wait for it instead of trading are slow.
    const seed = await startNode(home, 1, tracker.address, ['--send', 'swarm.bin', '--piece-size', String(16 * 1024), '--upload-limit', '512KB/s'])
    await seed.waitForLine(/^sharing swarm\.bin/)
    const peers = await Promise.all(PEERS.map(async (id) => await startNode(home, id, tracker.address, ['--download', 'swarm.bin', '--exit-when-done', '--heartbeat', '1'])))
    expect(await Promise.all(peers.map(async (p) => await p.waitExit(120_000)))).toEqual(PEERS.map(() => 0))
    const want = await sha256File(source)
    for (const id of PEERS) expect(await sha256File(nodeFile(home, id, 'swarm.bin'))).toBe(want)

    // The tracker heard partial announcements, and NEED could offer them.
    const trackerLog = await readLog(home, 'tracker')
    const partialOwns = trackerLog.filter((r) => r.event === 'own' && r.complete === false).map((r) => r.nodeId)
    expect(new Set(partialOwns)).toEqual(new Set(PEERS))

    // Bytes verified from a peer while that peer was itself still downloading.
    let fromPartial = 0
    let fromSeed = 0
    for (const id of PEERS) {
      const done = (await readLog(home, `node${id}`)).find((r) => r.msg === 'download complete')
      const owners = (done?.owners ?? []) as OwnerRecord[]
      for (const o of owners) {
        if (o.nodeId === 1) fromSeed += o.bytes
        else fromPartial += o.bytesWhilePartial
      }
    }
    expect(fromPartial).toBeGreaterThan(0)
    // Trading carried a real share of the swarm's 16 MiB, not a stray piece.
    expect(fromPartial).toBeGreaterThan(2 * MiB)
    expect(fromSeed).toBeLessThan(PEERS.length * 4 * MiB)
  })

  it('an owner with one upload slot serves two downloaders in turns, telling the waiting one with UNCHOKE', async () => {
    const home = await makeHome()
    homes.push(home)
    const source = await makeRandomFile(home, 1, 'turns.bin', 2 * MiB)
    const tracker = await startTracker(home, ['--heartbeat', '1'])
    const seed = await startNode(home, 1, tracker.address, ['--send', 'turns.bin', '--upload-limit', '512KB/s', '--upload-slots', '1'], 'pipe')
    await seed.waitForLine(/^sharing turns\.bin/)
    // The downloaders do not upload, so everything comes from the seed's single slot.
    const peers = await Promise.all([21, 22].map(async (id) => await startNode(home, id, tracker.address, ['--download', 'turns.bin', '--exit-when-done', '--upload-limit', '1B/s'])))
    expect(await Promise.all(peers.map(async (p) => await p.waitExit(60_000)))).toEqual([0, 0])
    const want = await sha256File(source)
    for (const id of [21, 22]) expect(await sha256File(nodeFile(home, id, 'turns.bin'))).toBe(want)
    seed.write('torrent -setMode exit')
    expect(await seed.waitExit(20_000)).toBe(0)
    const stopped = (await readLog(home, 'node1')).find((r) => r.msg === 'node stopped')
    const served = stopped?.served as { choked: number, unchokes: number } | undefined
    expect(served?.choked).toBeGreaterThan(0)
    expect(served?.unchokes).toBeGreaterThan(0)
  })
})
