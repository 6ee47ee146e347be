/**
 * npm run bench [-- [scenario ...] [--quick] [--reps N] [--keep]]
 *
 * Measures udptorrent against the figures it should be compared with, side by side in one run:
 *
 *   loopback  one owner → one downloader, default config, against a raw windowed dgram blast at
 *             the same datagram size (and at 1200 B), with the CPU use of both nodes
 *   owners4   four owners each capped by --upload-limit 10MB/s → one downloader, against 40 MB/s
 *   lossy     one owner; the owner's and the downloader's inbound paths each impaired (--impair
 *             delay=10,loss=L: 10 ms and L % loss each way) for L = 0, 1, 5 %: goodput, ratio to
 *             L = 0, retransmission overhead
 *   core      100 MB from two owners, 5 times clean and 5 times with the downloader's inbound path
 *             impaired (--impair loss=5,reorder=2,dup=1, a seed per run): times, byte-identical count
 *   memory    one owner → one downloader, 1 GB: the downloader's peak RSS (VmHWM)
 *   netlab    (root + ip netns) tracker and owner in lab_a, downloader in lab_b across the
 *             user-space link emulator (../shared/tools/netlab) for profiles d10, d10l1, d10l5,
 *             against HTTP over TCP (CUBIC and BBR) on the same link
 *
 * Every process is a real `udptorrent` started through src/harness/processes.ts; every wait is
 * bounded and a timeout becomes a failed row. Results are printed as tables, then a summary of
 * targets, and written to reports/bench-<timestamp>.json.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { copyFile, link, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { DEFAULT_DATAGRAM_BYTES } from '../configs.js'
import { CLI, killAll, NODE_ARGS, Proc, spawnCli } from '../src/harness/processes.js'

// ---- where things are ---------------------------------------------------------------------------

const HERE = path.dirname(fileURLToPath(import.meta.url))
/** dist/scripts → repo root (two up); scripts/ run some other way → one up. */
const REPO_ROOT = path.basename(path.dirname(HERE)) === 'dist' ? path.resolve(HERE, '../..') : path.resolve(HERE, '..')
const BENCH_TOOLS = path.join(path.basename(path.dirname(HERE)) === 'dist' ? HERE : path.join(REPO_ROOT, 'dist/scripts'), 'bench')
const BLAST = path.join(BENCH_TOOLS, 'blast.js')
const HTTP_SERVE = path.join(BENCH_TOOLS, 'http-serve.js')
/** Python, because only it (not Node) can set TCP_CONGESTION on a socket; not compiled, so from the source tree. */
const HTTP_SERVE_PY = path.join(REPO_ROOT, 'scripts/bench/http_serve.py')
const HTTP_GET = path.join(BENCH_TOOLS, 'http-get.js')
const NETLAB = path.resolve(REPO_ROOT, '../shared/tools/netlab/netlab.sh')
/** Where netlab.sh keeps linkemu's pid and log while the lab is up. */
const NETLAB_RUN_DIR = '/run/netem_lab'

/** Size of a DATA datagram's header (magic, version, type, txid, stream, offset). */
const DATA_HEADER_BYTES = 17
const MB = 1e6

// ---- arguments ----------------------------------------------------------------------------------

const SCENARIOS = ['loopback', 'owners4', 'lossy', 'core', 'memory', 'netlab'] as const
type ScenarioName = typeof SCENARIOS[number]

function usage (): never {
  console.log(`usage: node dist/scripts/bench.js [${SCENARIOS.join('|')} ...] [--quick] [--reps N] [--keep] [--no-tcp] [--cpu-prof DIR]
  default: every scenario; --quick: smaller files; --reps N: run each udptorrent measurement N times
  and report the median (loopback and netlab take turns with their baseline, whose median they are
  compared with); --keep: keep the temporary homes and logs; --no-tcp: netlab measures
  udptorrent only (no TCP baseline, no ratios), to iterate on the transport; --cpu-prof DIR: every
  udptorrent process writes a V8 CPU profile (node --cpu-prof) into DIR`)
  process.exit(2)
}

const argv = process.argv.slice(2)
const QUICK = argv.includes('--quick')
const KEEP = argv.includes('--keep')
const NO_TCP = argv.includes('--no-tcp')
let REPS = 1
let CPU_PROF_DIR: string | undefined
const selected: ScenarioName[] = []
for (let i = 0; i < argv.length; i++) {
  const a = argv[i] as string
  if (a === '--quick' || a === '--keep' || a === '--no-tcp') continue
  if (a === '--reps') {
    REPS = Math.max(1, Math.floor(Number(argv[++i])))
    if (!Number.isFinite(REPS)) usage()
    continue
  }
  if (a === '--cpu-prof') {
    CPU_PROF_DIR = argv[++i]
    if (CPU_PROF_DIR === undefined) usage()
    CPU_PROF_DIR = path.resolve(CPU_PROF_DIR)
    continue
  }
  if (a === '--help' || a === '-h') usage()
  if (!(SCENARIOS as readonly string[]).includes(a)) {
    console.error(`unknown scenario or flag "${a}"`)
    usage()
  }
  if (!selected.includes(a as ScenarioName)) selected.push(a as ScenarioName)
}
const RUN: ScenarioName[] = selected.length > 0 ? selected : [...SCENARIOS]

const SIZES = {
  loopback: QUICK ? 64 * MB : 256 * MB,
  owners4: QUICK ? 60 * MB : 200 * MB,
  lossy: QUICK ? 30 * MB : 100 * MB,
  core: QUICK ? 30 * MB : 100 * MB,
  memory: QUICK ? 256 * MB : 1000 * MB,
  netlab: QUICK ? 30 * MB : 100 * MB
}
const RAW_SECONDS = QUICK ? 2 : 3
const TCP_MAX_SECONDS = 30

// ---- small helpers ------------------------------------------------------------------------------

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
const f1 = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(1)
const f2 = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(2)
const pct = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '-' : `${(n * 100).toFixed(0)} %`
const errMsg = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split('\n')[0] as string

/** ' (a b c)': every repetition's rate, after a median, when there were several. */
const repsCell = (reps: number[] | undefined): string => reps !== undefined && reps.length > 1 ? ` (${reps.map(f1).join(' ')})` : ''

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2
}

function printTable (title: string, allHeaders: string[], allRows: string[][]): void {
  // A column with an empty header (an optional one not in use) is left out.
  const keep = allHeaders.map((h, i) => h !== '' || allRows.some((r) => (r[i] ?? '') !== ''))
  const headers = allHeaders.filter((_h, i) => keep[i])
  const rows = allRows.map((r) => r.filter((_c, i) => keep[i]))
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()
  console.log(`\n${title}`)
  console.log(line(headers))
  console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const r of rows) console.log(line(r))
}

function sh (cmd: string, args: string[], timeoutMs = 60_000): { code: number | null, out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs })
  return { code: r.error !== undefined ? -1 : r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error !== undefined ? r.error.message : ''}`.trim() }
}

// ---- machine state ------------------------------------------------------------------------------

let CLK_TCK = 100
try { CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch {}

function procTicks (pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    return Number(f[11]) + Number(f[12]) // utime, stime (fields 14 and 15)
  } catch {
    return undefined
  }
}

function machineTicks (): { busy: number, total: number } {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] as string).trim().split(/\s+/).slice(1, 9).map(Number)
  const total = f.reduce((a, b) => a + b, 0)
  return { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total }
}

/** Kernel UDP counters (/proc/net/snmp) of the host, or of a netlab namespace. */
function udpCounters (ns?: string): Record<string, number> | undefined {
  let text: string
  try {
    text = ns === undefined ? readFileSync('/proc/net/snmp', 'utf8') : execFileSync('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp'], { encoding: 'utf8' })
  } catch {
    return undefined
  }
  const lines = text.split('\n').filter((l) => l.startsWith('Udp:'))
  if (lines.length < 2) return undefined
  const keys = (lines[0] as string).split(/\s+/).slice(1)
  const vals = (lines[1] as string).split(/\s+/).slice(1).map(Number)
  return Object.fromEntries(keys.map((k, i) => [k, vals[i] ?? NaN]))
}

function udpDelta (a: Record<string, number> | undefined, b: Record<string, number> | undefined): Record<string, number> | undefined {
  if (a === undefined || b === undefined) return undefined
  return Object.fromEntries(Object.keys(b).map((k) => [k, (b[k] ?? 0) - (a[k] ?? 0)]))
}

interface CpuFigure { meanPct: number, maxPct: number, peakRssMB?: number }

/** The kernel's high-water mark of a process's resident set (VmHWM), in MB: its true peak so far. */
function peakRssMB (pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? undefined : Number(m[1]) * 1024 / MB
  } catch {
    return undefined
  }
}
interface CpuReport { procs: Record<string, CpuFigure>, machineBusyPct: number }

/** Samples the CPU time of some processes (and of the whole machine) every 250 ms. */
class CpuSampler {
  private readonly tracks = new Map<string, { pid: number, first?: { t: number, ticks: number }, last?: { t: number, ticks: number }, maxPct: number, peakRssMB?: number }>()
  private timer: NodeJS.Timeout | undefined
  private m0 = machineTicks()
  private m1 = this.m0

  add (name: string, pid: number | undefined): void {
    if (pid === undefined) return
    this.tracks.set(name, { pid, maxPct: 0 })
    this.sample()
  }

  start (): this {
    this.m0 = machineTicks()
    this.timer = setInterval(() => this.sample(), 250)
    return this
  }

  private sample (): void {
    const t = performance.now()
    for (const tr of this.tracks.values()) {
      const ticks = procTicks(tr.pid)
      if (ticks === undefined) continue
      tr.peakRssMB = peakRssMB(tr.pid) ?? tr.peakRssMB
      if (tr.last !== undefined && t - tr.last.t > 100) {
        tr.maxPct = Math.max(tr.maxPct, (ticks - tr.last.ticks) / CLK_TCK / ((t - tr.last.t) / 1000) * 100)
      }
      tr.first ??= { t, ticks }
      tr.last = { t, ticks }
    }
    this.m1 = machineTicks()
  }

  stop (): CpuReport {
    this.sample()
    if (this.timer !== undefined) clearInterval(this.timer)
    const procs: Record<string, CpuFigure> = {}
    for (const [name, tr] of this.tracks) {
      if (tr.first === undefined || tr.last === undefined || tr.last.t - tr.first.t < 1) continue
      procs[name] = { meanPct: (tr.last.ticks - tr.first.ticks) / CLK_TCK / ((tr.last.t - tr.first.t) / 1000) * 100, maxPct: tr.maxPct, peakRssMB: tr.peakRssMB }
    }
    const dt = this.m1.total - this.m0.total
    return { procs, machineBusyPct: dt > 0 ? (this.m1.busy - this.m0.busy) / dt * 100 : NaN }
  }
}

const dropsCell = (u: Record<string, number> | undefined): string => u?.RcvbufErrors === undefined ? '-' : String(u.RcvbufErrors)
const cpuCell = (c: CpuFigure | undefined): string => c === undefined ? '-' : `${c.meanPct.toFixed(0)}/${c.maxPct.toFixed(0)}`

function machineState (): Record<string, unknown> {
  let top: string[] = []
  try {
    top = execFileSync('ps', ['-eo', 'pid,pcpu,etime,args', '--sort=-pcpu'], { encoding: 'utf8' }).split('\n').slice(1, 5).map((l) => l.trim().slice(0, 110)).filter((l) => l !== '')
  } catch {}
  let commit = 'unknown'
  try { commit = execFileSync('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim() } catch {}
  let rmemMax: number | undefined
  try { rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8').trim()) } catch {}
  return {
    time: new Date().toISOString(),
    host: os.hostname(),
    kernel: os.release(),
    node: process.version,
    nproc: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    loadavg: os.loadavg().map((x) => Number(x.toFixed(2))),
    memFreeMB: Math.round(os.freemem() / MB),
    memTotalMB: Math.round(os.totalmem() / MB),
    rmemMax,
    commit,
    topProcesses: top
  }
}

// ---- results ------------------------------------------------------------------------------------

interface TargetRow { scenario: string, target: string, measured: string, met: 'yes' | 'no' | 'n/a' }

interface ScenarioReport {
  name: ScenarioName
  status: 'ok' | 'failed' | 'skipped'
  reason?: string
  tables: Array<{ title: string, headers: string[], rows: string[][] }>
  notes: string[]
  data: Record<string, unknown>
  targets: TargetRow[]
}

function newReport (name: ScenarioName): ScenarioReport {
  return { name, status: 'ok', tables: [], notes: [], data: {}, targets: [] }
}

function addTable (r: ScenarioReport, title: string, headers: string[], rows: string[][]): void {
  r.tables.push({ title, headers, rows })
  printTable(title, headers, rows)
}

function note (r: ScenarioReport, text: string): void {
  r.notes.push(text)
  console.log(`  note: ${text}`)
}

function target (r: ScenarioReport, text: string, measured: string, met: boolean | undefined): void {
  r.targets.push({ scenario: r.name, target: text, measured, met: met === undefined ? 'n/a' : met ? 'yes' : 'no' })
}

// ---- files --------------------------------------------------------------------------------------

let WORK = ''
const files = new Map<number, { path: string, name: string, sha256: string }>()

/** A random file of `size` bytes, generated once per size for the whole run. */
async function randomFile (size: number): Promise<{ path: string, name: string, sha256: string }> {
  const known = files.get(size)
  if (known !== undefined) return known
  const name = `bench-${Math.round(size / MB)}MB.bin`
  const file = path.join(WORK, 'files', name)
  await mkdir(path.dirname(file), { recursive: true })
  const h = createHash('sha256')
  const fh = await open(file, 'w')
  try {
    for (let at = 0; at < size; at += 1 << 20) {
      const chunk = randomBytes(Math.min(1 << 20, size - at))
      h.update(chunk)
      await fh.write(chunk)
    }
  } finally {
    await fh.close()
  }
  const f = { path: file, name, sha256: h.digest('hex') }
  files.set(size, f)
  return f
}

async function placeFile (src: string, dir: string, name: string): Promise<void> {
  await mkdir(dir, { recursive: true })
  try {
    await link(src, path.join(dir, name))
  } catch {
    await copyFile(src, path.join(dir, name))
  }
}

// ---- flags the build supports -------------------------------------------------------------------

const flagSupport = new Map<string, { ok: boolean, detail: string }>()

/** Starts a throwaway node with the flag: yargs (strict) rejects an unknown one before starting. */
async function probeFlag (flag: string, value: string): Promise<{ ok: boolean, detail: string }> {
  const home = path.join(WORK, 'probe')
  const p = spawnCli(`probe${flag}`, ['node', '--id', '4000000000', '--home', home, '--tracker', '127.0.0.1:9', '--host', '127.0.0.1', flag, value])
  let res: { ok: boolean, detail: string }
  try {
    const m = await p.waitForLine(/listening on|Unknown argument|^udptorrent: (.*)/, 15_000)
    if (/Unknown argument/.test(m[0])) res = { ok: false, detail: 'unknown flag' }
    else if (m[1] !== undefined) res = { ok: false, detail: `rejected: ${m[1]}` }
    else res = { ok: true, detail: 'supported' }
  } catch (err) {
    res = /Unknown argument/.test(errMsg(err) + p.lines.join('\n')) ? { ok: false, detail: 'unknown flag' } : { ok: false, detail: errMsg(err) }
  } finally {
    p.kill('SIGKILL')
  }
  flagSupport.set(flag, res)
  return res
}

const supports = (flag: string): boolean => flagSupport.get(flag)?.ok === true

// ---- running a swarm ----------------------------------------------------------------------------

interface OwnerLinkStats {
  nodeId: number
  state?: string
  bytes?: number
  srttMs?: number
  minRttMs?: number
  cwnd?: number
  datagramBytes?: number
  datagramsReceived?: number
  bytesReceived?: number
  retransmits?: number
  timeouts?: number
  duplicates?: number
  [k: string]: unknown
}

interface Served { requests?: number, datagrams?: number, bytes?: number }

interface SwarmSpec {
  label: string
  size: number
  owners: number
  ownerArgs?: string[]
  downloaderArgs?: string[]
  timeoutMs: number
  /** Run across the netlab namespaces (tracker + owners in lab_a, downloader in lab_b). */
  netlab?: boolean
  /** Extra pids to watch (e.g. the link emulator). */
  watch?: Record<string, number>
}

interface SwarmResult {
  label: string
  ok: boolean
  error?: string
  size: number
  seconds?: number
  wallSeconds: number
  goodputMBps?: number
  verified: boolean
  owners: OwnerLinkStats[]
  served: Array<Served | undefined>
  cpu?: CpuReport
  /** Change in the kernel's UDP counters over the download: host-wide for loopback runs (other users' traffic included), lab_b's for netlab. */
  udp?: Record<string, number>
  /** netlab: what linkemu did to the owner → downloader direction during this run alone. */
  link?: LinkemuCounts
  reps?: number[]
}

const DOWNLOADER_ID = 100

interface Placement { ns?: string, host: string }

/** The bin's node flags, plus a profile per process when --cpu-prof asks for one. */
const LAUNCH_NODE_ARGS = CPU_PROF_DIR === undefined ? NODE_ARGS : [...NODE_ARGS, '--cpu-prof', `--cpu-prof-dir=${CPU_PROF_DIR}`]

function launch (name: string, where: Placement, args: string[]): Proc {
  if (where.ns === undefined) return spawnCli(name, args, 'ignore', LAUNCH_NODE_ARGS)
  const child = spawn('ip', ['netns', 'exec', where.ns, process.execPath, ...LAUNCH_NODE_ARGS, CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, UDPTORRENT_HOME: undefined }
  })
  return new Proc(name, child)
}

async function readLog (home: string, name: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(path.join(home, 'logs', `${name}.log`), 'utf8').catch(() => '')
  const out: Array<Record<string, unknown>> = []
  for (const l of text.split('\n')) {
    if (l.trim() === '') continue
    try { out.push(JSON.parse(l) as Record<string, unknown>) } catch {}
  }
  return out
}

async function stopGently (p: Proc, ms = 15_000): Promise<void> {
  if (p.exitCode !== undefined) return
  p.kill('SIGTERM')
  try {
    await p.waitExit(ms)
  } catch {
    p.kill('SIGKILL')
  }
}

async function runSwarmOnce (spec: SwarmSpec): Promise<SwarmResult> {
  const file = await randomFile(spec.size)
  const home = await mkdtemp(path.join(WORK, `${spec.label.replace(/[^\w.-]+/g, '_')}-`))
  const a: Placement = spec.netlab === true ? { ns: 'lab_a', host: '10.200.2.1' } : { host: '127.0.0.1' }
  const b: Placement = spec.netlab === true ? { ns: 'lab_b', host: '10.200.2.2' } : { host: '127.0.0.1' }
  const procs: Proc[] = []
  const result: SwarmResult = { label: spec.label, ok: false, size: spec.size, wallSeconds: NaN, verified: false, owners: [], served: [] }
  try {
    const tracker = launch('tracker', a, ['tracker', '--home', home, '--host', a.host, '--port', '0'])
    procs.push(tracker)
    const tm = await tracker.waitForLine(/^tracker listening on ([\d.]+):(\d+)/, 30_000)
    const trackerAddr = `${a.host}:${tm[2] as string}`

    const owners: Proc[] = []
    for (let id = 1; id <= spec.owners; id++) {
      await placeFile(file.path, path.join(home, 'node_files', `node${id}`), file.name)
      const p = launch(`owner${id}`, a, ['node', '--id', String(id), '--home', home, '--tracker', trackerAddr, '--host', a.host, '--send', file.name, ...(spec.ownerArgs ?? [])])
      procs.push(p)
      owners.push(p)
    }
    for (const p of owners) {
      const m = await p.waitForLine(/^sharing |^cannot send (.*)/, 60_000)
      if (m[1] !== undefined) throw new Error(`${p.name}: cannot send ${m[1]}`)
    }

    const cpu = new CpuSampler()
    const started = performance.now()
    const dl = launch('downloader', b, ['node', '--id', String(DOWNLOADER_ID), '--home', home, '--tracker', trackerAddr, '--host', b.host,
      '--download', file.name, '--exit-when-done', ...(spec.downloaderArgs ?? [])])
    procs.push(dl)
    cpu.add('downloader', dl.child.pid)
    owners.forEach((p, i) => cpu.add(`owner${i + 1}`, p.child.pid))
    for (const [name, pid] of Object.entries(spec.watch ?? {})) cpu.add(name, pid)
    cpu.start()
    const udp0 = udpCounters(b.ns)
    let code: number | null
    try {
      code = await dl.waitExit(spec.timeoutMs)
    } catch {
      dl.kill('SIGKILL')
      result.cpu = cpu.stop()
      throw new Error(`timeout: no result within ${(spec.timeoutMs / 1000).toFixed(1)} s`)
    }
    result.wallSeconds = (performance.now() - started) / 1000
    result.cpu = cpu.stop()
    result.udp = udpDelta(udp0, udpCounters(b.ns))

    const record = (await readLog(home, `node${DOWNLOADER_ID}`)).reverse().find((r) => r.msg === 'download complete' && r.file === file.name)
    if (code !== 0 || record === undefined) {
      const why = dl.lines.find((l) => l.startsWith('download failed')) ?? `downloader exited ${String(code)}${record === undefined ? ', no "download complete" record' : ''}`
      throw new Error(why)
    }
    result.seconds = Number(record.seconds)
    const bytes = Number(record.bytes)
    result.goodputMBps = bytes / result.seconds / MB
    result.verified = record.sha256 === file.sha256 && bytes === spec.size
    result.owners = Array.isArray(record.owners) ? record.owners as OwnerLinkStats[] : []
    if (!result.verified) throw new Error(`downloaded file does not match: sha256 ${String(record.sha256).slice(0, 16)}…, ${bytes} bytes`)

    // Owners' 'node stopped' record carries what they served (payload bytes), when the build logs it.
    await Promise.all(owners.map(async (p) => await stopGently(p)))
    for (let id = 1; id <= spec.owners; id++) {
      const stopped = (await readLog(home, `node${id}`)).reverse().find((r) => r.msg === 'node stopped')
      const served = stopped?.served as Served | undefined
      result.served.push(served !== undefined && typeof served.bytes === 'number' ? served : undefined)
    }
    result.ok = true
  } catch (err) {
    result.ok = false
    result.error = errMsg(err)
  } finally {
    for (const p of procs) if (p.exitCode === undefined) p.kill('SIGKILL')
    await Promise.all(procs.map(async (p) => await p.waitExit(5_000).catch(() => {})))
    if (!KEEP) await rm(home, { recursive: true, force: true }).catch(() => {})
    else console.log(`  (kept ${home})`)
  }
  return result
}

/** One run of a swarm, reported on the console as it ends. */
async function runSwarmRep (spec: SwarmSpec, i: number): Promise<SwarmResult> {
  const r = await runSwarmOnce(spec)
  console.log(`  ${spec.label}${REPS > 1 ? ` #${i + 1}` : ''}: ${r.ok ? `${f1(r.goodputMBps)} MB/s (${f2(r.seconds)} s, ${r.owners.map((o) => `${o.datagramBytes ?? '?'} B`).join('/')})` : `FAILED: ${r.error ?? ''}`}`)
  return r
}

/** The run with the median rate (or the failed run, if one failed), with every run's rate in .reps. */
function medianRun<T extends { ok: boolean, reps?: number[] }> (runs: T[], rate: (run: T) => number | undefined): T {
  const failed = runs.find((run) => !run.ok)
  if (failed !== undefined) return failed
  const sorted = [...runs].sort((x, y) => (rate(x) ?? 0) - (rate(y) ?? 0))
  return { ...(sorted[(sorted.length - 1) >> 1] as T), reps: runs.map((run) => rate(run) ?? NaN) }
}

/** Runs a swarm REPS times and returns the run with the median goodput (all goodputs in .reps). */
async function runSwarm (spec: SwarmSpec): Promise<SwarmResult> {
  const runs: SwarmResult[] = []
  for (let i = 0; i < REPS; i++) {
    const r = await runSwarmRep(spec, i)
    runs.push(r)
    if (!r.ok) return r
  }
  return medianRun(runs, (run) => run.goodputMBps)
}

/** Retransmission overhead: payload bytes the owners sent / file size, with where the figure comes from. */
function overhead (r: SwarmResult): { value: number, source: string, rx: number, estSent: number } {
  const payload = (o: OwnerLinkStats): number => (o.datagramBytes ?? 1200) - DATA_HEADER_BYTES
  // datagramsReceived counts every DATA datagram that matched a request, duplicates included.
  const rx = r.owners.reduce((s, o) => s + (o.datagramsReceived ?? 0) * payload(o), 0) / r.size
  // An owner answers every requested block, so what it sent ≈ the file + every re-requested block.
  const estSent = (r.size + r.owners.reduce((s, o) => s + (o.retransmits ?? 0) * payload(o), 0)) / r.size
  if (r.served.length > 0 && r.served.every((s) => s?.bytes !== undefined)) {
    return { value: r.served.reduce((s, x) => s + (x?.bytes ?? 0), 0) / r.size, source: 'served', rx, estSent }
  }
  return { value: estSent, source: 'est(retx)', rx, estSent }
}

// ---- raw dgram blast ----------------------------------------------------------------------------

interface BlastResult { size: number, ok: boolean, error?: string, MBps?: number, datagrams?: number, window: number, recvCpuPct?: number, sendCpuPct?: number, stalls?: number, udp?: Record<string, number>, reps?: number[] }

async function runBlast (size: number, seconds: number): Promise<BlastResult> {
  // ~256 datagrams in flight, acked every 64, as long as that fits the (clamped) receive buffer.
  const window = Math.max(8, Math.min(256, Math.floor(2 * 1024 * 1024 / size)))
  const ackEvery = Math.max(1, Math.floor(window / 4))
  const res: BlastResult = { size, ok: false, window }
  const recv = new Proc(`blast-recv-${size}`, spawn(process.execPath, [BLAST, 'recv', '--host', '127.0.0.1', '--rcvbuf', String(8 * 1024 * 1024), '--ack-every', String(ackEvery)], { stdio: ['ignore', 'pipe', 'pipe'] }))
  let send: Proc | undefined
  try {
    const port = (await recv.waitForLine(/^READY (\d+)/, 10_000))[1] as string
    const udp0 = udpCounters()
    send = new Proc(`blast-send-${size}`, spawn(process.execPath, [BLAST, 'send', '--host', '127.0.0.1', '--port', port, '--size', String(size), '--window', String(window), '--seconds', String(seconds)], { stdio: ['ignore', 'pipe', 'pipe'] }))
    await send.waitExit((seconds + 15) * 1000)
    await recv.waitExit(10_000)
    res.udp = udpDelta(udp0, udpCounters())
    const r = JSON.parse(recv.lines.find((l) => l.startsWith('{')) ?? 'null') as { bytes: number, datagrams: number, seconds: number, cpuMs: number } | null
    const s = JSON.parse(send.lines.find((l) => l.startsWith('{')) ?? 'null') as { sent: number, stalls: number, cpuMs: number } | null
    if (r === null || !(r.seconds > 0)) throw new Error('receiver reported nothing')
    res.MBps = r.bytes / r.seconds / MB
    res.datagrams = r.datagrams
    res.recvCpuPct = r.cpuMs / 10 / r.seconds
    res.sendCpuPct = s !== null ? s.cpuMs / 10 / seconds : undefined
    res.stalls = s?.stalls
    res.ok = true
  } catch (err) {
    res.error = errMsg(err)
  } finally {
    recv.kill('SIGKILL')
    send?.kill('SIGKILL')
  }
  console.log(`  raw dgram ${size} B: ${res.ok ? `${f1(res.MBps)} MB/s` : `FAILED: ${res.error ?? ''}`}`)
  return res
}

// ---- scenarios ----------------------------------------------------------------------------------

/** BENCH_TIMEOUT_SCALE (default 1) scales every download's time limit, e.g. to check that a timeout is reported as a failed row. */
const TIMEOUT_SCALE = Number(process.env.BENCH_TIMEOUT_SCALE ?? 1) > 0 ? Number(process.env.BENCH_TIMEOUT_SCALE ?? 1) : 1
const swarmTimeout = (size: number, minMBps: number): number => Math.round((60_000 + size / (minMBps * MB) * 1000) * TIMEOUT_SCALE)

async function loopback (): Promise<ScenarioReport> {
  const r = newReport('loopback')
  const size = SIZES.loopback
  console.log(`\n== loopback: one owner → one downloader, ${size / MB} MB, default config; raw dgram blast ${RAW_SECONDS} s per size`)
  await randomFile(size)
  // With --reps, udptorrent and the raw blast at its datagram size take turns, and the medians are
  // compared: the machine's load drifts within a run (the same build read 183-313 MB/s in one hour).
  const spec: SwarmSpec = { label: 'loopback', size, owners: 1, timeoutMs: swarmTimeout(size, 5) }
  const uRuns: SwarmResult[] = []
  const sameSize: BlastResult[] = []
  for (let i = 0; i < REPS; i++) {
    const run = await runSwarmRep(spec, i)
    uRuns.push(run)
    if (!run.ok) break
    sameSize.push(await runBlast(run.owners[0]?.datagramBytes ?? DEFAULT_DATAGRAM_BYTES, RAW_SECONDS))
  }
  const u = medianRun(uRuns, (run) => run.goodputMBps)
  r.data.udptorrent = u
  const d = u.owners[0]?.datagramBytes
  const raws: BlastResult[] = sameSize.length > 0 ? [medianRun(sameSize, (b) => b.MBps)] : []
  if (d !== DEFAULT_DATAGRAM_BYTES) raws.push(await runBlast(DEFAULT_DATAGRAM_BYTES, RAW_SECONDS))
  r.data.raw = raws

  const rows: string[][] = []
  rows.push(['udptorrent (e2e)', String(d ?? '-'), u.ok ? f1(u.goodputMBps) : `FAILED: ${u.error ?? ''}`, u.ok ? `${f2(u.seconds)} (wall ${f2(u.wallSeconds)})` : '-',
    cpuCell(u.cpu?.procs.downloader), cpuCell(u.cpu?.procs.owner1), f1(u.cpu?.machineBusyPct), dropsCell(u.udp), '', REPS > 1 ? (u.reps ?? []).map(f1).join(' ') : ''])
  for (const b of raws) {
    const ratio = u.ok && b.ok ? (u.goodputMBps as number) / (b.MBps as number) : undefined
    rows.push([`raw dgram w=${b.window}`, String(b.size), b.ok ? f1(b.MBps) : `FAILED: ${b.error ?? ''}`, String(RAW_SECONDS),
      b.recvCpuPct === undefined ? '-' : `${b.recvCpuPct.toFixed(0)} (recv)`, b.sendCpuPct === undefined ? '-' : `${b.sendCpuPct.toFixed(0)} (send)`, '', dropsCell(b.udp),
      b.size === d ? `udptorrent/raw = ${pct(ratio)}` : `udptorrent/raw@${b.size} = ${pct(ratio)}`, REPS > 1 ? (b.reps ?? []).map(f1).join(' ') : ''])
  }
  addTable(r, `loopback (${size / MB} MB file; udptorrent = verified bytes / 'download complete' seconds)`,
    ['run', 'datagram B', 'MB/s', 'seconds', 'dl CPU % mean/max', 'owner CPU % mean/max', 'machine busy % (all cores)', 'UDP rcvbuf drops (host)', 'ratio', REPS > 1 ? 'reps MB/s' : ''], rows)
  if (u.ok) {
    const o = u.owners[0]
    if (o !== undefined) note(r, `link: srtt ${f2(o.srttMs)} ms, cwnd ${o.cwnd ?? '-'}, retransmits ${o.retransmits ?? '-'}, timeouts ${o.timeouts ?? '-'}, duplicates ${o.duplicates ?? '-'}, datagrams ${o.datagramsReceived ?? '-'}`)
    if (d === 1200 || d === undefined) note(r, 'the download used 1200-byte datagrams: no datagram-size probing happened (or it is not in this build)')
  }
  const same = raws.find((b) => b.size === d)
  const ratio = u.ok && same?.ok === true ? (u.goodputMBps as number) / (same.MBps as number) : undefined
  target(r, `loopback goodput ≥ 60 % of raw dgram at the same datagram size (${d ?? '?'} B)`,
    u.ok ? `${f1(u.goodputMBps)} / ${f1(same?.MBps)} MB/s = ${pct(ratio)}` : `failed: ${u.error ?? ''}`, ratio === undefined ? (u.ok ? undefined : false) : ratio >= 0.6)
  target(r, 'loopback goodput > 500 MB/s (with datagram-size probing)',
    u.ok ? `${f1(u.goodputMBps)} MB/s at ${d ?? '?'} B` : `failed: ${u.error ?? ''}`, u.ok ? (u.goodputMBps as number) > 500 : false)
  if (!u.ok) r.status = 'failed'
  return r
}

async function owners4 (): Promise<ScenarioReport> {
  const r = newReport('owners4')
  const size = SIZES.owners4
  const ideal = 40
  console.log(`\n== owners4: four owners each --upload-limit 10MB/s → one downloader, ${size / MB} MB`)
  const flag = flagSupport.get('--upload-limit')
  if (flag?.ok !== true) {
    r.status = 'skipped'
    r.reason = `--upload-limit not usable in this build (${flag?.detail ?? 'not probed'})`
    console.log(`  skipped: ${r.reason}`)
    target(r, 'four 10 MB/s owners: goodput ≥ 90 % of 40 MB/s', `skipped: ${r.reason}`, undefined)
    return r
  }
  const u = await runSwarm({ label: 'owners4', size, owners: 4, ownerArgs: ['--upload-limit', '10MB/s'], timeoutMs: swarmTimeout(size, 2) })
  r.data.udptorrent = u
  const ratio = u.ok ? (u.goodputMBps as number) / ideal : undefined
  const shares = u.owners.map((o) => `${o.nodeId}:${f1((o.bytes ?? 0) / MB)}`).join(' ')
  addTable(r, `owners4 (${size / MB} MB file, 4 × --upload-limit 10MB/s)`,
    ['run', 'MB/s', 'ideal MB/s', 'ratio', 'seconds', 'MB per owner (id:MB)', 'dl CPU %', 'owner CPU % (1..4)', 'machine busy %', 'UDP rcvbuf drops (host)', REPS > 1 ? 'reps MB/s' : ''],
    [[`udptorrent${u.ok ? '' : ' FAILED'}`, u.ok ? f1(u.goodputMBps) : (u.error ?? ''), String(ideal), pct(ratio), f2(u.seconds), shares,
      cpuCell(u.cpu?.procs.downloader), u.cpu === undefined ? '-' : [1, 2, 3, 4].map((i) => f1(u.cpu?.procs[`owner${i}`]?.meanPct)).join('/'), f1(u.cpu?.machineBusyPct), dropsCell(u.udp),
      REPS > 1 ? (u.reps ?? []).map(f1).join(' ') : '']])
  if (u.ok) note(r, `per owner: ${u.owners.map((o) => `#${o.nodeId} srtt ${f2(o.srttMs)} ms cwnd ${o.cwnd ?? '-'} retx ${o.retransmits ?? '-'} ${o.datagramBytes ?? '-'} B`).join('; ')}`)
  target(r, 'four 10 MB/s owners: goodput ≥ 90 % of 40 MB/s', u.ok ? `${f1(u.goodputMBps)} MB/s = ${pct(ratio)}` : `failed: ${u.error ?? ''}`, u.ok ? (ratio as number) >= 0.9 : false)
  if (!u.ok) r.status = 'failed'
  return r
}

async function lossy (): Promise<ScenarioReport> {
  const r = newReport('lossy')
  const size = SIZES.lossy
  console.log(`\n== lossy: one owner → downloader, each side's inbound path --impair delay=10,loss=L (10 ms and L % loss each way), ${size / MB} MB`)
  if (flagSupport.get('--impair')?.ok !== true) {
    r.status = 'skipped'
    r.reason = `--impair not usable (${flagSupport.get('--impair')?.detail ?? 'not probed'})`
    console.log(`  skipped: ${r.reason}`)
    target(r, 'lossy: 5 % loss ≥ 80 % of 0 % loss goodput', `skipped: ${r.reason}`, undefined)
    return r
  }
  const runs: Array<{ loss: number, res: SwarmResult }> = []
  for (const loss of [0, 1, 5]) {
    // Both directions: the owner's inbound path carries the requests, the downloader's the data.
    const res = await runSwarm({
      label: `lossy-${loss}`, size, owners: 1,
      ownerArgs: ['--impair', `delay=10,loss=${loss},seed=8`],
      downloaderArgs: ['--impair', `delay=10,loss=${loss},seed=7`],
      timeoutMs: swarmTimeout(size, 0.5)
    })
    runs.push({ loss, res })
  }
  r.data.runs = runs
  const base = runs[0]?.res
  const rows = runs.map(({ loss, res }) => {
    const o = res.owners[0]
    const ov = res.ok ? overhead(res) : undefined
    const ratio = res.ok && base?.ok === true ? (res.goodputMBps as number) / (base.goodputMBps as number) : undefined
    return [`${loss} %`, res.ok ? f1(res.goodputMBps) : `FAILED: ${res.error ?? ''}`, pct(ratio), ov === undefined ? '-' : `${ov.value.toFixed(3)}× (${ov.source})`,
      ov === undefined || ov.source === 'served' ? '' : `${ov.rx.toFixed(3)}×`, f2(res.seconds), String(o?.retransmits ?? '-'), String(o?.timeouts ?? '-'), String(o?.duplicates ?? '-'),
      f1(o?.srttMs), String(o?.cwnd ?? '-'), String(o?.datagramBytes ?? '-'), cpuCell(res.cpu?.procs.downloader), cpuCell(res.cpu?.procs.owner1), f1(res.cpu?.machineBusyPct), dropsCell(res.udp),
      REPS > 1 ? (res.reps ?? []).map(f1).join(' ') : '']
  })
  addTable(r, `lossy (${size / MB} MB, owner and downloader each --impair delay=10,loss=L: 10 ms and L % loss each way)`,
    ['loss', 'MB/s', 'vs 0 %', 'overhead sent/useful', runs.every((x) => !x.res.ok || overhead(x.res).source === 'served') ? '' : 'rx/useful', 'seconds', 'retx', 'RTOs', 'dups', 'srtt ms', 'cwnd', 'dgram B', 'dl CPU %', 'owner CPU %', 'machine busy %', 'UDP rcvbuf drops (host)', REPS > 1 ? 'reps MB/s' : ''], rows)
  const firstOk = runs.find((x) => x.res.ok)?.res
  const src = firstOk !== undefined ? overhead(firstOk).source : undefined
  if (src !== undefined) note(r, src === 'served'
    ? "overhead = Σ owners' served.bytes ('node stopped' record) / file size"
    : "overhead = (file size + Σ retransmits × payload) / file size (estimate: the 'node stopped' record has no served.bytes in this build); " +
      'rx/useful = datagramsReceived (duplicates included) × payload / file size, i.e. what reached the downloader after the impairment')
  const l5 = runs.find((x) => x.loss === 5)?.res
  const ratio5 = l5?.ok === true && base?.ok === true ? (l5.goodputMBps as number) / (base.goodputMBps as number) : undefined
  target(r, 'lossy: 5 % loss goodput ≥ 80 % of 0 % loss goodput', ratio5 !== undefined ? `${f1(l5?.goodputMBps)} / ${f1(base?.goodputMBps)} MB/s = ${pct(ratio5)}` : `failed: ${l5?.error ?? base?.error ?? ''}`, ratio5 === undefined ? false : ratio5 >= 0.8)
  for (const { loss, res } of runs.filter((x) => x.loss > 0)) {
    const ov = res.ok ? overhead(res) : undefined
    target(r, `lossy: retransmission overhead < 1.15× at ${loss} % loss`, ov !== undefined ? `${ov.value.toFixed(3)}× (${ov.source})` : `failed: ${res.error ?? ''}`, ov === undefined ? false : ov.value < 1.15)
  }
  if (runs.some((x) => !x.res.ok)) r.status = 'failed'
  return r
}

async function core (): Promise<ScenarioReport> {
  const r = newReport('core')
  const size = SIZES.core
  const runs = 5
  console.log(`\n== core: ${size / MB} MB from two owners, ${runs} runs clean and ${runs} with the downloader's inbound path at 5 % loss, 2 % reordering, 1 % duplication`)
  const profiles = [
    { label: 'clean', args: (_i: number): string[] => [] },
    { label: '5 % loss + reorder + dup', args: (i: number): string[] => ['--impair', `loss=5,reorder=2,dup=1,seed=${i + 1}`] }
  ]
  const rows: string[][] = []
  for (const profile of profiles) {
    if (profile.label !== 'clean' && flagSupport.get('--impair')?.ok !== true) {
      rows.push([profile.label, 'skipped: --impair not usable', '', '', ''])
      continue
    }
    const results: SwarmResult[] = []
    for (let i = 0; i < runs; i++) {
      const res = await runSwarmOnce({ label: `core-${profile.label.split(' ')[0] as string}-${i + 1}`, size, owners: 2, downloaderArgs: profile.args(i), timeoutMs: swarmTimeout(size, 1) })
      console.log(`  ${profile.label} #${i + 1}: ${res.ok ? `${f2(res.seconds)} s, ${f1(res.goodputMBps)} MB/s, byte-identical` : `FAILED: ${res.error ?? ''}`}`)
      results.push(res)
    }
    const ok = results.filter((x) => x.ok && x.verified)
    const secs = ok.map((x) => x.seconds as number)
    const retx = ok.map((x) => x.owners.reduce((s, o) => s + (o.retransmits ?? 0), 0))
    rows.push([profile.label, `${ok.length} of ${runs}`, secs.length > 0 ? f2(median(secs)) : '-', secs.map(f2).join(' '), retx.length > 0 ? String(median(retx)) : '-'])
    target(r, `core (${profile.label}): ${size / MB} MB from 2 owners byte-identical in every run`, `${ok.length} of ${runs}, median ${secs.length > 0 ? f2(median(secs)) : '-'} s`, ok.length === runs)
    r.data[profile.label] = results.map((x) => ({ ok: x.ok, verified: x.verified, seconds: x.seconds, error: x.error }))
  }
  addTable(r, `core (${size / MB} MB, 2 owners; identical = the 'download complete' sha256 equals the source's and the downloader exited 0)`,
    ['profile', 'byte-identical', 'median s', 'each run s', 'median retransmits'], rows)
  if (r.targets.some((t) => t.met !== 'yes')) r.status = 'failed'
  return r
}

async function memory (): Promise<ScenarioReport> {
  const r = newReport('memory')
  const size = SIZES.memory
  const limitMB = 150
  console.log(`\n== memory: one owner → one downloader, ${size / MB} MB; the downloader's peak RSS (VmHWM, sampled every 250 ms)`)
  const u = await runSwarmOnce({ label: 'memory', size, owners: 1, timeoutMs: swarmTimeout(size, 5) })
  r.data.udptorrent = u
  const peak = u.cpu?.procs.downloader?.peakRssMB
  addTable(r, `memory (${size / MB} MB download)`, ['run', 'MB/s', 'seconds', 'downloader peak RSS MB', 'owner peak RSS MB'],
    [[u.ok ? 'udptorrent' : `FAILED: ${u.error ?? ''}`, f1(u.goodputMBps), f2(u.seconds), f1(peak), f1(u.cpu?.procs.owner1?.peakRssMB)]])
  target(r, `memory: the downloader's peak RSS < ${limitMB} MB during a ${size / MB} MB download`, u.ok ? `${f1(peak)} MB` : `failed: ${u.error ?? ''}`, u.ok && peak !== undefined ? peak < limitMB : false)
  if (!u.ok) r.status = 'failed'
  return r
}

// ---- netlab -------------------------------------------------------------------------------------

let netlabUp = false

function netlabDown (): void {
  if (!netlabUp) return
  const d = sh('bash', [NETLAB, 'down'], 30_000)
  console.log(`  netlab down: ${d.out.split('\n').pop() ?? ''}`)
  netlabUp = false
}

function netlabProblem (): string | undefined {
  if (process.platform !== 'linux') return 'not Linux'
  if (process.getuid?.() !== 0) return 'needs root'
  if (!existsSync(NETLAB)) return `${NETLAB} not found`
  const list = sh('ip', ['netns', 'list'], 10_000)
  if (list.code !== 0) return `ip netns does not work: ${list.out}`
  if (/\blab_[ab]\b/.test(list.out)) return 'namespaces lab_a/lab_b already exist (another netlab run in progress?); not touching them'
  if (sh('gcc', ['--version'], 10_000).code !== 0) return 'gcc missing (netlab.sh compiles linkemu)'
  return undefined
}

interface TcpResult { cc: string, ok: boolean, MBps?: number, bytes?: number, seconds?: number, capped?: boolean, error?: string, reps?: number[] }

async function tcpDownload (port: number, cc: string, size: number): Promise<TcpResult> {
  const url = `http://10.200.2.1:${port}/file`
  const haveCurl = sh('curl', ['--version'], 5_000).code === 0
  const cmd = haveCurl
    ? ['ip', 'netns', 'exec', 'lab_b', 'curl', '-s', '-o', '/dev/null', '--max-time', String(TCP_MAX_SECONDS), '-w', '%{size_download} %{time_total} %{time_starttransfer}\\n', url]
    : ['ip', 'netns', 'exec', 'lab_b', process.execPath, HTTP_GET, url, '--max-time', String(TCP_MAX_SECONDS)]
  const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
  const p = new Proc(`tcp-${cc}`, child)
  let code: number | null
  try {
    code = await p.waitExit((TCP_MAX_SECONDS + 20) * 1000)
  } catch (err) {
    p.kill('SIGKILL')
    return { cc, ok: false, error: errMsg(err) }
  }
  let bytes: number, seconds: number, capped: boolean
  if (haveCurl) {
    const m = /^(\d+)\s+([\d.]+)/.exec(p.lines.join(' ').trim())
    if (m === null) return { cc, ok: false, error: `curl exited ${String(code)}: ${p.lines.join(' ')}` }
    bytes = Number(m[1]); seconds = Number(m[2]); capped = code === 28
  } else {
    const j = JSON.parse(p.lines.find((l) => l.startsWith('{')) ?? 'null') as { bytes: number, seconds: number, timedOut: boolean } | null
    if (j === null) return { cc, ok: false, error: 'http-get printed nothing' }
    bytes = j.bytes; seconds = j.seconds; capped = j.timedOut
  }
  const res: TcpResult = { cc, ok: bytes > 0 && seconds > 0, bytes, seconds, capped, MBps: bytes / seconds / MB }
  if (!capped && bytes !== size) { res.ok = false; res.error = `got ${bytes} of ${size} bytes (exit ${String(code)})` }
  console.log(`  TCP ${cc}: ${res.ok ? `${f2(res.MBps)} MB/s (${(bytes / MB).toFixed(1)} MB in ${seconds.toFixed(1)} s${capped ? `, capped at ${TCP_MAX_SECONDS} s` : ''})` : `FAILED: ${res.error ?? ''}`}`)
  return res
}

/** linkemu's counters for one direction of the link, as it prints them when it stops. */
interface LinkemuCounts {
  /** Datagrams that reached linkemu. */
  rx: number
  /** Dropped by the emulated random loss. */
  lost: number
  /** Dropped because its queue (the packets inside the delay line) was full: bursts, not the loss profile. */
  qdrop: number
}

/** (Re)starts linkemu with a profile; the linkemu before it, if any, has stopped and logged its counters. */
function setNetlabProfile (prof: string): { line: string, pid: number | undefined } {
  const set = sh('bash', [NETLAB, 'set', prof], 60_000)
  if (set.code !== 0) throw new Error(`netlab.sh set ${prof} failed: ${set.out}`)
  return { line: set.out.split('\n').pop() ?? '', pid: linkemuPid() }
}

function linkemuPid (): number | undefined {
  try {
    return Number(readFileSync(path.join(NETLAB_RUN_DIR, 'linkemu.pid'), 'utf8').trim())
  } catch {
    return undefined
  }
}

function linkemuLog (): string {
  try {
    return readFileSync(path.join(NETLAB_RUN_DIR, 'linkemu.log'), 'utf8')
  } catch {
    return ''
  }
}

/**
 * The owner → downloader (lab_a → lab_b) counters that linkemu logged after `from` characters of
 * its log: undefined when the linkemu that stopped wrote none (killed), not an older run's.
 */
function linkemuCountsSince (from: number): LinkemuCounts | undefined {
  const log = linkemuLog().slice(from)
  const m = [...log.matchAll(/^linkemu a->b: rx (\d+) fwd \d+ \([^)]*\) lost (\d+) qdrop (\d+)/gm)].pop()
  return m === undefined ? undefined : { rx: Number(m[1]), lost: Number(m[2]), qdrop: Number(m[3]) }
}

async function netlab (): Promise<ScenarioReport> {
  const r = newReport('netlab')
  const size = SIZES.netlab
  console.log(`\n== netlab: udptorrent (tracker + owner in lab_a, downloader in lab_b) vs HTTP/TCP across linkemu, ${size / MB} MB`)
  const problem = netlabProblem()
  const profiles = ['d10', 'd10l1', 'd10l5']
  const skipTargets = (why: string): void => {
    for (const [p, t] of [['d10l1', '1.0'], ['d10l5', '1.5']]) target(r, `netlab ${p as string}: udptorrent ≥ ${t as string}× TCP`, `skipped: ${why}`, undefined)
  }
  if (problem !== undefined) {
    r.status = 'skipped'
    r.reason = problem
    console.log(`  skipped: ${problem}`)
    skipTargets(problem)
    return r
  }
  const file = await randomFile(size)
  const serverProcs: Proc[] = []
  try {
    const up = sh('bash', [NETLAB, 'up'], 120_000)
    netlabUp = up.code === 0 || /lab_a/.test(sh('ip', ['netns', 'list']).out)
    if (up.code !== 0) throw new Error(`netlab.sh up failed: ${up.out}`)
    console.log(`  ${up.out.split('\n').pop() ?? ''}`)
    const ccAvail = readFileSync('/proc/sys/net/ipv4/tcp_available_congestion_control', 'utf8').trim().split(/\s+/)
    const nsDefault = sh('ip', ['netns', 'exec', 'lab_a', 'cat', '/proc/sys/net/ipv4/tcp_congestion_control']).out
    // One HTTP server per congestion control: a namespace's default may only be one of
    // tcp_allowed_congestion_control (a host-wide setting we leave alone), but root may set any
    // available algorithm per socket, which the python server does on its listening socket.
    const servers = new Map<string, number>()
    const py = !NO_TCP && existsSync(HTTP_SERVE_PY) && sh('python3', ['-c', 'import socket; socket.TCP_CONGESTION'], 10_000).code === 0
    if (py) {
      for (const cc of ['cubic', 'bbr'].filter((c) => ccAvail.includes(c))) {
        const srv = new Proc(`http-${cc}`, spawn('ip', ['netns', 'exec', 'lab_a', 'python3', HTTP_SERVE_PY, '--file', file.path, '--host', '10.200.2.1', '--port', '0', '--cc', cc], { stdio: ['ignore', 'pipe', 'pipe'] }))
        serverProcs.push(srv)
        const m = await srv.waitForLine(/^LISTENING (\d+) (\S+)/, 15_000)
        if (m[2] !== cc) throw new Error(`http server asked for ${cc} got ${m[2] as string}`)
        servers.set(cc, Number(m[1]))
      }
    } else if (!NO_TCP) {
      const srv = new Proc('http-serve', spawn('ip', ['netns', 'exec', 'lab_a', process.execPath, HTTP_SERVE, '--file', file.path, '--host', '10.200.2.1', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] }))
      serverProcs.push(srv)
      servers.set(nsDefault, Number((await srv.waitForLine(/^LISTENING (\d+)/, 15_000))[1]))
    }
    const ccs = [...servers.keys()]
    if (NO_TCP) note(r, 'TCP: not measured (--no-tcp)')
    else note(r, `TCP: namespace default congestion control ${nsDefault}; measured ${ccs.join(', ')}${py ? ' (python server, TCP_CONGESTION per socket; the host is untouched)' : ' (node server, namespace default only: python3 missing)'}`)

    const rows: string[][] = []
    const perProfile: Record<string, unknown> = {}
    for (const prof of profiles) {
      console.log(`  -- ${prof}: ${setNetlabProfile(prof).line}`)
      // With --reps, udptorrent and each TCP take turns, and each side's median is compared: the
      // machine's load drifts within a run, and BBR's own rate swung 24-52 MB/s between benches.
      const uRuns: SwarmResult[] = []
      const tcpRuns = new Map<string, TcpResult[]>([...servers.keys()].map((cc) => [cc, []]))
      for (let i = 0; i < REPS; i++) {
        // A linkemu of its own per udptorrent run: it writes its counters when it stops, and
        // stopping it is the only way to read them, so they then count this run alone. The one
        // restarted after the last run is fresh unless TCP has used it since.
        const emuPid = i > 0 && servers.size > 0 ? setNetlabProfile(prof).pid : linkemuPid()
        const spec: SwarmSpec = { label: `netlab-${prof}`, size, owners: 1, netlab: true, timeoutMs: Math.round(180_000 * TIMEOUT_SCALE), watch: emuPid !== undefined ? { linkemu: emuPid } : {} }
        const run = await runSwarmRep(spec, i)
        const logAt = linkemuLog().length
        setNetlabProfile(prof) // TCP gets a fresh linkemu too
        run.link = linkemuCountsSince(logAt)
        if (run.link !== undefined) console.log(`    link a→b: ${run.link.rx} datagrams in, ${run.link.qdrop} dropped by the full queue, ${run.link.lost} by random loss`)
        uRuns.push(run)
        if (!run.ok) break
        for (const [cc, port] of servers) tcpRuns.get(cc)?.push(await tcpDownload(port, cc, size))
      }
      const u = medianRun(uRuns, (run) => run.goodputMBps)
      const tcp = [...tcpRuns.values()].filter((runs) => runs.length > 0).map((runs) => medianRun(runs, (t) => t.MBps))
      perProfile[prof] = { udptorrent: u, tcp }
      const o = u.owners[0]
      const tcpCell = (cc: string): string => {
        const t = tcp.find((x) => x.cc === cc)
        return t === undefined ? '-' : t.ok ? `${f2(t.MBps)}${t.capped === true ? ` (${TCP_MAX_SECONDS} s cap)` : ''}${repsCell(t.reps)}` : `FAILED: ${t.error ?? ''}`
      }
      const ratio = (cc: string): number | undefined => {
        const t = tcp.find((x) => x.cc === cc)
        return u.ok && t?.ok === true ? (u.goodputMBps as number) / (t.MBps as number) : undefined
      }
      const rcell = (x: number | undefined): string => x === undefined ? '-' : `${x.toFixed(2)}×`
      rows.push([prof, u.ok ? `${f2(u.goodputMBps)}${repsCell(u.reps)}` : `FAILED: ${u.error ?? ''}`, tcpCell('cubic'), rcell(ratio('cubic')), tcpCell('bbr'), rcell(ratio('bbr')),
        String(o?.datagramBytes ?? '-'), f1(o?.srttMs), String(o?.retransmits ?? '-'), String(o?.cwnd ?? '-'), u.ok ? `${overhead(u).value.toFixed(3)}×` : '-',
        u.link === undefined ? '-' : `${u.link.qdrop} / ${u.link.lost}`,
        cpuCell(u.cpu?.procs.downloader), cpuCell(u.cpu?.procs.owner1), cpuCell(u.cpu?.procs.linkemu), f1(u.cpu?.machineBusyPct), dropsCell(u.udp)])
      const want = prof === 'd10l1' ? 1.0 : prof === 'd10l5' ? 1.5 : undefined
      if (want !== undefined && NO_TCP) target(r, `netlab ${prof}: udptorrent ≥ ${want.toFixed(1)}× TCP`, 'skipped: --no-tcp', undefined)
      if (want !== undefined) {
        for (const cc of ccs) {
          const x = ratio(cc)
          target(r, `netlab ${prof}: udptorrent ≥ ${want.toFixed(1)}× TCP ${cc.toUpperCase()}`,
            x !== undefined ? `${f2(u.goodputMBps)} / ${tcpCell(cc)} MB/s = ${x.toFixed(2)}×` : `failed: ${u.error ?? tcp.find((t) => t.cc === cc)?.error ?? ''}`,
            x === undefined ? false : x >= want)
        }
      }
      if (!u.ok) r.status = 'failed'
    }
    r.data.profiles = perProfile
    addTable(r, `netlab (${size / MB} MB; linkemu, both directions; TCP = curl from lab_b, --max-time ${TCP_MAX_SECONDS}, rate over what arrived)`,
      ['profile', 'udptorrent MB/s', 'TCP CUBIC MB/s', 'ratio', 'TCP BBR MB/s', 'ratio', 'dgram B', 'srtt ms', 'retx', 'cwnd', 'overhead', 'link drops a→b queue / random', 'dl CPU %', 'owner CPU %', 'linkemu CPU %', 'machine busy %', 'UDP rcvbuf drops (lab_b)'], rows)
  } catch (err) {
    r.status = 'failed'
    r.reason = errMsg(err)
    console.log(`  FAILED: ${r.reason}`)
    if (r.targets.length === 0) skipTargets(`failed: ${r.reason}`)
  } finally {
    for (const p of serverProcs) await stopGently(p, 3_000)
    netlabDown()
  }
  return r
}

// ---- main ---------------------------------------------------------------------------------------

function cleanupSync (): void {
  killAll()
  try { netlabDown() } catch {}
  if (WORK !== '' && !KEEP) {
    try { rmSync(WORK, { recursive: true, force: true }) } catch {}
  }
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: cleaning up`)
    cleanupSync()
    process.exit(130)
  })
}

async function main (): Promise<number> {
  if (!existsSync(CLI)) {
    console.error(`${CLI} is missing: run npx tsc -p tsconfig.json (npm run build) first`)
    return 2
  }
  if (!existsSync(BLAST)) {
    console.error(`${BLAST} is missing: build the bench tools (npm run build)`)
    return 2
  }
  WORK = await mkdtemp(path.join(os.tmpdir(), 'udptorrent-bench-'))
  const machine = machineState()
  const started = Date.now()
  console.log(`udptorrent bench ${QUICK ? '(--quick) ' : ''}— scenarios: ${RUN.join(', ')}${REPS > 1 ? `, median of ${REPS}` : ''}`)
  printTable('machine', ['time', 'node', 'nproc', 'loadavg 1/5/15', 'free/total MB', 'rmem_max', 'kernel', 'commit'],
    [[String(machine.time), String(machine.node), String(machine.nproc), (machine.loadavg as number[]).join(' '), `${String(machine.memFreeMB)}/${String(machine.memTotalMB)}`,
      String(machine.rmemMax ?? '-'), String(machine.kernel), String(machine.commit)]])
  console.log('busiest processes now (pid %cpu elapsed args):')
  for (const l of machine.topProcesses as string[]) console.log(`  ${l}`)

  for (const [flag, value] of [['--impair', 'delay=1'], ['--upload-limit', '10MB/s'], ['--download-limit', '10MB/s'], ['--max-datagram-bytes', '65000']] as const) await probeFlag(flag, value)
  console.log(`node flags in this build: ${[...flagSupport].map(([f, s]) => `${f} ${s.ok ? 'yes' : `no (${s.detail})`}`).join('; ')}`)

  const reports: ScenarioReport[] = []
  const table = { loopback, owners4, lossy, core, memory, netlab }
  try {
    for (const name of RUN) {
      const t0 = Date.now()
      let rep: ScenarioReport
      try {
        rep = await table[name]()
      } catch (err) {
        rep = newReport(name)
        rep.status = 'failed'
        rep.reason = errMsg(err)
        console.log(`  ${name} FAILED: ${rep.reason}`)
        target(rep, `${name}`, `failed: ${rep.reason}`, false)
      } finally {
        killAll()
      }
      rep.data.elapsedSeconds = (Date.now() - t0) / 1000
      reports.push(rep)
    }
  } finally {
    killAll()
    netlabDown()
  }

  const summary = reports.flatMap((r) => r.targets)
  printTable('summary', ['target', 'measured', 'met'], summary.map((t) => [t.target, t.measured, t.met]))
  const endLoad = os.loadavg().map((x) => x.toFixed(2)).join(' ')
  console.log(`\nloadavg at the end: ${endLoad}; elapsed ${((Date.now() - started) / 1000).toFixed(0)} s`)

  const reportsDir = path.join(REPO_ROOT, 'reports')
  await mkdir(reportsDir, { recursive: true })
  const out = path.join(reportsDir, `bench-${new Date(started).toISOString().replace(/[:.]/g, '-')}.json`)
  await writeFile(out, JSON.stringify({
    args: process.argv.slice(2),
    quick: QUICK,
    reps: REPS,
    sizes: SIZES,
    machine,
    loadavgEnd: os.loadavg(),
    flags: Object.fromEntries(flagSupport),
    scenarios: reports,
    summary
  }, null, 2) + '\n')
  console.log(`results: ${path.relative(process.cwd(), out) || out}`)
  return reports.some((r) => r.status === 'failed') ? 1 : 0
}

let code = 1
try {
  code = await main()
} catch (err) {
  console.error(err)
} finally {
  cleanupSync()
}
process.exit(code)
