import { readFile, writeFile, mkdir } from 'node:fs/promises'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { MessageType, TrackerErrorCode, type NeedReplyMsg } from '../../src/messages/index.js'
import type { RemoteAddress } from '../../src/transport/endpoint.js'
import { Prng } from '../../src/transport/prng.js'
import { cleanup, makeHome, readLog, trackerDb, startTracker, waitFor, type TrackerProc } from '../helpers/processes.js'
import { fakeFile, LOCALHOST, localhost, runCli, WireClient } from '../helpers/wire.js'

const homes: string[] = []
const clients: WireClient[] = []
afterEach(async () => {
  await Promise.all(clients.splice(0).map(async (c) => await c.close()))
  await cleanup(...homes.splice(0))
})

/** A fresh home with a tracker asking for 0.4 s heartbeats (so nodes are pruned after 1 s of silence). */
async function trackerSetup (heartbeat = '0.4'): Promise<{ home: string, tracker: TrackerProc, to: RemoteAddress }> {
  const home = await makeHome()
  homes.push(home)
  const tracker = await startTracker(home, ['--heartbeat', heartbeat])
  return { home, tracker, to: localhost(tracker.port) }
}

async function client (): Promise<WireClient> {
  const c = await WireClient.open()
  clients.push(c)
  return c
}

/** A registered node, kept alive by heartbeats for the rest of the test. */
async function node (to: RemoteAddress, id: number): Promise<WireClient> {
  const c = await client()
  const ack = await c.register(to, id)
  expect(ack.known).toBe(false)
  c.keepAlive(to, id)
  return c
}

const ownerIds = (r: NeedReplyMsg): number[] => r.owners.map((o) => o.nodeId)

describe('tracker over the wire', () => {
  it('REGISTER: first join is unknown, the next beat is known, and the reply echoes --heartbeat in ms', async () => {
    const { to, home } = await trackerSetup()
    const a = await client()
    const first = await a.register(to, 11)
    expect(first).toMatchObject({ type: MessageType.RegisterAck, known: false, heartbeatMs: 400 })
    const second = await a.register(to, 11)
    expect(second).toMatchObject({ type: MessageType.RegisterAck, known: true, heartbeatMs: 400 })
    // Another id from the same socket is another node.
    expect((await a.register(to, 12)).known).toBe(false)
    await waitFor('join records in the tracker log', async () =>
      (await readLog(home, 'tracker')).filter((r) => r.event === 'join').length === 2, 5_000)
  })

  it('OWN then NEED from another node lists the owner at the source address the tracker saw', async () => {
    const { to } = await trackerSetup()
    const prng = new Prng(101)
    const a = await node(to, 21)
    const b = await node(to, 22)
    const file = fakeFile(prng, 'movie.bin', 3_000_000)
    await a.own(to, 21, file)

    const reply = await b.need(to, 22, 'movie.bin')
    expect(reply.file).toEqual(file)
    expect(reply.variants).toBe(1)
    expect(reply.owners).toEqual([{ nodeId: 21, host: LOCALHOST, port: a.port, credit: 0, complete: true }])
    // The address is the socket the OWN came from, not the requester's.
    expect(a.port).not.toBe(b.port)
  })

  it('NEED never lists the requester itself', async () => {
    const { to } = await trackerSetup()
    const prng = new Prng(102)
    const a = await node(to, 31)
    const b = await node(to, 32)
    const file = fakeFile(prng, 'shared.bin')
    await a.own(to, 31, file)
    // A alone owns it: A asking sees the file but no owner.
    const own = await a.need(to, 31, 'shared.bin')
    expect(own.file?.contentHash).toEqual(file.contentHash)
    expect(own.owners).toEqual([])
    await b.own(to, 32, file)
    expect(ownerIds(await a.need(to, 31, 'shared.bin'))).toEqual([32])
    expect(ownerIds(await b.need(to, 32, 'shared.bin'))).toEqual([31])
  })

  it('NEED for a name nobody owns returns no file, no variants and no owners', async () => {
    const { to } = await trackerSetup()
    const a = await node(to, 41)
    const reply = await a.need(to, 41, 'nobody-has-this.bin')
    expect(reply).toMatchObject({ type: MessageType.NeedReply, file: null, variants: 0, owners: [] })
  })

  it('two contents under one name are reported as variants, and the most-owned one is offered', async () => {
    const { to } = await trackerSetup()
    const prng = new Prng(111)
    const x = fakeFile(prng, 'dup.bin', 1000)
    const y = fakeFile(prng, 'dup.bin', 2000)
    const [a, b, c, d] = await Promise.all([131, 132, 133, 134].map(async (id) => await node(to, id)))
    await a!.own(to, 131, x)
    await b!.own(to, 132, y)
    await c!.own(to, 133, y)
    const reply = await d!.need(to, 134, 'dup.bin')
    expect(reply.variants).toBe(2)
    expect(reply.file).toEqual(y)
    expect(ownerIds(reply)).toEqual([132, 133])
    // The same bytes under a second name are found under that name too.
    await a!.own(to, 131, { ...y, name: 'alias.bin' })
    const alias = await d!.need(to, 134, 'alias.bin')
    expect(alias).toMatchObject({ variants: 1, file: { ...y, name: 'alias.bin' } })
    expect(ownerIds(alias)).toEqual([131])
  })

  it('owners are sorted by upload credit after UPDATE, and one report credits at most the file size', async () => {
    const { to, home } = await trackerSetup()
    const prng = new Prng(103)
    const file = fakeFile(prng, 'ranked.bin', 1_000_000)
    const a = await node(to, 51)
    const b = await node(to, 52)
    const c = await node(to, 53)
    const d = await node(to, 54)
    await a.own(to, 51, file)
    await b.own(to, 52, file)
    // Equal credit: lower id first.
    expect(ownerIds(await c.need(to, 53, 'ranked.bin'))).toEqual([51, 52])

    // C downloaded more from B than from A.
    await c.update(to, 53, file.contentHash, [{ ownerId: 52, bytes: 700_000 }, { ownerId: 51, bytes: 300_000 }])
    const ranked = await c.need(to, 53, 'ranked.bin')
    expect(ranked.owners.map((o) => [o.nodeId, o.credit])).toEqual([[52, 700_000], [51, 300_000]])

    // A report claiming more than the file's size is capped at the size: A overtakes B by exactly
    // that. It comes from D, which reported nothing for this content yet, so the cap on a single
    // report is what is measured here whether or not reports are also capped in total (next test).
    await d.update(to, 54, file.contentHash, [{ ownerId: 51, bytes: 5_000_000_000 }])
    const capped = await c.need(to, 53, 'ranked.bin')
    expect(capped.owners.map((o) => [o.nodeId, o.credit])).toEqual([[51, 1_300_000], [52, 700_000]])

    const updates = await waitFor('update records in the tracker log', async () => {
      const recs = (await readLog(home, 'tracker')).filter((r) => r.event === 'update')
      return recs.length >= 2 ? recs : undefined
    }, 5_000)
    expect(updates.map((r) => [r.nodeId, r.credited])).toEqual([[53, 1_000_000], [54, 1_000_000]])
  })

  it('one reporter credits at most the file size for a content in total, across all its reports', async () => {
    const { to, home } = await trackerSetup()
    const prng = new Prng(112)
    const file = fakeFile(prng, 'capped.bin', 1_000_000)
    const a = await node(to, 141)
    const b = await node(to, 142)
    const c = await node(to, 143)
    const d = await node(to, 144)
    await a.own(to, 141, file)
    await b.own(to, 142, file)
    const credits = async (): Promise<number[][]> => (await d.need(to, 144, 'capped.bin')).owners.map((o) => [o.nodeId, o.credit])

    // 600 KB, then 300 KB: both fit in the file's size and are credited in full.
    await c.update(to, 143, file.contentHash, [{ ownerId: 141, bytes: 600_000 }])
    await c.update(to, 143, file.contentHash, [{ ownerId: 142, bytes: 300_000 }])
    expect(await credits()).toEqual([[141, 600_000], [142, 300_000]])
    // 500 KB more: only the 100 KB left of C's allowance for this content is credited...
    await c.update(to, 143, file.contentHash, [{ ownerId: 142, bytes: 500_000 }])
    expect(await credits()).toEqual([[141, 600_000], [142, 400_000]])
    // ...and after that, nothing: repeating reports of one download gains nothing.
    for (let i = 0; i < 3; i++) await c.update(to, 143, file.contentHash, [{ ownerId: 142, bytes: 1_000_000 }])
    expect(await credits()).toEqual([[141, 600_000], [142, 400_000]])
    // Another reporter has its own allowance (control: the cap is per reporter, not global).
    await d.update(to, 144, file.contentHash, [{ ownerId: 142, bytes: 250_000 }])
    expect(await credits()).toEqual([[142, 650_000], [141, 600_000]])

    const updates = await waitFor('7 update records in the tracker log', async () => {
      const recs = (await readLog(home, 'tracker')).filter((r) => r.event === 'update')
      return recs.length >= 7 ? recs : undefined
    }, 5_000)
    expect(updates.map((r) => r.credited)).toEqual([600_000, 300_000, 100_000, 0, 0, 0, 250_000])
  })

  it('UPDATE crediting oneself (or a non-owner) gives nothing; UPDATE for unknown content is NotFound', async () => {
    const { to, home } = await trackerSetup()
    const prng = new Prng(104)
    const file = fakeFile(prng, 'self.bin', 1_000_000)
    const a = await node(to, 61)
    const b = await node(to, 62)
    const c = await node(to, 63)
    await a.own(to, 61, file)
    await b.own(to, 62, file)

    // B claims it "received" bytes from itself, and from C which does not own the file.
    await b.update(to, 62, file.contentHash, [{ ownerId: 62, bytes: 900_000 }, { ownerId: 63, bytes: 900_000 }])
    const after = await c.need(to, 63, 'self.bin')
    expect(after.owners.map((o) => [o.nodeId, o.credit])).toEqual([[61, 0], [62, 0]])

    const unknown = await c.refused(to, { type: MessageType.Update, nodeId: 63, contentHash: Buffer.alloc(32, 7), received: [{ ownerId: 61, bytes: 1 }] })
    expect(unknown.code).toBe(TrackerErrorCode.NotFound)

    // A legitimate credit after the self-credit, so the database written afterwards reflects both.
    await c.update(to, 63, file.contentHash, [{ ownerId: 61, bytes: 10 }])
    const db = await waitFor('tracker.json with the credit of node 61', async () => {
      const s = await trackerDb(home)
      return s?.credit?.some(([id]: [number, number]) => id === 61) === true ? s : undefined
    }, 5_000)
    expect(db.credit).toEqual([[61, 10]])
    const selfRecord = await waitFor('the update record of node 62', async () =>
      (await readLog(home, 'tracker')).find((r) => r.event === 'update' && r.nodeId === 62), 5_000)
    expect(selfRecord.credited).toBe(0)
  })

  it('EXIT removes the node and all its ownerships; a file whose last owner left is forgotten', async () => {
    const { to } = await trackerSetup()
    const prng = new Prng(106)
    const both = fakeFile(prng, 'both.bin')
    const onlyA = fakeFile(prng, 'only-a.bin')
    const a = await client()
    expect((await a.register(to, 81)).known).toBe(false)
    const b = await node(to, 82)
    const c = await node(to, 83)
    await a.own(to, 81, both)
    await a.own(to, 81, onlyA)
    await b.own(to, 82, both)
    expect(ownerIds(await c.need(to, 83, 'both.bin'))).toEqual([81, 82])
    expect(ownerIds(await c.need(to, 83, 'only-a.bin'))).toEqual([81])

    await a.exit(to, 81)
    expect(ownerIds(await c.need(to, 83, 'both.bin'))).toEqual([82])
    expect(await c.need(to, 83, 'only-a.bin')).toMatchObject({ file: null, variants: 0, owners: [] })
    // The tracker forgot A entirely: its next request is refused and it must join again.
    expect((await a.refused(to, { type: MessageType.Own, complete: true, nodeId: 81, file: onlyA })).code).toBe(TrackerErrorCode.UnknownNode)
    expect((await a.register(to, 81)).known).toBe(false)
  })

  it('OWN, NEED, UPDATE and EXIT from an unregistered node are refused with UnknownNode', async () => {
    const { to } = await trackerSetup()
    const prng = new Prng(107)
    const stranger = await client()
    const file = fakeFile(prng, 'x.bin')
    const refusals = [
      await stranger.refused(to, { type: MessageType.Own, complete: true, nodeId: 91, file }),
      await stranger.refused(to, { type: MessageType.Need, nodeId: 91, name: 'x.bin' }),
      await stranger.refused(to, { type: MessageType.Update, nodeId: 91, contentHash: file.contentHash, received: [] }),
      await stranger.refused(to, { type: MessageType.Exit, nodeId: 91 })
    ]
    expect(refusals.map((r) => r.code)).toEqual(Array(4).fill(TrackerErrorCode.UnknownNode))
    expect(refusals.every((r) => r.text.length > 0)).toBe(true)
    // Nothing was recorded: a registered node still sees no such file.
    const b = await node(to, 92)
    expect((await b.need(to, 92, 'x.bin')).file).toBeNull()
  })

  it('a registered node id claimed by another key is refused (Forbidden / BadSignature), and changes nothing', async () => {
    const { to, home } = await trackerSetup()
    const prng = new Prng(108)
    const real = await node(to, 101)
    const file = fakeFile(prng, 'mine.bin')
    await real.own(to, 101, file)
    // Another process: its own socket and its own key.
    const impostor = await client()
    expect(impostor.identity.publicKey.equals(real.identity.publicKey)).toBe(false)
    const register = await impostor.refused(to, { type: MessageType.Register, nodeId: 101 })
    expect(register.code).toBe(TrackerErrorCode.Forbidden)
    // The rest are signed with a key the id is not bound to.
    const forged = [
      await impostor.refused(to, { type: MessageType.Own, complete: true, nodeId: 101, file: fakeFile(prng, 'forged.bin') }),
      await impostor.refused(to, { type: MessageType.Need, nodeId: 101, name: 'mine.bin' }),
      await impostor.refused(to, { type: MessageType.Update, nodeId: 101, contentHash: file.contentHash, received: [] }),
      await impostor.refused(to, { type: MessageType.Exit, nodeId: 101 })
    ]
    expect(forged.map((r) => r.code)).toEqual(Array(4).fill(TrackerErrorCode.BadSignature))
    const observer = await node(to, 102)
    const reply = await observer.need(to, 102, 'mine.bin')
    expect(reply.owners).toEqual([{ nodeId: 101, host: LOCALHOST, port: real.port, credit: 0, complete: true }])
    expect((await observer.need(to, 102, 'forged.bin')).file).toBeNull()
    // The real node still speaks for its id.
    expect((await real.register(to, 101)).known).toBe(true)
    const refusals = await waitFor('5 refused records in the tracker log', async () => {
      const recs = (await readLog(home, 'tracker')).filter((r) => r.event === 'refused' && (r.from as { port: number }).port === impostor.port)
      return recs.length >= 5 ? recs : undefined
    }, 5_000)
    expect(refusals.map((r) => r.cause)).toEqual(['foreign-key', ...Array(4).fill('bad-signature')])
  })

  it('the same key from a new address moves the node (a restart on a new port); the old address is then Forbidden', async () => {
    const { to } = await trackerSetup()
    const prng = new Prng(113)
    const first = await client()
    expect((await first.register(to, 151)).known).toBe(false)
    const file = fakeFile(prng, 'moving.bin')
    await first.own(to, 151, file)
    const observer = await node(to, 152)
    expect((await observer.need(to, 152, 'moving.bin')).owners.map((o) => o.port)).toEqual([first.port])

    // The restarted node: same key, new socket. Before it registers, the new address is not the node's.
    const second = await WireClient.open({ identity: first.identity })
    clients.push(second)
    expect(second.port).not.toBe(first.port)
    expect((await second.refused(to, { type: MessageType.Own, complete: true, nodeId: 151, file })).code).toBe(TrackerErrorCode.Forbidden)
    const moved = await second.register(to, 151)
    expect(moved.known).toBe(true)
    // Its files are now offered at the new address...
    expect((await observer.need(to, 152, 'moving.bin')).owners).toEqual([{ nodeId: 151, host: LOCALHOST, port: second.port, credit: 0, complete: true }])
    // ...and the old address, even with the right key, no longer speaks for the node.
    expect((await first.refused(to, { type: MessageType.Need, nodeId: 151, name: 'moving.bin' })).code).toBe(TrackerErrorCode.Forbidden)
    expect((await first.refused(to, { type: MessageType.Exit, nodeId: 151 })).code).toBe(TrackerErrorCode.Forbidden)
    expect(ownerIds(await observer.need(to, 152, 'moving.bin'))).toEqual([151])
  })

  it('a node that stops heartbeating is pruned after 2.5 intervals, with its files', async () => {
    const { to, home } = await trackerSetup('0.4')
    const prng = new Prng(109)
    const file = fakeFile(prng, 'fleeting.bin')
    const a = await client()
    await a.register(to, 111)
    // Taken before A's last request leaves, so it is no later than the tracker's "last seen" for A.
    const lastHeardFromA = Date.now()
    await a.own(to, 111, file)
    const b = await client()
    await b.register(to, 112)
    expect(ownerIds(await b.need(to, 112, 'fleeting.bin'))).toEqual([111])

    // B keeps beating (REGISTER in the poll loop) while it watches A disappear.
    const gone = await waitFor('node 111 to be pruned', async () => {
      expect((await b.register(to, 112)).known).toBe(true)
      const r = await b.need(to, 112, 'fleeting.bin')
      return r.owners.some((o) => o.nodeId === 111) ? undefined : r
    }, 3_000, 50)
    const elapsed = Date.now() - lastHeardFromA
    expect(gone).toMatchObject({ file: null, owners: [] })
    // Not before 2.5 heartbeats (1 s), less a little clock slack between the two processes.
    expect(elapsed).toBeGreaterThanOrEqual(950)
    expect(elapsed).toBeLessThan(3_000)

    const prune = await waitFor('a prune record in the tracker log', async () =>
      (await readLog(home, 'tracker')).filter((r) => r.event === 'prune'), 5_000)
    expect(prune.map((r) => r.nodeId)).toEqual([111])
    // The tracker forgot A: its next beat is a fresh join.
    expect((await a.register(to, 111)).known).toBe(false)
  })

  it('a restarted tracker on the same home and port keeps owners, nodes and credit', async () => {
    // A 2 s heartbeat here: restored nodes get one prune interval (5 s) to beat again, so a slow
    // restart on a loaded machine cannot prune them before the test looks.
    const { to, home, tracker } = await trackerSetup('2')
    const prng = new Prng(110)
    const file = fakeFile(prng, 'durable.bin', 2_000_000)
    const a = await client()
    const b = await client()
    const c = await client()
    await a.register(to, 121)
    await b.register(to, 122)
    await c.register(to, 123)
    await a.own(to, 121, file)
    await c.own(to, 123, file)
    await b.update(to, 122, file.contentHash, [{ ownerId: 123, bytes: 1234 }])
    // A request B made before the restart, to replay after it.
    const old = await b.exchange(to, { type: MessageType.Need, nodeId: 122, name: 'durable.bin' })
    expect(old.reply.type).toBe(MessageType.NeedReply)

    await waitFor('tracker.json to hold the file, its owners and the credit', async () => {
      const db = await trackerDb(home)
      const f = db?.files?.find((x: any) => x.name === 'durable.bin')
      return f !== undefined && f.contentHash === file.contentHash.toString('hex') &&
        [...f.owners].sort().join() === '121,123' && db.credit.some(([id]: [number]) => id === 123)
    }, 5_000)
    tracker.kill('SIGTERM')
    expect(await tracker.waitExit(10_000)).toBe(0)

    const again = await startTracker(home, ['--heartbeat', '2'], tracker.port)
    expect(again.port).toBe(tracker.port)
    // B asks from the same socket as before the restart: the tracker still knows it by that address.
    const reply = await b.need(to, 122, 'durable.bin')
    expect(reply.file).toEqual(file)
    expect(reply.owners).toEqual([
      { nodeId: 123, host: LOCALHOST, port: c.port, credit: 1234, complete: true },
      { nodeId: 121, host: LOCALHOST, port: a.port, credit: 0, complete: true }
    ])
    expect((await a.register(to, 121)).known).toBe(true)
    // What protects the ids survived too: sequence numbers (the old datagram is a replay, not a
    // BadConnection: the connection-id secret is kept as well) and key bindings.
    const replayed = await b.sendRaw(to, old.datagram)
    expect(replayed?.msg).toMatchObject({ type: MessageType.Error, code: TrackerErrorCode.Replay })
    const impostor = await client()
    expect((await impostor.refused(to, { type: MessageType.Register, nodeId: 121 })).code).toBe(TrackerErrorCode.Forbidden)
    expect((await b.need(to, 122, 'durable.bin')).owners.map((o) => o.nodeId)).toEqual([123, 121])
  })

  it.each([
    ['is not JSON', '{"version": 1, "nodes": ['],
    ['is JSON of the wrong shape', JSON.stringify({ version: 1, nodes: 'all of them', files: [], credit: [] })]
  ])('refuses to start, with a one-line reason and the file untouched, when tracker.json %s', async (_what, content) => {
    const home = await makeHome()
    homes.push(home)
    const db = path.join(home, 'tracker_db', 'tracker.json')
    await mkdir(path.dirname(db), { recursive: true })
    await writeFile(db, content)
    const r = await runCli(['tracker', '--home', home, '--host', LOCALHOST, '--port', '0'])
    expect(r.code).not.toBe(0)
    expect(r.code).not.toBeNull()
    expect(r.stdout).not.toMatch(/listening/)
    const lines = r.stderr.trim().split('\n')
    expect(lines[0]).toMatch(/tracker\.json/)
    expect(lines[0]).toMatch(/not valid JSON|not a udptorrent tracker database/)
    expect(r.stderr).not.toMatch(/^\s+at /m) // a reason, not a stack trace
    expect(await readFile(db, 'utf8')).toBe(content)
  })
})
