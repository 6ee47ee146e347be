/**
 * A minimal HTTP client for when curl is missing: downloads a URL, discards the body and prints
 * one JSON line `{bytes, seconds, timedOut, status}`.
 *
 *   node dist/scripts/bench/http-get.js URL [--max-time 30]
 */
import http from 'node:http'

const url = process.argv[2]
const i = process.argv.indexOf('--max-time')
const maxMs = (i >= 0 ? Number(process.argv[i + 1]) : 30) * 1000
if (url === undefined || url.startsWith('--')) {
  process.stderr.write('usage: http-get.js URL [--max-time S]\n')
  process.exit(2)
}
const started = performance.now()
let bytes = 0
let status = 0
let reported = false
const report = (timedOut: boolean, error?: string): void => {
  if (reported) return
  reported = true
  process.stdout.write(JSON.stringify({ bytes, seconds: (performance.now() - started) / 1000, timedOut, status, error }) + '\n', () => process.exit(0))
}
const req = http.get(url, (res) => {
  status = res.statusCode ?? 0
  res.on('data', (d: Buffer) => { bytes += d.length })
  res.on('end', () => report(false))
  res.on('error', (err) => report(false, err.message))
})
req.on('error', (err) => report(false, err.message))
setTimeout(() => {
  report(true)
  req.destroy()
}, maxMs).unref()
