/**
 * The flood of scenario 2, in a child process of its own, so that the honest client measuring
 * latency does not share an event loop with it and its CPU can be measured.
 * Opens `portsPerIp` sockets on each source IP, gets a real connection id for each
 * (CONNECT), then, while resumed, sends round-robin over the sockets and paced to `rate` per
 * second, alternately CONNECTs and NEEDs that carry the socket's valid connection id and the
 * victim's node id but a garbage signature (the tracker must verify it to refuse it).
 * Starts paused; 'resume' and 'pause' switch the flood on and off (the parent interleaves quiet and
 * flooded samples), 'stop' ends it and sends what it did.
 */
import { randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import { SIGNATURE_BYTES } from '../../configs.js'
import { encode, MessageType, tryDecode } from '../../src/messages/index.js'
import { sleep, tick } from './util.js'

export interface FloodInit {
  target: { host: string, port: number }
  ips: string[]
  portsPerIp: number
  rate: number
  victimId: number
  name: string
}

export interface FloodReport {
  sockets: number
  withConnectionId: number
  sent: number
  connects: number
  needs: number
  seconds: number
  rate: number
  replies: number
  repliesByType: Record<string, number>
}

/** Parent to sender. */
export type FloodCommand = 'pause' | 'resume' | 'stop'
/** Sender to parent. */
export type FloodEvent = { type: 'ready', withConnectionId: number } | { type: 'paused' } | { type: 'done', report: FloodReport }

const send = process.send?.bind(process)
if (send === undefined) throw new Error('flood-sender must run as a child process with an IPC channel (fork)')
const post = (e: FloodEvent): void => { send(e) }
const init = JSON.parse(process.argv[2] ?? '') as FloodInit

/**
 * One flood socket, connected to the tracker so a send skips the address lookup, with its two
 * datagrams encoded once: the tracker answers or refuses each one on its own, so resending the same
 * bytes costs it as much as fresh ones would, and the sender spends its CPU on sending, as a real
 * attacker on another machine would, not on encoding.
 */
interface Source { sock: dgram.Socket, connectionId: Buffer | undefined, connect: Buffer, need: Buffer | undefined }

const sources: Source[] = []
let replies = 0
const repliesByType: Record<string, number> = {}
let stopping = false
let paused = true
/** Wakes the send loop when it waits while paused. */
let wake: (() => void) | undefined
process.on('message', (m: FloodCommand) => {
  if (m === 'stop') stopping = true
  else paused = m === 'pause'
  wake?.()
})

for (const ip of init.ips) {
  for (let i = 0; i < init.portsPerIp; i++) {
    const sock = dgram.createSocket('udp4')
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject)
      sock.bind(0, ip, () => { sock.connect(init.target.port, init.target.host, () => { sock.off('error', reject); resolve() }) })
    })
    const src: Source = { sock, connectionId: undefined, connect: encode({ type: MessageType.Connect, txid: randomBytes(4).readUInt32BE(0) }), need: undefined }
    sock.on('message', (buf) => {
      replies++
      const d = tryDecode(buf)
      const kind = d.ok ? (d.msg.type === MessageType.Error ? `Error ${d.msg.code}` : MessageType[d.msg.type] ?? '?') : 'malformed'
      repliesByType[kind] = (repliesByType[kind] ?? 0) + 1
      if (d.ok && d.msg.type === MessageType.ConnectReply && src.connectionId === undefined) src.connectionId = d.msg.connectionId
    })
    sock.on('error', () => {})
    sources.push(src)
  }
}

// A real connection id per socket: the NEEDs then get past the address check to the signature check.
for (let attempt = 0; attempt < 5 && sources.some((s) => s.connectionId === undefined); attempt++) {
  for (const s of sources) {
    if (s.connectionId === undefined) s.sock.send(s.connect)
  }
  await sleep(200)
}
const withConnectionId = sources.filter((s) => s.connectionId !== undefined).length
for (const s of sources) {
  if (s.connectionId === undefined) continue
  const txid = randomBytes(4).readUInt32BE(0)
  s.need = encode({ type: MessageType.Need, txid, connectionId: s.connectionId, nodeId: init.victimId, seq: Date.now() * 1000, name: init.name, signature: randomBytes(SIGNATURE_BYTES) })
}
replies = 0
for (const k of Object.keys(repliesByType)) delete repliesByType[k]
post({ type: 'ready', withConnectionId })

/** Seconds spent sending, pauses excluded, so the reported rate is the rate while flooding. */
let activeSeconds = 0
let sent = 0
let connects = 0
let needs = 0
const batch = 100
let next = 0

function sendOne (): void {
  const src = sources[next++ % sources.length] as Source
  if (sent % 2 === 0 || src.need === undefined) {
    src.sock.send(src.connect)
    connects++
  } else {
    src.sock.send(src.need)
    needs++
  }
  sent++
}

/** Sends, paced to the rate from the moment of resuming, until paused or stopped. */
async function sendWhileResumed (): Promise<void> {
  const started = performance.now()
  let n = 0
  while (!stopping && !paused) {
    sendOne()
    if (++n % batch === 0) {
      const due = (n / init.rate) * 1000 - (performance.now() - started)
      if (due > 2) await sleep(due)
      else await tick()
    }
  }
  activeSeconds += (performance.now() - started) / 1000
}

while (!stopping) {
  if (paused) {
    await new Promise<void>((resolve) => { wake = resolve })
    wake = undefined
  } else {
    await sendWhileResumed()
    if (paused) post({ type: 'paused' })
  }
}
await sleep(300) // late replies
const report: FloodReport = {
  sockets: sources.length, withConnectionId, sent, connects, needs, seconds: activeSeconds, rate: sent / activeSeconds, replies, repliesByType
}
for (const s of sources) s.sock.close()
post({ type: 'done', report })
process.disconnect()
