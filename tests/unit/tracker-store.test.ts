import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { TrackerStore, TrackerStoreError } from '../../src/tracker/store.js'
import type { RegistrySnapshot } from '../../src/tracker/registry.js'

const HASH_A = 'a'.repeat(64)
const HASH_B = '0123456789abcdef'.repeat(4)

function sample (): RegistrySnapshot {
  return {
    version: 1,
    nodes: [
      { id: 1, host: '127.0.0.1', port: 4001, files: [HASH_A] },
      { id: 2, host: '::1', port: 4002, files: [HASH_A, HASH_B] }
    ],
    files: [
      { name: 'a.txt', size: 12345, pieceSize: 16384, contentHash: HASH_A, owners: [1, 2] },
      { name: 'my file.bin', size: 2 ** 40, pieceSize: 262144, contentHash: HASH_B, owners: [2] }
    ],
    credit: [[1, 500], [7, 2 ** 45]]
  }
}

let dir: string

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'udptorrent-store-'))
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function loadError (store: TrackerStore): Promise<unknown> {
  try {
    await store.load()
  } catch (err) {
    return err
  }
  return undefined
}

describe('TrackerStore', () => {
  it('load of a missing file returns undefined', async () => {
    const store = new TrackerStore(path.join(dir, 'nope', 'tracker.json'))
    expect(await store.load()).toBeUndefined()
  })

  it('save then load round-trips, creating missing parent folders', async () => {
    const file = path.join(dir, 'deep', 'er', 'tracker.json')
    const store = new TrackerStore(file)
    const snap = sample()
    await store.save(snap)
    expect(await store.load()).toEqual(snap)
    // a second store on the same path reads the same thing
    expect(await new TrackerStore(file).load()).toEqual(snap)
  })

  it('a later save replaces the earlier state', async () => {
    const store = new TrackerStore(path.join(dir, 'tracker.json'))
    await store.save(sample())
    const empty: RegistrySnapshot = { version: 1, nodes: [], files: [], credit: [] }
    await store.save(empty)
    expect(await store.load()).toEqual(empty)
  })

  it('save leaves no *.tmp file behind', async () => {
    const store = new TrackerStore(path.join(dir, 'tracker.json'))
    await store.save(sample())
    await store.save(sample())
    const entries = await readdir(dir)
    expect(entries).toEqual(['tracker.json'])
    expect(entries.filter((e) => e.endsWith('.tmp'))).toEqual([])
    expect(JSON.parse(await readFile(path.join(dir, 'tracker.json'), 'utf8'))).toEqual(sample())
  })

  it('a corrupt JSON file throws TrackerStoreError', async () => {
    const file = path.join(dir, 'tracker.json')
    await writeFile(file, '{"version":1,"nodes":[')
    const err = await loadError(new TrackerStore(file))
    expect(err).toBeInstanceOf(TrackerStoreError)
    expect((err as Error).name).toBe('TrackerStoreError')
    expect((err as Error).message).toContain(file)
  })

  it('an empty file throws TrackerStoreError', async () => {
    const file = path.join(dir, 'tracker.json')
    await writeFile(file, '')
    expect(await loadError(new TrackerStore(file))).toBeInstanceOf(TrackerStoreError)
  })

  const wrongShapes: Array<[string, unknown]> = [
    ['null', null],
    ['an array', []],
    ['a number', 42],
    ['version 2', { ...sample(), version: 2 }],
    ['no version', { nodes: [], files: [], credit: [] }],
    ['nodes not an array', { ...sample(), nodes: {} }],
    ['files missing', { version: 1, nodes: [], credit: [] }],
    ['credit missing', { version: 1, nodes: [], files: [] }],
    ['node id not an integer', { ...sample(), nodes: [{ id: 1.5, host: 'h', port: 1, files: [] }] }],
    ['node host not a string', { ...sample(), nodes: [{ id: 1, host: 5, port: 1, files: [] }] }],
    ['node files not an array', { ...sample(), nodes: [{ id: 1, host: 'h', port: 1 }] }],
    ['file hash not hex-64', { ...sample(), files: [{ name: 'a', size: 1, pieceSize: 16384, contentHash: 'xyz', owners: [] }] }],
    ['file hash uppercase', { ...sample(), files: [{ name: 'a', size: 1, pieceSize: 16384, contentHash: 'A'.repeat(64), owners: [] }] }],
    ['file size unsafe', { ...sample(), files: [{ name: 'a', size: 2 ** 60, pieceSize: 16384, contentHash: HASH_A, owners: [] }] }],
    ['file owners missing', { ...sample(), files: [{ name: 'a', size: 1, pieceSize: 16384, contentHash: HASH_A }] }],
    ['credit entry of wrong length', { ...sample(), credit: [[1, 2, 3]] }],
    ['credit value not finite', { ...sample(), credit: [[1, 'lots']] }]
  ]

  for (const [label, value] of wrongShapes) {
    it(`wrong-shape JSON (${label}) throws TrackerStoreError`, async () => {
      const file = path.join(dir, 'tracker.json')
      await writeFile(file, JSON.stringify(value))
      expect(await loadError(new TrackerStore(file))).toBeInstanceOf(TrackerStoreError)
    })
  }

  it('a read error other than ENOENT is passed through, not reported as missing', async () => {
    // the path is a directory: readFile fails with EISDIR
    const store = new TrackerStore(dir)
    const err = await loadError(store)
    expect(err).toBeDefined()
    expect(err).not.toBeInstanceOf(TrackerStoreError)
    expect((err as NodeJS.ErrnoException).code).toBe('EISDIR')
  })
})
