import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Stream } from '../../src/messages/index.js'
import { Library } from '../../src/node/library.js'

const PIECE = 16_384
const dirs: string[] = []
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

/** A library sharing one file of 3½ pieces; returns its content resource. */
async function sharedFile (superSeed: boolean): Promise<{ library: Library, resource: NonNullable<ReturnType<Library['open']>> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'udptorrent-superseed-'))
  dirs.push(dir)
  await writeFile(path.join(dir, 'f.bin'), randomBytes(3 * PIECE + PIECE / 2))
  const library = new Library({ dir, pieceSize: PIECE, superSeed })
  const shared = await library.share('f.bin')
  const resource = library.open(shared.identity.contentHash, Stream.Content)
  if (resource === undefined) throw new Error('not served')
  return { library, resource }
}

describe('super-seeding', () => {
  it('gives each piece to one peer first, refuses it to the others until every piece has gone out, then serves anyone', async () => {
    const { library, resource } = await sharedFile(true)
    const claim = (piece: number, peer: string, pieces = 1): boolean | undefined => resource.claim?.(piece * PIECE, Math.min(pieces * PIECE, 3.5 * PIECE - piece * PIECE), peer)
    expect(claim(0, 'a')).toBe(true)
    expect(claim(0, 'b')).toBe(false)
    expect(claim(0, 'a')).toBe(true) // the same peer again (a retransmission)
    expect(claim(1, 'b', 2)).toBe(true) // pieces 1 and 2 in one request
    expect(claim(2, 'a')).toBe(false)
    expect(claim(3, 'c')).toBe(true) // the short last piece: every piece has a first peer now
    // Given is not sent: the node waits for every piece to have gone out in full.
    expect(library.superSeedPending()).toBe(true)
    resource.served?.(0, PIECE, 'a')
    resource.served?.(PIECE, 2 * PIECE, 'b')
    resource.served?.(0, PIECE, 'b') // to another peer: not its first copy, changes nothing
    expect(library.superSeedPending()).toBe(true)
    resource.served?.(3 * PIECE, PIECE / 2, 'c')
    expect(library.superSeedPending()).toBe(false)
    expect(claim(0, 'b')).toBe(true)
    expect(claim(2, 'c')).toBe(true)
  })

  it('counts a piece sent when each of its bytes went out, not when the bytes sent add up to its size', async () => {
    const { library, resource } = await sharedFile(true)
    for (let p = 0; p < 4; p++) expect(resource.claim?.(p * PIECE, Math.min(PIECE, 3.5 * PIECE - p * PIECE), 'a')).toBe(true)
    resource.served?.(PIECE, 2 * PIECE, 'a')
    resource.served?.(3 * PIECE, PIECE / 2, 'a')
    // The first half of piece 0, twice (a re-request after a timeout): 16 KiB sent, half the piece.
    resource.served?.(0, PIECE / 2, 'a')
    resource.served?.(0, PIECE / 2, 'a')
    expect(library.superSeedPending()).toBe(true)
    resource.served?.(PIECE / 2, PIECE / 2, 'a')
    expect(library.superSeedPending()).toBe(false)
  })

  it('is off by default: every peer may have every piece', async () => {
    const { library, resource } = await sharedFile(false)
    expect(resource.claim).toBeUndefined()
    expect(library.superSeedPending()).toBe(false)
  })
})
