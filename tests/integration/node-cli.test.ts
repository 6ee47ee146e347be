import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import dgram from 'node:dgram'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { V8_MAX_SEMI_SPACE_MB } from '../../configs.js'
import {
  CLI, cleanup, makeHome, makeRandomFile, nodeFile, Proc, readLog, sha256File, startNode, startTracker, waitFor, type NodeProc, type TrackerProc
} from '../helpers/processes.js'

const MB = 1_000_000
const homes: string[] = []
afterEach(async () => { await cleanup(...homes.splice(0)) })

async function home (): Promise<string> {
  const h = await makeHome()
  homes.push(h)
  return h
}

/** The environment of a child: this one's, without any UDPTORRENT_* setting, plus `extra`. */
function childEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('UDPTORRENT_')) env[k] = v
  return { ...env, ...extra }
}

/** A CLI process whose stdout is also kept apart (Proc.lines mixes stdout and stderr). */
function spawnUdptorrent (name: string, args: string[], env: Record<string, string> = {}, stdin: 'pipe' | 'ignore' = 'ignore'): Proc & { stdout: string[], stderr: string[] } {
  const child = spawn(process.execPath, [`--max-semi-space-size=${V8_MAX_SEMI_SPACE_MB}`, CLI, ...args], { stdio: [stdin, 'pipe', 'pipe'], env: childEnv(env) })
  const stdout: string[] = []
  const stderr: string[] = []
  const keep = (into: string[]): (d: Buffer) => void => {
    let buf = ''
    return (d) => {
      buf += d.toString()
      const parts = buf.split('\n')
      buf = parts.pop() as string
      into.push(...parts)
    }
  }
  child.stdout?.on('data', keep(stdout))
  child.stderr?.on('data', keep(stderr))
  return Object.assign(new Proc(name, child), { stdout, stderr })
}

async function freeUdpPort (): Promise<number> {
  const s = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve))
  const { port } = s.address()
  await new Promise<void>((resolve) => s.close(resolve))
  return port
}

/** A tracker and node 1 sharing a random file. */
async function seeded (size: number): Promise<{ h: string, tracker: TrackerProc, seed: NodeProc, sourceHash: string }> {
  const h = await home()
  const source = await makeRandomFile(h, 1, 'data.bin', size)
  const tracker = await startTracker(h, ['--heartbeat', '1'])
  const seed = await startNode(h, 1, tracker.address, ['--send', 'data.bin'], 'pipe')
  await seed.waitForLine(/^sharing data\.bin/)
  return { h, tracker, seed, sourceHash: await sha256File(source) }
}

describe('node --json', () => {
  it('prints only JSON events on stdout: started, listening, downloading, progress, status, error, complete, stopped', async () => {
    const { h, tracker, sourceHash } = await seeded(10 * MB)
    const n = spawnUdptorrent('node2', [
      'node', '--id', '2', '--home', h, '--tracker', tracker.address, '--host', '127.0.0.1', '--json',
      '--download', 'data.bin', '--exit-when-done', '--progress-interval', '100', '--impair', 'rate=8MB/s,queue=512KB,seed=5'
    ], {}, 'pipe')
    const events = (): Array<Record<string, unknown>> => n.stdout.map((l) => JSON.parse(l) as Record<string, unknown>)
    await waitFor('a progress event with verified pieces', () => events().some((e) => e.type === 'progress' && (e.piecesDone as number) > 0), 30_000)
    n.write('status')
    n.write('frobnicate')
    expect(await n.waitExit(60_000)).toBe(0)
    expect(await sha256File(nodeFile(h, 2, 'data.bin'))).toBe(sourceHash)

    // Every stdout line is one JSON object with a type and a time; nothing else is there.
    expect(n.stdout.length).toBeGreaterThan(4)
    for (const line of n.stdout) {
      expect(line, 'a stdout line').toMatch(/^\{.*\}$/)
      const e = JSON.parse(line) as Record<string, unknown>
      expect(typeof e.type).toBe('string')
      expect(Number.isNaN(Date.parse(e.time as string))).toBe(false)
    }
    expect(n.stdout.join('\n')).not.toContain('\x1b')
    const all = events()
    const types = all.map((e) => e.type)
    expect(types.slice(0, 2)).toEqual(['started', 'listening'])
    expect(all[1]).toMatchObject({ id: 2, host: '127.0.0.1', tracker: tracker.address })
    expect(types).toContain('downloading')
    expect(types.at(-1)).toBe('stopped')
    expect(all.at(-1)).toMatchObject({ reason: 'all downloads done', code: 0 })

    const progress = all.filter((e) => e.type === 'progress')
    expect(progress.length).toBeGreaterThan(1)
    const last = progress.at(-1) as Record<string, unknown>
    expect(last).toMatchObject({ name: 'data.bin', size: 10 * MB, owners: 1 })
    for (const key of ['bytesDone', 'percent', 'piecesDone', 'pieces', 'ownersActive']) expect(typeof last[key], key).toBe('number')
    expect(typeof last.bytesPerSecond).toBe('number')
    expect(typeof last.etaSeconds).toBe('number')
    // Events arrive in order: bytes never go back.
    const done = progress.map((e) => e.bytesDone as number)
    expect(done).toEqual([...done].sort((a, b) => a - b))

    const complete = all.find((e) => e.type === 'complete')
    expect(complete).toMatchObject({ name: 'data.bin', bytes: 10 * MB, sha256: sourceHash })
    const status = all.find((e) => e.type === 'status')
    expect(status).toMatchObject({ id: 2, uploads: { requests: 0 } })
    expect(Array.isArray(status?.downloads)).toBe(true)
    expect(all.find((e) => e.type === 'error')).toMatchObject({ op: 'command', message: expect.stringMatching(/unknown command "frobnicate"/) })
  })

  it('reports a failed download as an error event, and refused flags too', async () => {
    const h = await home()
    const tracker = await startTracker(h)
    const n = spawnUdptorrent('node2', [
      'node', '--id', '2', '--home', h, '--tracker', tracker.address, '--host', '127.0.0.1', '--json',
      '--send', 'missing.bin', '--download', 'nothere.bin', '--exit-when-done', '--owner-timeout', '1'
    ])
    expect(await n.waitExit(30_000)).toBe(1)
    const events = n.stdout.map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(events).toContainEqual(expect.objectContaining({ type: 'error', op: 'send', name: 'missing.bin' }))
    expect(events).toContainEqual(expect.objectContaining({ type: 'error', op: 'download', stage: 'transfer', name: 'nothere.bin' }))
    expect(events.at(-1)).toMatchObject({ type: 'stopped', code: 1 })
    // The summary for people went to stderr.
    expect(n.stderr.join('\n')).toMatch(/2 of 2 flag tasks failed/)
  })
})

describe('config file', () => {
  it('overrides defaults; the environment overrides it; flags override both', async () => {
    const h = await home()
    const tracker = await startTracker(h)
    const [filePort, envPort, flagPort, sectionPort] = await Promise.all([freeUdpPort(), freeUdpPort(), freeUdpPort(), freeUdpPort()])
    const base = ['node', '--id', '5', '--home', h, '--host', '127.0.0.1', '--tracker', tracker.address]
    const listening = async (p: Proc): Promise<number> => {
      const m = await p.waitForLine(/^node 5 listening on 127\.0\.0\.1:(\d+)/)
      p.kill('SIGTERM') // a clean stop flushes the log
      expect(await p.waitExit()).toBe(0)
      return Number(m[1])
    }

    // Defaults: no file, an ephemeral port; log level info (the log has the info record 'node started').
    const portDefault = await listening(spawnUdptorrent('default', base))
    expect([filePort, envPort, flagPort]).not.toContain(portDefault)

    // <home>/udptorrent.config.json: its port, and its log level (warn: no info records).
    await writeFile(path.join(h, 'udptorrent.config.json'), JSON.stringify({ port: filePort, 'log-level': 'warn' }))
    await writeFile(path.join(h, 'logs', 'node5.log'), '')
    expect(await listening(spawnUdptorrent('file', base))).toBe(filePort)
    expect((await readLog(h, 'node5')).some((r) => r.msg === 'node started')).toBe(false)

    // Environment beats the file.
    expect(await listening(spawnUdptorrent('env', base, { UDPTORRENT_PORT: String(envPort) }))).toBe(envPort)
    // A flag beats both.
    expect(await listening(spawnUdptorrent('flag', [...base, '--port', String(flagPort), '--log-level', 'info'], { UDPTORRENT_PORT: String(envPort) }))).toBe(flagPort)
    expect((await readLog(h, 'node5')).some((r) => r.msg === 'node started')).toBe(true)

    // A "node" section beats the top level for nodes; --config names another file.
    const other = path.join(h, 'other.json')
    await writeFile(other, JSON.stringify({ port: filePort, node: { port: sectionPort }, tracker: { 'max-owners': 3 } }))
    expect(await listening(spawnUdptorrent('section', [...base, '--config', other]))).toBe(sectionPort)
    expect(await listening(spawnUdptorrent('env-config', base, { UDPTORRENT_CONFIG: other }))).toBe(sectionPort)
  })

  it('gives the tracker its keys and its section', async () => {
    const h = await home()
    const port = await freeUdpPort()
    await writeFile(path.join(h, 'udptorrent.config.json'), JSON.stringify({ host: '127.0.0.1', tracker: { port }, node: { port: 1 } }))
    const t = spawnUdptorrent('tracker', ['tracker', '--home', h])
    await t.waitForLine(new RegExp(`^tracker listening on 127\\.0\\.0\\.1:${port}\\b`))
  })

  it.each([
    ['an unknown key', { prot: 1 }, /"prot"/, /unknown key/],
    ['a value of the wrong type', { port: 'abc' }, /"port"/, /whole number 0\.\.65535/],
    ['a value out of range', { node: { 'owner-timeout': -1 } }, /"node\.owner-timeout"/, /positive/],
    ['a key of the other command in a section', { node: { 'max-owners': 3 } }, /"node\.max-owners"/, /not a flag of udptorrent node/],
    ['a bad log level', { 'log-level': 'loud' }, /"log-level"/, /one of trace, debug/],
    ['a bad rate', { 'upload-limit': '5 parsecs' }, /"upload-limit"/, /rate/],
    ['a bad tracker address', { tracker: 'nowhere' }, /"tracker"/, /host:port/],
    ['not an object', [1, 2], /config file/, /JSON object/],
    ['not JSON', '{ "port": ', /config file/, /not valid JSON/]
  ])('%s: exit code 2 and one line on stderr naming the key and the problem', async (_what, content, key, problem) => {
    const h = await home()
    const file = path.join(h, 'udptorrent.config.json')
    await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content))
    const p = spawnUdptorrent('node', ['node', '--id', '1', '--home', h, '--host', '127.0.0.1', '--tracker', '127.0.0.1:9'])
    expect(await p.waitExit()).toBe(2)
    const lines = p.stderr.filter((l) => l.trim() !== '')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain(file)
    expect(lines[0]).toMatch(key)
    expect(lines[0]).toMatch(problem)
    expect(p.stdout).toEqual([])
  })

  it('a --config file that does not exist is an error (exit 2); a missing default file is not', async () => {
    const h = await home()
    const p = spawnUdptorrent('node', ['node', '--id', '1', '--home', h, '--host', '127.0.0.1', '--config', path.join(h, 'nope.json')])
    expect(await p.waitExit()).toBe(2)
    expect(p.stderr.filter((l) => l.trim() !== '')).toEqual([expect.stringMatching(/config file .*nope\.json: cannot read it: ENOENT/)])
    const tracker = await startTracker(h)
    await startNode(h, 1, tracker.address)
  })
})

describe('the environment', () => {
  it('a node-only UDPTORRENT_* setting does not stop a tracker from starting; an unknown flag still does', async () => {
    const h = await home()
    const env = { UDPTORRENT_UPLOAD_LIMIT: '5MB/s', UDPTORRENT_DIRECT_IO: 'false' }
    const tracker = spawnUdptorrent('tracker', ['tracker', '--home', h, '--port', '0'], env)
    await tracker.waitForLine(/^tracker listening on /)
    tracker.kill()
    await tracker.waitExit()
    const bad = spawnUdptorrent('tracker', ['tracker', '--home', h, '--port', '0', '--upload-limit', '5MB/s'], env)
    expect(await bad.waitExit()).toBe(2)
    expect(bad.stderr.join('\n')).toMatch(/Unknown argument/)
  })
})

describe('status', () => {
  it('shows a table of downloads with per-owner transport stats, uploads and peers; no escape codes without a TTY', async () => {
    const { h, tracker, seed } = await seeded(20 * MB)
    const n = await startNode(h, 3, tracker.address, ['--download', 'data.bin', '--progress-interval', '200', '--impair', 'rate=4MB/s,queue=512KB,seed=9'], 'pipe')
    await n.waitForLine(/^progress data\.bin: \d+\.\d% .*pieces [1-9]/, 30_000)
    const before = n.lines.length
    n.write('status')
    await n.waitForLine(/^peers known: /)
    const status = n.lines.slice(before)
    const at = (re: RegExp): number => status.findIndex((l) => re.test(l))
    expect(at(/^node 3 at 127\.0\.0\.1:\d+; tracker [\d.:]+ connected$/)).toBeGreaterThanOrEqual(0)
    expect(at(/^downloads \(1\):$/)).toBeGreaterThanOrEqual(0)
    // Header and row, columns aligned: each header starts where its value starts.
    const header = status[at(/^ {2}FILE +PHASE +DONE +SIZE +% +RATE +ETA +OWNERS +PIECES$/)] as string
    const row = status[at(/^ {2}data\.bin +pieces +[\d.]+ [KM]?B +20\.0 MB +\d+\.\d% +[\d.]+ [KM]?B\/s +\S+ +1\/1 +\d+\/77$/)] as string
    expect(header).toBeDefined()
    expect(row).toBeDefined()
    for (const col of ['PHASE', 'SIZE', 'OWNERS']) expect(row[header.indexOf(col) - 1]).toBe(' ')
    expect(row.indexOf('pieces')).toBe(header.indexOf('PHASE'))
    const ownerHeader = at(/^ {2}FILE +OWNER +ADDRESS +STATE +BYTES +GOODPUT +RTT MS +CWND +INFLIGHT +RETRANSMITS +TIMEOUTS +DATAGRAM$/)
    expect(ownerHeader).toBeGreaterThanOrEqual(0)
    expect(status[ownerHeader + 1]).toMatch(/^ {2}data\.bin +1 +127\.0\.0\.1:\d+ +active +[\d.]+ [KM]?B +[\d.]+ [KM]?B\/s +\d+\.\d\d +\d+ +\d+ +\d+ +\d+ +\d+ B$/)
    expect(at(/^uploads:$/)).toBeGreaterThanOrEqual(0)
    expect(at(/^peers known: 1; served 0 requests, 0 B; malformed datagrams dropped: 0$/)).toBeGreaterThanOrEqual(0)
    await n.waitForLine(/^download complete: data\.bin/, 60_000)
    expect(n.lines.join('\n')).not.toContain('\x1b')

    // The seed's uploads table counts what it served: at least the 20 MB file.
    const from = seed.lines.length
    seed.write('status')
    await seed.waitForLine(/^peers known: /)
    const s = seed.lines.slice(from)
    const i = s.findIndex((l) => /^uploads:$/.test(l))
    expect(s[i + 1]).toMatch(/^ {2}REQUESTS +DATAGRAMS +SENT +REJECTED +DROPPED +READ ERRORS$/)
    const m = /^ {2}(\d+) +(\d+) +([\d.]+) MB +\d+ +\d+ +0$/.exec(s[i + 2] ?? '')
    expect(m, s.join('\n')).not.toBeNull()
    expect(Number(m?.[1])).toBeGreaterThan(0)
    expect(Number(m?.[2])).toBeGreaterThan(0)
    expect(Number(m?.[3])).toBeGreaterThanOrEqual(20)
  })
})
