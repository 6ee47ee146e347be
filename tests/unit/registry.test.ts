import { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import type { FileIdentity } from '../../src/messages/index.js'
import { Registry, RegistryError, type RegistrySnapshot } from '../../src/tracker/registry.js'

// ---- helpers ------------------------------------------------------------------------------------

const PRUNE_MS = 25_000

/** A registry on a hand-driven clock. */
function makeRegistry (start = 1_000_000): { reg: Registry, clock: { t: number }, advance: (ms: number) => void } {
  const clock = { t: start }
  const reg = new Registry({ pruneAfterMs: PRUNE_MS, now: () => clock.t })
  return { reg, clock, advance: (ms: number) => { clock.t += ms } }
}

const hashOf = (tag: string): Buffer => createHash('sha256').update(tag).digest()

function file (name: string, tag = name, size = 100_000, pieceSize = 16_384): FileIdentity {
  return { name, size, pieceSize, contentHash: hashOf(tag) }
}

const HOST = '127.0.0.1'
/** Each node id n lives at HOST:(10000+n). */
const port = (id: number): number => 10_000 + id

function join (reg: Registry, ...ids: number[]): void {
  for (const id of ids) reg.register(id, HOST, port(id))
}

function own (reg: Registry, id: number, f: FileIdentity): void {
  reg.own(id, HOST, port(id), f)
}

function need (reg: Registry, id: number, name: string, k = 32): ReturnType<Registry['need']> {
  return reg.need(id, HOST, port(id), name, k)
}

function update (reg: Registry, id: number, f: FileIdentity, received: Array<{ ownerId: number, bytes: number }>): number {
  return reg.update(id, HOST, port(id), f.contentHash, received)
}

/** The RegistryError code thrown by fn, or undefined. */
function codeOf (fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(RegistryError)
    expect((err as RegistryError).name).toBe('RegistryError')
    expect((err as Error).message.length).toBeGreaterThan(0)
    return (err as RegistryError).code
  }
  return undefined
}

const ownerIds = (r: ReturnType<Registry['need']>): number[] => r.owners.map((o) => o.nodeId)

// ---- register -----------------------------------------------------------------------------------

describe('Registry.register', () => {
  it('returns known=false for a new node, then known=true', () => {
    const { reg } = makeRegistry()
    expect(reg.register(1, HOST, 5000)).toEqual({ known: false })
    expect(reg.register(1, HOST, 5000)).toEqual({ known: true })
    expect(reg.nodeCount).toBe(1)
    expect(reg.getNode(1)).toMatchObject({ id: 1, host: HOST, port: 5000 })
  })

  it('records lastSeen from the injected clock and refreshes it on heartbeat', () => {
    const { reg, advance, clock } = makeRegistry()
    reg.register(1, HOST, 5000)
    expect(reg.getNode(1)?.lastSeen).toBe(clock.t)
    advance(1234)
    reg.register(1, HOST, 5000)
    expect(reg.getNode(1)?.lastSeen).toBe(clock.t)
  })

  it('a known node re-registering from a new address moves to that address', () => {
    const { reg } = makeRegistry()
    reg.register(1, HOST, 5000)
    expect(reg.register(1, '10.0.0.2', 6000)).toEqual({ known: true })
    expect(reg.getNode(1)).toMatchObject({ host: '10.0.0.2', port: 6000 })
  })
})

// ---- authorisation ------------------------------------------------------------------------------

describe('Registry refuses unknown nodes and foreign addresses', () => {
  const f = file('a.txt')
  const ops: Array<[string, (reg: Registry, id: number, host: string, p: number) => unknown]> = [
    ['own', (reg, id, host, p) => reg.own(id, host, p, f)],
    ['need', (reg, id, host, p) => reg.need(id, host, p, 'a.txt', 10)],
    ['update', (reg, id, host, p) => reg.update(id, host, p, f.contentHash, [{ ownerId: 2, bytes: 10 }])],
    ['exit', (reg, id, host, p) => reg.exit(id, host, p)]
  ]

  for (const [name, op] of ops) {
    it(`${name}: unknown node -> 'unknown-node'`, () => {
      const { reg } = makeRegistry()
      join(reg, 2)
      own(reg, 2, f)
      expect(codeOf(() => op(reg, 1, HOST, port(1)))).toBe('unknown-node')
    })

    it(`${name}: node id used from another port or host -> 'forbidden', and nothing changes`, () => {
      const { reg } = makeRegistry()
      join(reg, 1, 2)
      own(reg, 2, f)
      const before = JSON.stringify(reg.snapshot())
      const version = reg.version
      expect(codeOf(() => op(reg, 1, HOST, port(1) + 1))).toBe('forbidden')
      expect(codeOf(() => op(reg, 1, '10.9.9.9', port(1)))).toBe('forbidden')
      expect(JSON.stringify(reg.snapshot())).toBe(before)
      expect(reg.version).toBe(version)
      expect(reg.creditOf(2)).toBe(0)
    })
  }

  it('a forbidden request does not refresh the real node\'s lastSeen', () => {
    const { reg, advance } = makeRegistry()
    join(reg, 1)
    const seen = reg.getNode(1)?.lastSeen
    advance(1000)
    expect(codeOf(() => reg.need(1, HOST, port(1) + 1, 'x', 1))).toBe('forbidden')
    expect(reg.getNode(1)?.lastSeen).toBe(seen)
  })

  it('update for unknown content -> not-found', () => {
    const { reg } = makeRegistry()
    join(reg, 1)
    expect(codeOf(() => update(reg, 1, file('nope'), [{ ownerId: 2, bytes: 5 }]))).toBe('not-found')
  })
})

// ---- own / need ---------------------------------------------------------------------------------

describe('Registry.own and need', () => {
  it('need for an unknown name returns no file', () => {
    const { reg } = makeRegistry()
    join(reg, 1)
    expect(need(reg, 1, 'missing.txt')).toEqual({ file: null, variants: 0, owners: [] })
  })

  it('need returns the file identity and owners with their address and credit', () => {
    const { reg } = makeRegistry()
    join(reg, 1, 2)
    const f = file('a.txt')
    own(reg, 2, f)
    const r = need(reg, 1, 'a.txt')
    expect(r.file).toEqual(f)
    expect(r.variants).toBe(1)
    expect(r.owners).toEqual([{ nodeId: 2, host: HOST, port: port(2), credit: 0, complete: true }])
    expect(reg.fileCount).toBe(1)
  })

  it('need excludes the requester itself', () => {
    const { reg } = makeRegistry()
    join(reg, 1, 2, 3)
    const f = file('a.txt')
    own(reg, 1, f)
    own(reg, 2, f)
    own(reg, 3, f)
    expect(ownerIds(need(reg, 2, 'a.txt')).sort()).toEqual([1, 3])
    expect(ownerIds(need(reg, 1, 'a.txt')).sort()).toEqual([2, 3])
  })

  it('a sole owner asking for its own file gets the file but no owners', () => {
    const { reg } = makeRegistry()
    join(reg, 1)
    own(reg, 1, file('a.txt'))
    const r = need(reg, 1, 'a.txt')
    expect(r.file?.name).toBe('a.txt')
    expect(r.owners).toEqual([])
  })

  it('need returns only live owners: a pruned or exited owner is gone', () => {
    const { reg, advance } = makeRegistry()
    join(reg, 1, 2, 3, 4)
    const f = file('a.txt')
    own(reg, 2, f)
    own(reg, 3, f)
    own(reg, 4, f)
    reg.exit(4, HOST, port(4))
    advance(PRUNE_MS / 2)
    join(reg, 1, 2) // node 3 goes silent
    advance(PRUNE_MS / 2 + 1)
    expect(reg.prune()).toEqual([3])
    expect(ownerIds(need(reg, 1, 'a.txt'))).toEqual([2])
  })

  it('owners are sorted by credit descending, then by id ascending, and capped at k', () => {
    const { reg } = makeRegistry()
    join(reg, 1, 2, 3, 4, 5, 6, 9)
    const f = file('a.txt', 'a', 10_000)
    for (const id of [6, 5, 4, 3, 2]) own(reg, id, f)
    // credit: 4 -> 300, 2 -> 100, 5 -> 100, 3 and 6 -> 0
    update(reg, 9, f, [{ ownerId: 4, bytes: 300 }, { ownerId: 2, bytes: 100 }, { ownerId: 5, bytes: 100 }])
    expect(ownerIds(need(reg, 1, 'a.txt'))).toEqual([4, 2, 5, 3, 6])
    expect(need(reg, 1, 'a.txt').owners.map((o) => o.credit)).toEqual([300, 100, 100, 0, 0])
    expect(ownerIds(need(reg, 1, 'a.txt', 3))).toEqual([4, 2, 5])
    expect(ownerIds(need(reg, 1, 'a.txt', 1))).toEqual([4])
    expect(ownerIds(need(reg, 1, 'a.txt', 0))).toEqual([])
  })

  it('owning the same file twice is idempotent and does not bump version', () => {
    const { reg } = makeRegistry()
    join(reg, 1, 2)
    const f = file('a.txt')
    own(reg, 2, f)
    const v = reg.version
    own(reg, 2, f)
    expect(reg.version).toBe(v)
    expect(ownerIds(need(reg, 1, 'a.txt'))).toEqual([2])
    expect(reg.getNode(2)?.files.size).toBe(1)
  })

  it('a name with two contents: variants=2, offers the content with more owners, never mixes owners', () => {
    const { reg } = makeRegistry()
    join(reg, 1, 2, 3, 4, 5)
    const v1 = file('same.txt', 'content-1', 1000)
    const v2 = file('same.txt', 'content-2', 2000)
    own(reg, 2, v1)
    own(reg, 3, v2)
    own(reg, 4, v2)
    expect(reg.fileCount).toBe(2)
    let r = need(reg, 1, 'same.txt')
    expect(r.variants).toBe(2)
    expect(r.file?.contentHash.equals(v2.contentHash)).toBe(true)
    expect(r.file?.size).toBe(2000)
    expect(ownerIds(r).sort()).toEqual([3, 4])

    // v1 overtakes v2: the offer switches, still without mixing
    own(reg, 5, v1)
    own(reg, 1, v1) // the requester's own ownership does not count for itself...
    r = need(reg, 3, 'same.txt')
    expect(r.variants).toBe(2)
    expect(r.file?.contentHash.equals(v1.contentHash)).toBe(true)
    expect(ownerIds(r).sort()).toEqual([1, 2, 5])

    // ...so for node 1, v1 has owners {2,5} and v2 has {3,4}: a tie, and whichever wins is unmixed
    r = need(reg, 1, 'same.txt')
    const ids = ownerIds(r).sort()
    if (r.file?.contentHash.equals(v1.contentHash) === true) expect(ids).toEqual([2, 5])
    else expect(ids).toEqual([3, 4])
  })

  it('the requester\'s own ownership is not counted when choosing a variant', () => {
    const { reg } = makeRegistry()
    join(reg, 1, 2, 3, 4)
    const v1 = file('x.bin', 'one')
    const v2 = file('x.bin', 'two')
    own(reg, 1, v1)
    own(reg, 2, v1)
    own(reg, 3, v2)
    own(reg, 4, v2)
    // raw counts are 2 vs 2; for node 1, v1 has only one other owner
    const r = need(reg, 1, 'x.bin')
    expect(r.file?.contentHash.equals(v2.contentHash)).toBe(true)
    expect(ownerIds(r).sort()).toEqual([3, 4])
  })

  it('when one variant loses all its owners, variants drops back to 1', () => {
    const { reg } = makeRegistry()
    join(reg, 1, 2, 3)
    own(reg, 2, file('n.txt', 'one'))
    own(reg, 3, file('n.txt', 'two'))
    expect(need(reg, 1, 'n.txt').variants).toBe(2)
    reg.exit(3, HOST, port(3))
    const r = need(reg, 1, 'n.txt')
    expect(r.variants).toBe(1)
    expect(ownerIds(r)).toEqual([2])
    expect(reg.fileCount).toBe(1)
  })

  // Regression (fixed): files are keyed by content hash only, and the first announcer's name wins. A second node
  // that shares identical bytes under another name is filed under the first name, so NEED for the
  // second name finds nothing although that node announced it.
  it('the same content shared under two names can be found under both names', () => {
    const { reg } = makeRegistry()
    join(reg, 1, 2, 3)
    own(reg, 2, file('a.txt', 'identical-bytes'))
    own(reg, 3, file('b.txt', 'identical-bytes'))
    const r = need(reg, 1, 'b.txt')
    expect(r.file?.name).toBe('b.txt')
    expect(ownerIds(r)).toContain(3)
  })
})

// ---- credit -------------------------------------------------------------------------------------

describe('Registry.update (credit)', () => {
  it('credits owners of that content, at most the file size per reporter in total (one download is one file)', () => {
    const { reg } = makeRegistry()
    join(reg, 1, 2, 3, 4)
    const f = file('a.txt', 'a', 1000)
    own(reg, 2, f)
    own(reg, 3, f)
    expect(update(reg, 1, f, [{ ownerId: 2, bytes: 400 }, { ownerId: 3, bytes: 5000 }])).toBe(1000)
    expect(reg.creditOf(2)).toBe(400)
    expect(reg.creditOf(3)).toBe(600)
    // A second report of the same download adds nothing...
    expect(update(reg, 1, f, [{ ownerId: 2, bytes: 600 }])).toBe(0)
    expect(reg.creditOf(2)).toBe(400)
    // ...while partial reports add up to the size: another reporter, in two halves.
    expect(update(reg, 4, f, [{ ownerId: 2, bytes: 500 }])).toBe(500)
    expect(update(reg, 4, f, [{ ownerId: 2, bytes: 700 }])).toBe(500)
    expect(reg.creditOf(2)).toBe(1400)
  })

  // Regression (fixed): the cap is applied per entry, not per owner: one UPDATE listing the same owner several times
  // (the codec allows up to 64 entries and does not reject repeats) credits that owner several times
  // the file size, although update() documents "never more than the file's size per report".
  it('one report cannot credit an owner more than the file size by repeating its entry', () => {
    const { reg } = makeRegistry()
    join(reg, 1, 2)
    const f = file('a.txt', 'a', 1000)
    own(reg, 2, f)
    update(reg, 1, f, [{ ownerId: 2, bytes: 1000 }, { ownerId: 2, bytes: 1000 }, { ownerId: 2, bytes: 1000 }])
    expect(reg.creditOf(2)).toBeLessThanOrEqual(1000)
  })

  it('a self-credit gives nothing', () => {
    const { reg } = makeRegistry()
    join(reg, 1, 2)
    const f = file('a.txt', 'a', 1000)
    own(reg, 1, f)
    own(reg, 2, f)
    const v = reg.version
    expect(update(reg, 1, f, [{ ownerId: 1, bytes: 999 }])).toBe(0)
    expect(reg.creditOf(1)).toBe(0)
    expect(reg.version).toBe(v)
  })

  it('gives nothing to registered nodes that do not own that content, nor to unknown ids', () => {
    const { reg } = makeRegistry()
    join(reg, 1, 2, 3)
    const f = file('a.txt', 'a', 1000)
    const g = file('b.txt', 'b', 1000)
    own(reg, 2, f)
    own(reg, 3, g)
    expect(update(reg, 1, f, [{ ownerId: 3, bytes: 500 }, { ownerId: 77, bytes: 500 }, { ownerId: 2, bytes: 10 }])).toBe(10)
    expect(reg.creditOf(3)).toBe(0)
    expect(reg.creditOf(77)).toBe(0)
    expect(reg.creditOf(2)).toBe(10)
  })

  it('credit outlives the node\'s registration', () => {
    const { reg } = makeRegistry()
    join(reg, 1, 2)
    const f = file('a.txt', 'a', 1000)
    own(reg, 2, f)
    update(reg, 1, f, [{ ownerId: 2, bytes: 700 }])
    reg.exit(2, HOST, port(2))
    expect(reg.creditOf(2)).toBe(700)
    join(reg, 2)
    own(reg, 2, f)
    expect(need(reg, 1, 'a.txt').owners[0]?.credit).toBe(700)
  })
})

// ---- exit and prune -----------------------------------------------------------------------------

describe('Registry.exit and prune', () => {
  it('exit removes the node and its ownerships, and files left with no owner', () => {
    const { reg } = makeRegistry()
    join(reg, 1, 2, 3)
    const f = file('a.txt')
    const g = file('only2.txt')
    own(reg, 2, f)
    own(reg, 3, f)
    own(reg, 2, g)
    const v = reg.version
    reg.exit(2, HOST, port(2))
    expect(reg.version).toBeGreaterThan(v)
    expect(reg.getNode(2)).toBeUndefined()
    expect(reg.nodeCount).toBe(2)
    expect(ownerIds(need(reg, 1, 'a.txt'))).toEqual([3])
    expect(need(reg, 1, 'only2.txt')).toEqual({ file: null, variants: 0, owners: [] })
    expect(reg.fileCount).toBe(1)
    // after exit the node is unknown again
    expect(codeOf(() => need(reg, 2, 'a.txt'))).toBe('unknown-node')
    expect(reg.register(2, HOST, port(2))).toEqual({ known: false })
  })

  it('prune removes only nodes silent for longer than pruneAfterMs, with their ownerships and orphan files', () => {
    const { reg, advance } = makeRegistry()
    join(reg, 1, 2, 3)
    const shared = file('shared.txt')
    const lonely = file('lonely.txt')
    own(reg, 2, shared)
    own(reg, 3, shared)
    own(reg, 3, lonely)

    advance(PRUNE_MS)
    // exactly pruneAfterMs of silence is not "longer than"
    expect(reg.prune()).toEqual([])
    join(reg, 1, 2)
    advance(1)
    const v = reg.version
    expect(reg.prune()).toEqual([3])
    expect(reg.version).toBeGreaterThan(v)
    expect(reg.getNode(3)).toBeUndefined()
    expect(reg.nodeCount).toBe(2)
    expect(reg.fileCount).toBe(1)
    expect(ownerIds(need(reg, 1, 'shared.txt'))).toEqual([2])
    expect(need(reg, 1, 'lonely.txt').file).toBeNull()
    expect(reg.snapshot().files.map((x) => x.name)).toEqual(['shared.txt'])
  })

  it('any authorised request counts as a sign of life', () => {
    const { reg, advance } = makeRegistry()
    join(reg, 1, 2)
    advance(PRUNE_MS - 1)
    need(reg, 1, 'whatever')
    advance(2)
    expect(reg.prune()).toEqual([2])
    expect(reg.getNode(1)).toBeDefined()
  })

  it('a prune that removes nothing does not bump version', () => {
    const { reg, advance } = makeRegistry()
    join(reg, 1)
    const v = reg.version
    advance(10)
    expect(reg.prune()).toEqual([])
    expect(reg.version).toBe(v)
  })
})

// ---- snapshot / restore -------------------------------------------------------------------------

describe('Registry snapshot and restore', () => {
  function populated (): { reg: Registry, f: FileIdentity, g: FileIdentity, g2: FileIdentity } {
    const { reg } = makeRegistry()
    join(reg, 1, 2, 3)
    reg.register(4, '192.168.1.4', 4444)
    const f = file('a.txt', 'a', 5000, 16_384)
    const g = file('b.txt', 'b', 70_000, 32_768)
    const g2 = file('b.txt', 'b2', 80_000, 16_384)
    own(reg, 1, f)
    own(reg, 2, f)
    own(reg, 2, g)
    own(reg, 3, g2)
    update(reg, 3, f, [{ ownerId: 1, bytes: 1234 }, { ownerId: 2, bytes: 99 }])
    return { reg, f, g, g2 }
  }

  const normalise = (s: RegistrySnapshot): unknown => ({
    version: s.version,
    nodes: [...s.nodes].map((n) => ({ ...n, files: [...n.files].sort() })).sort((a, b) => a.id - b.id),
    files: [...s.files].map((f) => ({ ...f, owners: [...f.owners].sort() })).sort((a, b) => a.contentHash.localeCompare(b.contentHash)),
    credit: [...s.credit].sort((a, b) => a[0] - b[0])
  })

  it('snapshot survives JSON and restores into a fresh registry with the same nodes, files and credit', () => {
    const { reg, g, g2 } = populated()
    const snap = JSON.parse(JSON.stringify(reg.snapshot())) as RegistrySnapshot
    expect(snap.version).toBe(1)
    expect(snap.nodes).toHaveLength(4)
    expect(snap.files).toHaveLength(3)

    const fresh = makeRegistry(5_000_000).reg
    fresh.restore(snap)
    expect(normalise(fresh.snapshot())).toEqual(normalise(reg.snapshot()))
    expect(fresh.nodeCount).toBe(4)
    expect(fresh.fileCount).toBe(3)
    expect(fresh.creditOf(1)).toBe(1234)
    expect(fresh.creditOf(2)).toBe(99)
    expect(fresh.getNode(4)).toMatchObject({ host: '192.168.1.4', port: 4444 })

    // behaviour, not just shape: node 4's address is enforced, owners ordered by restored credit
    expect(codeOf(() => fresh.need(4, HOST, port(4), 'a.txt', 5))).toBe('forbidden')
    const r = fresh.need(4, '192.168.1.4', 4444, 'a.txt', 5)
    expect(r.owners.map((o) => [o.nodeId, o.credit])).toEqual([[1, 1234], [2, 99]])
    expect(r.file?.size).toBe(5000)
    expect(r.file?.pieceSize).toBe(16_384)
    const b = fresh.need(1, HOST, port(1), 'b.txt', 5)
    expect(b.variants).toBe(2)
    expect([g.contentHash.toString('hex'), g2.contentHash.toString('hex')]).toContain(b.file?.contentHash.toString('hex'))
    expect(Buffer.isBuffer(b.file?.contentHash)).toBe(true)
    // restored nodes are known: a heartbeat does not ask them to re-announce
    expect(fresh.register(3, HOST, port(3))).toEqual({ known: true })
  })

  it('restored nodes count as just seen: not pruned until a full interval passes on the new clock', () => {
    const { reg } = populated()
    const snap = reg.snapshot()
    const { reg: fresh, advance } = makeRegistry(999_000_000) // the tracker was away for a long time
    fresh.restore(snap)
    expect(fresh.prune()).toEqual([])
    advance(PRUNE_MS)
    expect(fresh.prune()).toEqual([])
    expect(fresh.nodeCount).toBe(4)
    join(fresh, 1)
    advance(1)
    expect(fresh.prune().sort()).toEqual([2, 3, 4])
    expect(fresh.nodeCount).toBe(1)
  })

  it('restore skips ownerships of nodes the snapshot does not list', () => {
    const snap: RegistrySnapshot = {
      version: 1,
      nodes: [{ id: 1, host: HOST, port: port(1), files: [] }],
      files: [{ name: 'x.txt', size: 10, pieceSize: 16_384, contentHash: hashOf('x').toString('hex'), owners: [1, 42] }],
      credit: []
    }
    const { reg } = makeRegistry()
    reg.restore(snap)
    expect(reg.fileCount).toBe(1)
    expect(reg.snapshot().files[0]?.owners).toEqual([1])
    expect(reg.getNode(42)).toBeUndefined()
  })
})

// ---- version ------------------------------------------------------------------------------------

describe('Registry.version', () => {
  it('increments on every change and not on a pure heartbeat from the same address', () => {
    const { reg, advance } = makeRegistry()
    let v = reg.version
    const bumped = (): boolean => { const changed = reg.version > v; v = reg.version; return changed }

    reg.register(1, HOST, port(1))
    expect(bumped()).toBe(true) // join
    reg.register(2, HOST, port(2))
    expect(bumped()).toBe(true)

    advance(500)
    reg.register(1, HOST, port(1))
    expect(bumped()).toBe(false) // heartbeat

    reg.register(1, HOST, 7777)
    expect(bumped()).toBe(true) // address change
    reg.register(1, HOST, port(1))
    expect(bumped()).toBe(true)

    const f = file('a.txt', 'a', 1000)
    own(reg, 2, f)
    expect(bumped()).toBe(true)
    need(reg, 1, 'a.txt')
    expect(bumped()).toBe(false) // a read
    update(reg, 1, f, [{ ownerId: 2, bytes: 10 }])
    expect(bumped()).toBe(true)
    update(reg, 1, f, [{ ownerId: 1, bytes: 10 }])
    expect(bumped()).toBe(false) // credited nothing
    reg.exit(2, HOST, port(2))
    expect(bumped()).toBe(true)
    advance(PRUNE_MS + 1)
    reg.prune()
    expect(bumped()).toBe(true)
  })
})

describe('anti-replay window', () => {
  const T = 1_700_000_000_000_000 // a node's microsecond clock

  it('accepts concurrent requests in any order, each once; a retried one is a retransmit', () => {
    const { reg } = makeRegistry()
    expect(reg.acceptSeq(1, T + 2, 20)).toBe('new')
    expect(reg.acceptSeq(1, T + 1, 10)).toBe('new')
    expect(reg.acceptSeq(1, T + 1, 10)).toBe('retransmit')
    expect(reg.acceptSeq(1, T + 2, 20)).toBe('retransmit')
    // The same number with another txid is not the same request.
    expect(reg.acceptSeq(1, T + 1, 11)).toBe('replay')
    // Another node's numbers are its own.
    expect(reg.acceptSeq(2, T + 1, 10)).toBe('new')
  })

  it('refuses numbers below the window once it has moved on, and numbers far below the newest', () => {
    const { reg } = makeRegistry()
    const window = 4
    const r = new Registry({ pruneAfterMs: PRUNE_MS, seqWindow: window })
    for (let i = 1; i <= window + 2; i++) expect(r.acceptSeq(1, T + i * 10, i)).toBe('new')
    // T+10 and T+20 fell out of the window: they are replays now, even though once accepted.
    expect(r.acceptSeq(1, T + 10, 1)).toBe('replay')
    expect(r.acceptSeq(1, T + 20, 2)).toBe('replay')
    // A gap above the floor is still fillable (a request delayed in the network).
    expect(r.acceptSeq(1, T + 35, 99)).toBe('new')
    // Far older than the newest: too old to be a retry.
    expect(reg.acceptSeq(3, T, 1)).toBe('new')
    expect(reg.acceptSeq(3, 1, 1)).toBe('replay')
  })

  it('after a restore, everything up to the highest number seen is a replay', () => {
    const { reg } = makeRegistry()
    expect(reg.acceptSeq(1, T + 5, 5)).toBe('new')
    expect(reg.acceptSeq(1, T + 3, 3)).toBe('new')
    const { reg: again } = makeRegistry()
    again.restore(reg.snapshot())
    expect(again.acceptSeq(1, T + 3, 3)).toBe('replay')
    expect(again.acceptSeq(1, T + 4, 4)).toBe('replay')
    expect(again.acceptSeq(1, T + 6, 6)).toBe('new')
  })
})
