/**
 * Shared plumbing of the chaos suite: temporary homes, random files, log records, process memory,
 * bounded waits, and the cleanup list that the suite runs in `finally` and on SIGINT.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, open, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { LOGS_DIR, NODE_FILES_DIR } from '../../configs.js'

/** One row of the final table. */
export interface Row {
  scenario: string
  /** What was tried, with exact counts. */
  tried: string
  expected: string
  observed: string
  held: boolean
  /** A measurement for the record (e.g. of an attack not defended): shown, never a failure. */
  info?: boolean
}

export interface Budget {
  name: 'small' | 'full'
  /** Datagrams sent to each fuzz target (the tracker and a node each get this many). */
  fuzzPerTarget: number
  /** Fuzz send rate ceiling, datagrams per second (the sender paces itself to it). */
  fuzzRate: number
  /** Honest latency samples per phase of the flood scenario. */
  floodSamples: number
  /** Flood send rate ceiling, datagrams per second. */
  floodRate: number
}

export const BUDGETS: Record<Budget['name'], Budget> = {
  small: { name: 'small', fuzzPerTarget: 100_000, fuzzRate: 20_000, floodSamples: 200, floodRate: 15_000 },
  full: { name: 'full', fuzzPerTarget: 1_000_000, fuzzRate: 20_000, floodSamples: 200, floodRate: 20_000 }
}

// ---- cleanup ------------------------------------------------------------------------------------

type Cleanup = () => void | Promise<void>
const cleanups: Cleanup[] = []

/** Registers work for the end of the run (or of a scenario, via runCleanups); newest first. */
export function onCleanup (f: Cleanup): void {
  cleanups.push(f)
}

/** Runs and forgets every registered cleanup, newest first; errors are reported, never thrown. */
export async function runCleanups (): Promise<void> {
  while (cleanups.length > 0) {
    const f = cleanups.pop() as Cleanup
    try {
      await withTimeout(Promise.resolve(f()), 10_000, 'a cleanup step')
    } catch (err) {
      console.error(`cleanup: ${(err as Error).message}`)
    }
  }
}

// ---- time ---------------------------------------------------------------------------------------

export const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
export const tick = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

/** `p`, or a rejection naming `what` after `ms`. */
export async function withTimeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms) })
    ])
  } finally {
    if (timer !== undefined) clearTimeout(timer)
  }
}

export function median (xs: number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2
}

export function percentile (xs: number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number
}

// ---- files and homes ----------------------------------------------------------------------------

/** A fresh temporary home; removed at the end of the run unless CHAOS_KEEP is set. */
export async function makeHome (tag: string): Promise<string> {
  const home = await mkdtemp(path.join(os.tmpdir(), `udptorrent-chaos-${tag}-`))
  onCleanup(async () => {
    if (process.env.CHAOS_KEEP === undefined) await rm(home, { recursive: true, force: true })
  })
  return home
}

export const nodeDir = (home: string, id: number): string => path.join(home, NODE_FILES_DIR, `node${id}`)

/** Writes `size` random bytes to node `id`'s folder as `name`; returns the path. */
export async function makeRandomFile (home: string, id: number, name: string, size: number): Promise<string> {
  const dir = nodeDir(home, id)
  await mkdir(dir, { recursive: true })
  const file = path.join(dir, name)
  const fh = await open(file, 'w')
  try {
    for (let at = 0; at < size; at += 1 << 20) await fh.write(randomBytes(Math.min(1 << 20, size - at)))
  } finally {
    await fh.close()
  }
  return file
}

export async function sha256File (file: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer)
  return h.digest('hex')
}

export async function sha256OrMissing (file: string): Promise<string> {
  try {
    return await sha256File(file)
  } catch {
    return 'missing'
  }
}

export type LogRecord = Record<string, unknown> & { msg?: string, level?: number }

/** Every JSON record of logs/<name>.log (lines that do not parse are skipped). */
export async function readLog (home: string, name: string): Promise<LogRecord[]> {
  let text: string
  try {
    text = await readFile(path.join(home, LOGS_DIR, `${name}.log`), 'utf8')
  } catch {
    return []
  }
  const out: LogRecord[] = []
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    try {
      out.push(JSON.parse(line) as LogRecord)
    } catch {
      // a record cut short by a SIGKILL
    }
  }
  return out
}

// ---- processes ----------------------------------------------------------------------------------

/** VmRSS of a process in bytes, from /proc/<pid>/status; NaN once it is gone. */
export async function rssBytes (pid: number | undefined): Promise<number> {
  if (pid === undefined) return NaN
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
    return m === null ? NaN : Number(m[1]) * 1024
  } catch {
    return NaN
  }
}

export const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`
export const ms = (x: number): string => x < 10 ? `${x.toFixed(2)} ms` : `${x.toFixed(0)} ms`

/** Fixed-width table with wrapped cells, for the terminal and for logs. */
export function formatTable (headers: string[], rows: string[][], widths: number[]): string {
  const wrap = (text: string, width: number): string[] => {
    const out: string[] = []
    for (const para of text.split('\n')) {
      let line = ''
      for (const word of para.split(' ')) {
        if (line === '') line = word
        else if (line.length + 1 + word.length <= width) line += ' ' + word
        else { out.push(line); line = word }
        while (line.length > width) { out.push(line.slice(0, width)); line = line.slice(width) }
      }
      out.push(line)
    }
    return out
  }
  const sep = '+' + widths.map((w) => '-'.repeat(w + 2)).join('+') + '+'
  const render = (cells: string[]): string[] => {
    const wrapped = cells.map((c, i) => wrap(c, widths[i] as number))
    const height = Math.max(...wrapped.map((w) => w.length))
    const lines: string[] = []
    for (let r = 0; r < height; r++) {
      lines.push('| ' + wrapped.map((w, i) => (w[r] ?? '').padEnd(widths[i] as number)).join(' | ') + ' |')
    }
    return lines
  }
  return [sep, ...render(headers), sep.replace(/-/g, '='), ...rows.flatMap((r) => [...render(r), sep])].join('\n')
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat; NaN once it is gone. */
export async function cpuSeconds (pid: number | undefined): Promise<number> {
  if (pid === undefined) return NaN
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN
  }
}
