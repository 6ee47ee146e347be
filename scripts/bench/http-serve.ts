/**
 * The TCP side of the netlab comparison: serves one file over plain HTTP/1.1.
 *
 *   node dist/scripts/bench/http-serve.js --file PATH [--host 10.200.2.1] [--port 0]
 *
 * Prints `LISTENING <port>` once bound; every request path gets the file. Stops on SIGTERM/SIGINT.
 */
import { createReadStream, statSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'

function arg (name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && i + 1 < process.argv.length ? (process.argv[i + 1] as string) : fallback
}

const file = arg('file', '')
if (file === '') {
  process.stderr.write('usage: http-serve.js --file PATH [--host H] [--port P]\n')
  process.exit(2)
}
const size = statSync(file).size

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size })
  if (req.method === 'HEAD') {
    res.end()
    return
  }
  const stream = createReadStream(file, { highWaterMark: 1 << 20 })
  stream.pipe(res)
  res.on('close', () => stream.destroy())
})
server.listen(Number(arg('port', '0')), arg('host', '127.0.0.1'), () => {
  process.stdout.write(`LISTENING ${(server.address() as AddressInfo).port}\n`)
})
const stop = (): void => {
  server.closeAllConnections()
  server.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 1000).unref()
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
