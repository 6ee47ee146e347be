/**
 * The flood of scenario 2, in a worker thread so that the honest client measuring latency in the
 * main thread does not share an event loop with it. Opens `portsPerIp` sockets on each source IP,
 * gets a real connection id for each (CONNECT), then sends, round-robin over the sockets and paced
 * to `rate` per second, alternately CONNECTs and NEEDs that carry the socket's valid connection id
 * and the victim's node id but a garbage signature (the tracker must verify it to refuse it).
 * Stops on a 'stop' message and posts what it did.
 */
import { randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import { parentPort, workerData } from 'node:worker_threads'
import { SIGNATURE_BYTES } from '../../configs.js'
import { encode, MessageType, tryDecode } from '../../src/messages/index.js'

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

const init = workerData as FloodInit
const port = parentPort
if (port === null) throw new Error('flood-worker must run as a worker thread')

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
const tick = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

interface Source { sock: dgram.Socket, connectionId: Buffer | undefined }

const sources: Source[] = []
let replies = 0
const repliesByType: Record<string, number> = {}
let stopping = false
port.on('message', (m) => { if (m === 'stop') stopping = true })

for (const ip of init.ips) {
  for (let i = 0; i < init.portsPerIp; i++) {
    const sock = dgram.createSocket('udp4')
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject)
      sock.bind(0, ip, () => { sock.off('error', reject); resolve() })
    })
    const src: Source = { sock, connectionId: undefined }
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
    if (s.connectionId === undefined) s.sock.send(encode({ type: MessageType.Connect, txid: randomBytes(4).readUInt32BE(0) }), init.target.port, init.target.host)
  }
  await sleep(200)
}
const withConnectionId = sources.filter((s) => s.connectionId !== undefined).length
replies = 0
for (const k of Object.keys(repliesByType)) delete repliesByType[k]
port.postMessage({ type: 'ready', withConnectionId })

const started = performance.now()
let sent = 0
let connects = 0
let needs = 0
const batch = 100
let i = 0
const garbage = randomBytes(SIGNATURE_BYTES)
while (!stopping) {
  const src = sources[i++ % sources.length] as Source
  const txid = randomBytes(4).readUInt32BE(0)
  if (sent % 2 === 0 || src.connectionId === undefined) {
    src.sock.send(encode({ type: MessageType.Connect, txid }), init.target.port, init.target.host)
    connects++
  } else {
    garbage.writeUInt32BE(txid, 0)
    src.sock.send(encode({
      type: MessageType.Need, txid, connectionId: src.connectionId, nodeId: init.victimId, seq: Date.now() * 1000 + sent, name: init.name, signature: garbage
    }), init.target.port, init.target.host)
    needs++
  }
  if (++sent % batch === 0) {
    const due = (sent / init.rate) * 1000 - (performance.now() - started)
    if (due > 2) await sleep(due)
    else await tick()
  }
}
const seconds = (performance.now() - started) / 1000
await sleep(300) // late replies
const report: FloodReport = {
  sockets: sources.length, withConnectionId, sent, connects, needs, seconds, rate: sent / seconds, replies, repliesByType
}
for (const s of sources) s.sock.close()
port.postMessage({ type: 'done', report })
