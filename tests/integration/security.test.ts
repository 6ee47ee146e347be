/**
 * Issue 5: what an attacker on the network can no longer do. A real tracker and real nodes run as
 * processes; the attacker is a WireClient in the test process, with its own socket(s) and its own
 * Ed25519 key, measuring exactly what arrives at its socket.
 */
import { copyFile, mkdir, readFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import {
  CONNECTION_ID_BYTES, COOKIE_BYTES, DEFAULT_PIECE_SIZE, MAX_DATAGRAMS_PER_REQUEST, NODE_KEY_FILE, NODE_STATE_DIR,
  SEQ_REPLAY_WINDOW, SIGNATURE_BYTES
} from '../../configs.js'
import { DATA_HEADER_BYTES, encode, MessageType, RejectReason, TrackerErrorCode, type ErrorMsg, type Message, type NeedReplyMsg } from '../../src/messages/index.js'
import { hashFile, type Manifest } from '../../src/node/manifest.js'
import { loadOrCreateIdentity } from '../../src/transport/auth.js'
import type { RemoteAddress } from '../../src/transport/endpoint.js'
import { Prng } from '../../src/transport/prng.js'
import { cleanup, makeHome, makeRandomFile, readLog, trackerDb, startNode, startTracker, waitFor, type NodeProc, type TrackerProc } from '../helpers/processes.js'
import { fakeFile, localhost, peerRequest, WireClient, type BuildOptions, type ReceivedDatagram, type RequestBody } from '../helpers/wire.js'

const homes: string[] = []
const clients: WireClient[] = []
afterEach(async () => {
  await Promise.all(clients.splice(0).map(async (c) => await c.close()))
  await cleanup(...homes.splice(0))
})

async function client (init: Parameters<typeof WireClient.open>[0] = {}): Promise<WireClient> {
  const c = await WireClient.open(init)
  clients.push(c)
  return c
}

const FILE = 'a.bin'
const FILE_SIZE = 200_000
/** The attacker's own, honestly registered node id (it may use the tracker like anyone). */
const ATTACKER_ID = 900

interface Swarm {
  home: string
  tracker: TrackerProc
  to: RemoteAddress
  node1: NodeProc
  node2: NodeProc
  manifest: Manifest
  fileBytes: Buffer
}

/** A tracker and nodes 1 and 2, both sharing the same a.bin. */
async function swarm (): Promise<Swarm> {
  const home = await makeHome()
  homes.push(home)
  const file = await makeRandomFile(home, 1, FILE, FILE_SIZE)
  await mkdir(path.join(home, 'node_files', 'node2'), { recursive: true })
  await copyFile(file, path.join(home, 'node_files', 'node2', FILE))
  const tracker = await startTracker(home, ['--heartbeat', '2'])
  const [node1, node2] = await Promise.all([1, 2].map(async (id) => {
    const n = await startNode(home, id, tracker.address, ['--send', FILE])
    await n.waitForLine(/^sharing a\.bin/)
    return n
  })) as [NodeProc, NodeProc]
  return { home, tracker, to: localhost(tracker.port), node1, node2, manifest: await hashFile(file, DEFAULT_PIECE_SIZE), fileBytes: await readFile(file) }
}

/** An honest client registered as ATTACKER_ID: the attacker's legitimate presence, also used to observe. */
async function registered (to: RemoteAddress, id = ATTACKER_ID): Promise<WireClient> {
  const c = await client()
  expect((await c.register(to, id)).known).toBe(false)
  return c
}

/** [node id, port, credit] of each owner offered, by node id. */
const owners = (r: NeedReplyMsg): Array<[number, number, number]> =>
  r.owners.map((o): [number, number, number] => [o.nodeId, o.port, o.credit]).sort((a, b) => a[0] - b[0])

/** The tracker's refusals of requests that came from `port`, by cause, in order. */
async function refusedFrom (home: string, port: number): Promise<Array<Record<string, unknown>>> {
  return (await readLog(home, 'tracker')).filter((r) => r.event === 'refused' && (r.from as { port?: number } | undefined)?.port === port)
}

function errorOf (d: ReceivedDatagram | undefined, what: string): ErrorMsg {
  if (d?.msg?.type !== MessageType.Error) throw new Error(`${what}: expected an Error, got ${d === undefined ? 'nothing' : d.msg === undefined ? 'garbage' : MessageType[d.msg.type]}`)
  return d.msg
}

/** Every attack must leave the tracker serving honest requests. */
async function trackerStillAnswers (s: Swarm, observer: WireClient): Promise<void> {
  const reply = await observer.need(s.to, ATTACKER_ID, FILE)
  expect(reply.file?.contentHash).toEqual(s.manifest.contentHash)
  expect(owners(reply).map(([id, port]) => [id, port])).toEqual([[1, s.node1.port], [2, s.node2.port]])
  expect(s.tracker.exitCode).toBeUndefined()
}

describe('no amplification towards an address that has not proved it receives there', () => {
  it('every signed tracker request with a made-up connection id gets at most an Error no larger than itself', async () => {
    const s = await swarm()
    const prng = new Prng(501)
    // Control first: from a proven address, NEED a.bin is answered with a NeedReply LARGER than the
    // request (two owners), the kind of reply the connection id withholds from unproven addresses.
    const honest = await registered(s.to)
    const proven = await honest.exchange(s.to, { type: MessageType.Need, nodeId: ATTACKER_ID, name: FILE })
    expect(proven.reply.type).toBe(MessageType.NeedReply)
    expect(proven.replyBytes.length).toBeGreaterThan(proven.datagram.length)

    // The attacker spoofs nothing but never did CONNECT: every request carries 8 random bytes.
    const attacker = await client()
    const bodies: RequestBody[] = [
      { type: MessageType.Register, nodeId: 1 },
      { type: MessageType.Register, nodeId: 4242 },
      { type: MessageType.Own, complete: true, nodeId: 1, file: fakeFile(prng, 'x.bin') },
      { type: MessageType.Need, nodeId: 1, name: FILE },
      { type: MessageType.Need, nodeId: ATTACKER_ID, name: FILE },
      { type: MessageType.Update, nodeId: 1, contentHash: s.manifest.contentHash, received: [{ ownerId: 2, bytes: 1 }] },
      { type: MessageType.Exit, nodeId: 1 },
      { type: MessageType.Exit, nodeId: ATTACKER_ID }
    ]
    const mark = attacker.mark()
    const sizes: Array<[string, number, number]> = []
    for (const body of bodies) {
      const datagram = await attacker.build(s.to, body, { connectionId: randomBytes(CONNECTION_ID_BYTES) }, prng.int(2 ** 32))
      const reply = await attacker.sendRaw(s.to, datagram)
      const err = errorOf(reply, MessageType[body.type])
      expect(err.code).toBe(TrackerErrorCode.BadConnection)
      sizes.push([MessageType[body.type], datagram.length, (reply as ReceivedDatagram).bytes.length])
    }
    for (const [type, request, answer] of sizes) expect(answer, `${type}: ${answer} bytes answered ${request}`).toBeLessThanOrEqual(request)

    // CONNECT is answered (that is its job), with exactly as many bytes as it took.
    const connect = encode({ type: MessageType.Connect, txid: prng.int(2 ** 32) })
    const connectReply = await attacker.sendRaw(s.to, connect)
    expect(connectReply?.msg?.type).toBe(MessageType.ConnectReply)
    expect(connectReply?.bytes.length).toBeLessThanOrEqual(connect.length)

    // One answer per datagram and nothing else, once the socket has been quiet for a while.
    const all = await attacker.quiet(mark, 300, 5_000)
    expect(all).toHaveLength(bodies.length + 1)
    // Nothing the unproven requests asked for happened: the file is still offered by both nodes.
    await trackerStillAnswers(s, honest)
    const refused = await waitFor('the bad-connection refusals in the tracker log', async () => {
      const recs = await refusedFrom(s.home, attacker.port)
      return recs.length >= bodies.length ? recs : undefined
    }, 5_000)
    expect(refused.map((r) => r.cause)).toEqual(Array(bodies.length).fill('bad-connection'))
  })

  it('HELLO_ACK is no larger than HELLO, and a REQUEST without a valid cookie gets at most a REJECT and no data', async () => {
    const s = await swarm()
    const owner = localhost(s.node1.port)
    const attacker = await client()
    const prng = new Prng(502)
    const mark = attacker.mark()

    const hello = encode({ type: MessageType.Hello, txid: prng.int(2 ** 32) })
    const ack = await attacker.sendRaw(owner, hello)
    expect(ack?.msg?.type).toBe(MessageType.HelloAck)
    expect(ack?.bytes.length).toBeLessThanOrEqual(hello.length)

    // The largest answer one REQUEST may ask for: 64 datagrams of 1200 bytes, about 75 KB.
    const length = Math.min(FILE_SIZE, MAX_DATAGRAMS_PER_REQUEST * (1200 - DATA_HEADER_BYTES))
    const forged = [
      randomBytes(COOKIE_BYTES), // never handshaken
      Buffer.alloc(COOKIE_BYTES), // the zero cookie
      await (await client()).hello(owner) // issued by this owner, but to another address
    ]
    for (const cookie of forged) {
      const request = encode({ type: MessageType.Request, txid: prng.int(2 ** 32), cookie, ...peerRequest(s.manifest.contentHash, 0, length) })
      const reply = await attacker.sendRaw(owner, request)
      expect(reply?.msg).toMatchObject({ type: MessageType.Reject, reason: RejectReason.BadCookie })
      expect(reply?.bytes.length).toBeLessThanOrEqual(request.length)
    }
    // Wait until nothing more arrives (bounded): not one DATA datagram came, only the answers above.
    const received = await attacker.quiet(mark, 500, 10_000)
    const types = (m: Message | undefined): string => m === undefined ? 'garbage' : MessageType[m.type]
    expect(received.map((d) => types(d.msg))).toEqual(['HelloAck', 'Reject', 'Reject', 'Reject'])

    // Control: with the cookie the owner gave this very socket, the same request is served in full.
    // (So the silence above was the cookie check, not a wrong hash or range.)
    const cookie = (ack?.msg as { cookie: Buffer }).cookie
    const blocks = Math.ceil(length / (1200 - DATA_HEADER_BYTES))
    const served = await attacker.request(owner, { ...peerRequest(s.manifest.contentHash, 0, length), cookie }, { settle: (r) => r.length === blocks })
    expect(served.every((m) => m.type === MessageType.Data)).toBe(true)
    const bytes = Buffer.alloc(length)
    for (const m of served) if (m.type === MessageType.Data) m.payload.copy(bytes, m.offset)
    expect(bytes.equals(s.fileBytes.subarray(0, length))).toBe(true)
    expect(s.node1.exitCode).toBeUndefined()
  })
})

describe('connection ids', () => {
  it('a connection id issued to one address is refused from another (BadConnection), and the attempt changes nothing', async () => {
    const s = await swarm()
    const a = await client()
    const b = await client()
    const idOfA = await a.connect(s.to)
    expect(idOfA).toHaveLength(CONNECTION_ID_BYTES)

    // B presents A's connection id, with a request that is otherwise perfectly valid (its own key, fresh id, fresh seq).
    const stolen = await b.refused(s.to, { type: MessageType.Register, nodeId: 501 }, { connectionId: idOfA })
    expect(stolen.code).toBe(TrackerErrorCode.BadConnection)
    const ownStolen = await b.refused(s.to, { type: MessageType.Need, nodeId: 1, name: FILE }, { connectionId: idOfA })
    expect(ownStolen.code).toBe(TrackerErrorCode.BadConnection)

    // Control: A itself uses it fine, and B's own id works for B.
    expect((await a.register(s.to, 500)).known).toBe(false)
    const idOfB = await b.connect(s.to)
    expect(idOfB.equals(idOfA)).toBe(false)
    // B's refused REGISTER did not register 501 (nor bind it to B's key).
    expect((await b.register(s.to, 501)).known).toBe(false)
    const refused = await waitFor('2 refusals in the tracker log', async () => {
      const recs = await refusedFrom(s.home, b.port)
      return recs.length >= 2 ? recs : undefined
    }, 5_000)
    expect(refused.map((r) => r.cause)).toEqual(['bad-connection', 'bad-connection'])
    const observer = await registered(s.to)
    await trackerStillAnswers(s, observer)
  })
})

describe('forged node ids (real node 1 is running)', () => {
  it('REGISTER of node 1 with another key is Forbidden; forged EXIT and forged UPDATE are refused; nothing changes', async () => {
    const s = await swarm()
    const node1Key = await loadOrCreateIdentity(path.join(s.home, 'node_files', 'node1', NODE_STATE_DIR, NODE_KEY_FILE))
    const bound = await waitFor('tracker.json binding node 1 to its key', async () => {
      const db = await trackerDb(s.home)
      return db?.keys?.find(([id]: [number, string]) => id === 1)?.[1] as string | undefined
    }, 5_000)
    expect(bound).toBe(node1Key.publicKey.toString('hex'))

    const attacker = await registered(s.to)
    const before = owners(await attacker.need(s.to, ATTACKER_ID, FILE))
    expect(before).toEqual([[1, s.node1.port, 0], [2, s.node2.port, 0]])

    // 1. Take over node 1's id with the attacker's key.
    const takeover = await attacker.refused(s.to, { type: MessageType.Register, nodeId: 1 })
    expect(takeover.code).toBe(TrackerErrorCode.Forbidden)
    expect(owners(await attacker.need(s.to, ATTACKER_ID, FILE))).toEqual(before)

    // 2. Make node 1 leave: EXIT for node 1, signed by the attacker.
    const exit = await attacker.refused(s.to, { type: MessageType.Exit, nodeId: 1 })
    expect([TrackerErrorCode.Forbidden, TrackerErrorCode.BadSignature, TrackerErrorCode.UnknownNode]).toContain(exit.code)
    // A REGISTER naming node 1's own public key (it is public) fails too: the signature is what counts.
    const registerWithItsKey = await attacker.refused(s.to, { type: MessageType.Register, nodeId: 1, publicKey: node1Key.publicKey })
    expect(registerWithItsKey.code).toBe(TrackerErrorCode.BadSignature)
    expect(owners(await attacker.need(s.to, ATTACKER_ID, FILE))).toEqual(before)

    // 3. Credit node 2 in node 1's name (node 1 is a registered reporter, but not with this key).
    const forgedUpdate = await attacker.refused(s.to, {
      type: MessageType.Update, nodeId: 1, contentHash: s.manifest.contentHash, received: [{ ownerId: 2, bytes: FILE_SIZE }]
    })
    expect(forgedUpdate.code).toBe(TrackerErrorCode.BadSignature)
    // ...or in the name of an id nobody registered.
    const unknownReporter = await attacker.refused(s.to, {
      type: MessageType.Update, nodeId: 777, contentHash: s.manifest.contentHash, received: [{ ownerId: 2, bytes: FILE_SIZE }]
    })
    expect(unknownReporter.code).toBe(TrackerErrorCode.UnknownNode)
    expect(owners(await attacker.need(s.to, ATTACKER_ID, FILE))).toEqual(before)

    // Control: a report the attacker may make (as itself, signed by itself) is credited and visible,
    // so the zero credit above is the refusal, not a blind spot of the observation.
    await attacker.update(s.to, ATTACKER_ID, s.manifest.contentHash, [{ ownerId: 2, bytes: 1000 }])
    expect(owners(await attacker.need(s.to, ATTACKER_ID, FILE))).toEqual([[1, s.node1.port, 0], [2, s.node2.port, 1000]])
    const db = await waitFor('tracker.json with the credit of node 2', async () => {
      const d = await trackerDb(s.home)
      return d?.credit?.some(([id]: [number, number]) => id === 2) === true ? d : undefined
    }, 5_000)
    expect(db.credit).toEqual([[2, 1000]])
    // Node 1 is still bound to its own key, and still owns its file at its own address.
    expect(db.keys.find(([id]: [number, string]) => id === 1)[1]).toBe(node1Key.publicKey.toString('hex'))
    expect(db.nodes.find((n: { id: number }) => n.id === 1)).toMatchObject({ host: '127.0.0.1', port: s.node1.port })

    const refused = await waitFor('5 refusals in the tracker log', async () => {
      const recs = await refusedFrom(s.home, attacker.port)
      return recs.length >= 5 ? recs : undefined
    }, 5_000)
    // (The forged EXIT's cause is whichever check the tracker makes first.)
    expect(refused.map((r) => r.cause)).toEqual(['foreign-key', expect.any(String), 'bad-signature', 'bad-signature', 'unknown-key'])
    expect(s.node1.exitCode).toBeUndefined()
    await trackerStillAnswers(s, attacker)
  })
})

describe('replays', () => {
  it('a retransmission gets the identical cached reply, even after newer requests; a captured request outside the window is a Replay; a patched txid breaks the signature', async () => {
    const s = await swarm()
    const prng = new Prng(503)
    const attacker = await registered(s.to)
    const file = fakeFile(prng, 'mine.bin')

    // A valid signed OWN, captured as it went out, and its reply as it came back.
    const own = await attacker.exchange(s.to, { type: MessageType.Own, complete: true, nodeId: ATTACKER_ID, file })
    expect(own.reply.type).toBe(MessageType.Ack)

    // Resent byte-identical: a retransmission, answered with the very same bytes.
    const again = await attacker.sendRaw(s.to, own.datagram)
    expect(again?.bytes.equals(own.replyBytes)).toBe(true)

    // The same bytes with another txid: the txid is signed, so this is a forgery.
    const patched = Buffer.from(own.datagram)
    patched.writeUInt32BE((own.txid + 1) >>> 0, 4)
    expect(errorOf(await attacker.sendRaw(s.to, patched), 'patched txid').code).toBe(TrackerErrorCode.BadSignature)

    // A node's requests run concurrently, so an older one retried after a newer one was answered
    // is still a retransmission: the cached reply again, and nothing processed twice.
    await attacker.need(s.to, ATTACKER_ID, 'mine.bin')
    expect((await attacker.sendRaw(s.to, own.datagram))?.bytes.equals(own.replyBytes)).toBe(true)
    // A lower sequence number than the window reaches, freshly signed, is a replay.
    expect((await attacker.refused(s.to, { type: MessageType.Need, nodeId: ATTACKER_ID, name: 'mine.bin' }, { seq: 1 })).code).toBe(TrackerErrorCode.Replay)

    // The replay that would hurt: a captured EXIT resent after the node came back and moved on.
    const exit = await attacker.exchange(s.to, { type: MessageType.Exit, nodeId: ATTACKER_ID })
    expect(exit.reply.type).toBe(MessageType.Ack)
    expect((await attacker.register(s.to, ATTACKER_ID)).known).toBe(false)
    await attacker.own(s.to, ATTACKER_ID, file)
    const observer = await registered(s.to, 901)
    expect((await observer.need(s.to, 901, 'mine.bin')).owners.map((o) => o.nodeId)).toEqual([ATTACKER_ID])
    // Within the window it is only answered again (the cached Ack); the node stays an owner.
    expect((await attacker.sendRaw(s.to, exit.datagram))?.bytes.equals(exit.replyBytes)).toBe(true)
    expect((await observer.need(s.to, 901, 'mine.bin')).owners.map((o) => o.nodeId)).toEqual([ATTACKER_ID])
    // Past the window it is refused outright.
    for (let i = 0; i < SEQ_REPLAY_WINDOW; i++) await attacker.register(s.to, ATTACKER_ID)
    expect(errorOf(await attacker.sendRaw(s.to, exit.datagram), 'replayed EXIT').code).toBe(TrackerErrorCode.Replay)
    expect(errorOf(await attacker.sendRaw(s.to, own.datagram), 'replayed OWN').code).toBe(TrackerErrorCode.Replay)
    expect((await observer.need(s.to, 901, 'mine.bin')).owners.map((o) => o.nodeId)).toEqual([ATTACKER_ID])

    const refused = await waitFor('4 refusals in the tracker log', async () => {
      const recs = await refusedFrom(s.home, attacker.port)
      return recs.length >= 4 ? recs : undefined
    }, 5_000)
    expect(refused.map((r) => r.cause)).toEqual(['bad-signature', 'replay', 'replay', 'replay'])
    await trackerStillAnswers(s, attacker)
  })
})

describe('signatures', () => {
  it('one flipped bit anywhere in a signed request, or no signature at all, is BadSignature, counted in the log', async () => {
    const s = await swarm()
    const attacker = await registered(s.to)
    const need: RequestBody = { type: MessageType.Need, nodeId: ATTACKER_ID, name: FILE }
    const flip = (at: (d: Buffer) => number, bit = 0) => (d: Buffer): void => { d[at(d)]! ^= 1 << bit }
    const cases: Array<[string, BuildOptions]> = [
      ['a bit of the signature', { tamper: flip((d) => d.length - SIGNATURE_BYTES + 17, 3) }],
      ['the last bit of the signature', { tamper: flip((d) => d.length - 1, 0) }],
      ['a bit of the sequence number', { tamper: flip(() => 8 + CONNECTION_ID_BYTES + 4 + 7, 0) }],
      ['a bit of the file name', { tamper: flip((d) => d.length - SIGNATURE_BYTES - 1, 1) }],
      ['no signature (zeros)', { unsigned: true }]
    ]
    for (const [what, opts] of cases) {
      const err = await attacker.refused(s.to, need, opts)
      expect(err.code, what).toBe(TrackerErrorCode.BadSignature)
    }
    // Control: the same request, untouched, is answered.
    expect((await attacker.need(s.to, ATTACKER_ID, FILE)).owners).toHaveLength(2)
    const refused = await waitFor(`${cases.length} bad-signature refusals in the tracker log`, async () => {
      const recs = await refusedFrom(s.home, attacker.port)
      return recs.length >= cases.length ? recs : undefined
    }, 5_000)
    expect(refused.map((r) => r.cause)).toEqual(Array(cases.length).fill('bad-signature'))
    expect(refused.every((r) => r.nodeId === ATTACKER_ID && r.type === 'Need')).toBe(true)
    await trackerStillAnswers(s, attacker)
  })
})
