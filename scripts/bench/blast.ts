/**
 * A raw Node dgram blast: the ceiling udptorrent's transport is compared against.
 *
 *   node dist/scripts/bench/blast.js recv [--host 127.0.0.1] [--rcvbuf 8388608] [--ack-every 64]
 *   node dist/scripts/bench/blast.js send --port P [--host 127.0.0.1] [--size 1200] [--window 256] [--seconds 3]
 *
 * The receiver prints `READY <port>`, counts what arrives, and every `ack-every` datagrams tells
 * the sender the highest sequence number it has seen. The sender keeps at most `window` datagrams
 * beyond that number in flight, so the figure is bytes delivered per second rather than bytes the
 * kernel dropped. When the sender is done it sends END a few times; the receiver then prints one
 * JSON line `{bytes, datagrams, seconds, cpuMs, rcvbuf}` (seconds from the first to the last data
 * datagram) and exits. A receiver that hears nothing for 2 s after data started reports and exits.
 *
 * Datagram layout: type u8 (1 data, 2 end), seq u32 BE, then filler up to `size` bytes.
 * Ack: type u8 (3), highest seq u32 BE.
 */
import dgram from 'node:dgram'

const DATA = 1
const END = 2
const ACK = 3

function arg (name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && i + 1 < process.argv.length ? (process.argv[i + 1] as string) : fallback
}

function num (name: string, fallback: number): number {
  const v = Number(arg(name, String(fallback)))
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} must be a non-negative number`)
  return v
}

function receiver (): void {
  const host = arg('host', '127.0.0.1')
  const rcvbuf = num('rcvbuf', 8 * 1024 * 1024)
  const ackEvery = Math.max(1, num('ack-every', 64))
  const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: rcvbuf })
  let bytes = 0
  let datagrams = 0
  let highest = -1
  let first = 0
  let last = 0
  let done = false
  const ack = Buffer.alloc(5)
  let idle: NodeJS.Timeout | undefined
  const cpuStart = process.cpuUsage()

  const finish = (): void => {
    if (done) return
    done = true
    const cpu = process.cpuUsage(cpuStart)
    process.stdout.write(JSON.stringify({
      bytes, datagrams, seconds: datagrams > 1 ? (last - first) / 1000 : 0, cpuMs: (cpu.user + cpu.system) / 1000, rcvbuf: sock.getRecvBufferSize()
    }) + '\n', () => {
      sock.close()
      process.exit(0)
    })
  }
  const armIdle = (): void => {
    if (idle !== undefined) clearTimeout(idle)
    idle = setTimeout(finish, 2000)
  }

  sock.on('message', (msg, rinfo) => {
    const type = msg[0]
    if (type === DATA && msg.length >= 5) {
      const now = performance.now()
      if (datagrams === 0) first = now
      last = now
      datagrams++
      bytes += msg.length
      const seq = msg.readUInt32BE(1)
      if (seq > highest) highest = seq
      if (datagrams % ackEvery === 0) {
        ack[0] = ACK
        ack.writeUInt32BE(highest >>> 0, 1)
        sock.send(ack, rinfo.port, rinfo.address)
      }
      if (datagrams % 4096 === 1) armIdle()
    } else if (type === END) {
      finish()
    }
  })
  sock.on('error', (err) => {
    process.stderr.write(`blast recv: ${err.message}\n`)
    process.exit(1)
  })
  sock.bind(0, host, () => {
    process.stdout.write(`READY ${sock.address().port}\n`)
  })
  process.once('SIGTERM', finish)
}

function sender (): void {
  const host = arg('host', '127.0.0.1')
  const port = num('port', 0)
  const size = Math.max(5, Math.floor(num('size', 1200)))
  const window = Math.max(1, Math.floor(num('window', 256)))
  const seconds = num('seconds', 3)
  if (!(port > 0)) throw new Error('--port is required')
  const sock = dgram.createSocket({ type: 'udp4', sendBufferSize: 4 * 1024 * 1024 })
  // A ring of buffers larger than the window: a buffer is reused only once its datagram is acked
  // (or given up on), so a send still queued in libuv never sees its bytes change.
  const ring: Buffer[] = []
  for (let i = 0; i < window * 2 + 1; i++) {
    const b = Buffer.alloc(size, 0xab)
    b[0] = DATA
    ring.push(b)
  }
  let sent = 0
  let acked = 0
  let lastProgress = performance.now()
  let stalls = 0
  let stopping = false
  const started = performance.now()
  const cpuStart = process.cpuUsage()

  const pump = (): void => {
    while (!stopping && sent - acked < window) {
      const b = ring[sent % ring.length] as Buffer
      b.writeUInt32BE(sent >>> 0, 1)
      sock.send(b, port, host)
      sent++
    }
  }
  sock.on('message', (msg) => {
    if (msg[0] !== ACK || msg.length < 5) return
    const next = msg.readUInt32BE(1) + 1
    if (next > acked) {
      acked = next
      lastProgress = performance.now()
      pump()
    }
  })
  // A lost tail of the window (or a lost ack) would stall the sender for ever: after 20 ms with no
  // progress, treat everything outstanding as gone and carry on.
  const guard = setInterval(() => {
    if (stopping) return
    const now = performance.now()
    if (now - started >= seconds * 1000) {
      stopping = true
      clearInterval(guard)
      const endMsg = Buffer.from([END, 0, 0, 0, 0])
      let n = 0
      const sendEnd = (): void => {
        sock.send(endMsg, port, host)
        if (++n < 5) setTimeout(sendEnd, 50)
        else {
          const cpu = process.cpuUsage(cpuStart)
          process.stdout.write(JSON.stringify({ sent, stalls, cpuMs: (cpu.user + cpu.system) / 1000 }) + '\n', () => {
            sock.close()
            process.exit(0)
          })
        }
      }
      setTimeout(sendEnd, 20)
      return
    }
    if (now - lastProgress > 20 && sent - acked >= window) {
      stalls++
      acked = sent
      lastProgress = now
      pump()
    }
  }, 5)
  sock.bind(0, host === '127.0.0.1' ? '127.0.0.1' : '0.0.0.0', pump)
}

const mode = process.argv[2]
if (mode === 'recv') receiver()
else if (mode === 'send') sender()
else {
  process.stderr.write('usage: blast.js recv|send [options]\n')
  process.exit(2)
}
