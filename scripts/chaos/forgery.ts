/**
 * Scenario 3: forged node ids, forged EXIT/UPDATE/OWN, replayed and tampered datagrams, and a
 * connection id used from another address. Every one must be refused with the right error, and the
 * honest node must still be listed, with its credit unchanged, afterwards.
 */
import { SEQ_REPLAY_WINDOW } from '../../configs.js'
import { startNode, startTracker } from '../../src/harness/processes.js'
import { MessageType, TrackerErrorCode, type Message, type NeedReplyMsg } from '../../src/messages/index.js'
import { makeHome, makeRandomFile, readLog, sleep, type Row } from './util.js'
import { describeReply, errorName, newIdentity, RawClient, TrackerSession } from './wire.js'

const flipBit = (b: Buffer, at: number, mask: number): void => { b[at] = (b[at] as number) ^ mask }

interface Attempt { what: string, expect: TrackerErrorCode, got: Message | undefined }

export async function forgeryScenario (): Promise<Row[]> {
  const home = await makeHome('forgery')
  const HONEST = 11
  const FILE = 'honest.bin'
  await makeRandomFile(home, HONEST, FILE, 2_000_000)
  const tracker = await startTracker(home)
  const trackerAddr = { host: '127.0.0.1', port: tracker.port }
  const node = await startNode(home, HONEST, tracker.address, ['--send', FILE])
  await node.waitForLine(/^sharing honest\.bin/)

  // An observer (its own key and id) that reads the tracker's view: NEED lists owners with credit.
  const observer = new TrackerSession(await RawClient.open('127.0.0.1'), trackerAddr, 13, newIdentity())
  await observer.register()
  const view = async (): Promise<NeedReplyMsg | undefined> => {
    const r = await observer.call({ type: MessageType.Need, name: FILE })
    return r?.type === MessageType.NeedReply ? r : undefined
  }
  const before = await view()
  const honestBefore = before?.owners.find((o) => o.nodeId === HONEST)
  if (before?.file == null || honestBefore === undefined) throw new Error('the honest node is not listed before the attacks')
  const contentHash = before.file.contentHash

  const attempts: Attempt[] = []
  const attackerKey = newIdentity()
  const attacker = new TrackerSession(await RawClient.open('127.0.0.1'), trackerAddr, HONEST, attackerKey)
  await attacker.connect()

  // 1. Take over the honest node's id with another key (a correctly self-signed REGISTER).
  attempts.push({ what: `REGISTER as node ${HONEST} with the attacker's own key`, expect: TrackerErrorCode.Forbidden, got: await attacker.register() })
  // 2-4. Requests in the honest node's name, signed with the attacker's key.
  attempts.push({ what: `EXIT for node ${HONEST} signed by the attacker`, expect: TrackerErrorCode.BadSignature, got: await attacker.call({ type: MessageType.Exit }) })
  attempts.push({
    what: `UPDATE for node ${HONEST} signed by the attacker (credit node 13 with 10 GB)`,
    expect: TrackerErrorCode.BadSignature,
    got: await attacker.call({ type: MessageType.Update, contentHash, received: [{ ownerId: 13, bytes: 10e9 }] })
  })
  attempts.push({
    what: `OWN for node ${HONEST} signed by the attacker (${FILE} → other content)`,
    expect: TrackerErrorCode.BadSignature,
    got: await attacker.call({ type: MessageType.Own, complete: true, file: { ...before.file, contentHash: Buffer.alloc(32, 1) } })
  })

  // 5. A captured honest datagram replayed after a newer request. The "honest" client here is
  // in-process with its own key (on loopback the real node's traffic cannot be intercepted).
  const honestClient = await RawClient.open('127.0.0.1')
  const honest = new TrackerSession(honestClient, trackerAddr, 12, newIdentity())
  const reg = await honest.register()
  if (reg?.type !== MessageType.RegisterAck) throw new Error(`honest client REGISTER: ${describeReply(reg)}`)
  const captured = honest.build({ type: MessageType.Own, complete: true, file: { name: 'twelve.bin', size: 1_000_000, pieceSize: 256 * 1024, contentHash: Buffer.alloc(32, 12) } })
  const first = await honest.send(captured)
  if (first?.type !== MessageType.Ack) throw new Error(`honest OWN: ${describeReply(first)}`)
  // Within the node's window of recent requests a resent datagram is a retransmission (its cached
  // reply, nothing redone); past it, a replay.
  for (let i = 0; i < SEQ_REPLAY_WINDOW; i++) {
    const newer = await honest.call({ type: MessageType.Need, name: FILE })
    if (newer?.type !== MessageType.NeedReply) throw new Error(`honest NEED: ${describeReply(newer)}`)
  }
  attempts.push({ what: `the identical bytes of an honest OWN, replayed after ${SEQ_REPLAY_WINDOW} newer requests`, expect: TrackerErrorCode.Replay, got: await honestClient.exchange(captured.datagram, captured.txid, trackerAddr) })
  // 6. The same captured bytes from another socket: its connection id names the original address.
  const elsewhere = await RawClient.open('127.0.0.1')
  attempts.push({ what: 'the same captured bytes sent from another address', expect: TrackerErrorCode.BadConnection, got: await elsewhere.exchange(captured.datagram, captured.txid, trackerAddr) })
  // 7. A fresh honest request with one bit of its signature flipped, and one with a body bit flipped.
  const flipSig = honest.build({ type: MessageType.Need, name: FILE })
  flipBit(flipSig.datagram, flipSig.datagram.length - 1 - 17, 0x08)
  attempts.push({ what: 'an honest NEED with one signature bit flipped', expect: TrackerErrorCode.BadSignature, got: await honest.send(flipSig) })
  const flipBody = honest.build({ type: MessageType.Exit })
  flipBit(flipBody.datagram, 8 + 8 + 3, 0x01) // lowest bit of the node id: 12 → 13, the observer
  attempts.push({ what: 'an honest EXIT with one node-id bit flipped (12 → 13: exit someone else)', expect: TrackerErrorCode.BadSignature, got: await honest.send(flipBody) })
  // 8. A connection id obtained at one address, used from another.
  const thief = new TrackerSession(await RawClient.open('127.0.0.1'), trackerAddr, 12, honest.identity)
  const stolenId = honest.connectionId as Buffer
  attempts.push({
    what: 'a connection id issued to another address (correctly signed otherwise)',
    expect: TrackerErrorCode.BadConnection,
    got: await thief.send(thief.build({ type: MessageType.Need, name: FILE }, { connectionId: stolenId }))
  })
  // 9. An old sequence number, freshly and correctly signed: still a replay.
  attempts.push({
    what: 'a correctly signed request reusing an old sequence number',
    expect: TrackerErrorCode.Replay,
    got: await honest.send(honest.build({ type: MessageType.Need, name: FILE }, { seq: captured.seq }))
  })
  // 10. An unknown node id: nothing to check a signature against.
  const stranger = new TrackerSession(await RawClient.open('127.0.0.1'), trackerAddr, 424_242, newIdentity())
  await stranger.connect()
  attempts.push({ what: 'EXIT for a node id never registered', expect: TrackerErrorCode.UnknownNode, got: await stranger.call({ type: MessageType.Exit }) })

  await sleep(300)
  const after = await view()
  const honestAfter = after?.owners.find((o) => o.nodeId === HONEST)
  const stillListed = honestAfter !== undefined && honestAfter.port === honestBefore.port && after?.file?.contentHash.equals(contentHash) === true
  const creditSame = honestAfter?.credit === honestBefore.credit
  const observerCredit = after?.owners.find((o) => o.nodeId === 13)?.credit ?? 0
  const twelveOwns = (await honest.call({ type: MessageType.Need, name: 'twelve.bin' }))
  const log = await readLog(home, 'tracker')
  const refused: Record<string, number> = {}
  for (const r of log) if (r.event === 'refused' && typeof r.cause === 'string') refused[r.cause] = (refused[r.cause] ?? 0) + 1

  const results = attempts.map((a) => {
    const ok = a.got?.type === MessageType.Error && a.got.code === a.expect
    return { ...a, ok }
  })
  const allRefused = results.every((r) => r.ok)
  return [{
    scenario: '3 forged ids, EXIT, UPDATE; replays',
    tried: results.map((r, i) => `${i + 1}) ${r.what}`).join('; '),
    expected: results.map((r, i) => `${i + 1}) Error ${errorName(r.expect)}`).join('; ') + `; then node ${HONEST} still listed by NEED at its port with credit unchanged`,
    observed: results.map((r, i) => `${i + 1}) ${describeReply(r.got)}${r.ok ? '' : ' (WRONG)'}`).join('; ') +
      `; node ${HONEST} ${stillListed ? 'still listed' : 'NOT LISTED'} at port ${honestAfter?.port ?? '-'}, credit ${honestBefore.credit} → ${honestAfter?.credit ?? '-'}; node 13 credit ${observerCredit}; twelve.bin ${twelveOwns?.type === MessageType.NeedReply && twelveOwns.file !== null ? 'still owned by 12 (the replay changed nothing)' : 'gone'}; tracker log refusals by cause: ${JSON.stringify(refused)}`,
    held: allRefused && stillListed && creditSame && tracker.exitCode === undefined && node.exitCode === undefined
  }]
}
