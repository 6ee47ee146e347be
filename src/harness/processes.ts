import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { V8_MAX_SEMI_SPACE_MB } from '../../configs.js'

/**
 * Starts udptorrent processes (the built CLI, exactly as a user runs it) and watches their output.
 * Shared by the demo, the benchmarks, the simulator and the integration tests.
 */

/** dist/src/harness → dist/src/cli.js; also right when run from src/ by vitest, via the built file. */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const CLI = path.basename(ROOT) === 'dist' ? path.join(ROOT, 'src/cli.js') : path.join(ROOT, 'dist/src/cli.js')

const running = new Set<ChildProcess>()

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T> (what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await check()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

export class Proc {
  readonly lines: string[] = []
  readonly exited: Promise<number | null>
  exitCode: number | null | undefined
  private listeners: Array<() => void> = []

  constructor (readonly name: string, readonly child: ChildProcess) {
    running.add(child)
    let buf = ''
    const onData = (d: Buffer): void => {
      buf += d.toString()
      const parts = buf.split('\n')
      buf = parts.pop() as string
      for (const l of parts) this.lines.push(l)
      for (const f of this.listeners) f()
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => {
      running.delete(child)
      this.exitCode = code ?? (signal !== null ? -1 : null)
      for (const f of this.listeners) f()
      resolve(code)
    }))
  }

  /** Resolves with the first output line (past or future) matching `re`. */
  async waitForLine (re: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
    return await new Promise((resolve, reject) => {
      const check = (): boolean => {
        for (const l of this.lines) {
          const m = re.exec(l)
          if (m !== null) {
            done()
            resolve(m)
            return true
          }
        }
        if (this.exitCode !== undefined) {
          done()
          reject(new Error(`${this.name} exited (${this.exitCode}) before printing ${re}; output:\n${this.lines.join('\n')}`))
          return true
        }
        return false
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`${this.name}: no line matching ${re} within ${timeoutMs} ms; output:\n${this.lines.join('\n')}`))
      }, timeoutMs)
      const done = (): void => {
        clearTimeout(timer)
        this.listeners = this.listeners.filter((f) => f !== listener)
      }
      const listener = (): void => { check() }
      this.listeners.push(listener)
      check()
    })
  }

  write (line: string): void {
    this.child.stdin?.write(line + '\n')
  }

  kill (signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.kill(signal)
  }

  async waitExit (timeoutMs = 20_000): Promise<number | null> {
    return await Promise.race([
      this.exited,
      new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`${this.name} did not exit within ${timeoutMs} ms; output:\n${this.lines.join('\n')}`)), timeoutMs).unref())
    ])
  }
}

/** The node flags the bin's shebang gives; a direct `node cli.js` would miss them. */
export const NODE_ARGS = [`--max-semi-space-size=${V8_MAX_SEMI_SPACE_MB}`]

export function spawnCli (name: string, args: string[], stdin: 'pipe' | 'ignore' = 'ignore', nodeArgs: string[] = NODE_ARGS): Proc {
  const child = spawn(process.execPath, [...nodeArgs, CLI, ...args], { stdio: [stdin, 'pipe', 'pipe'], env: { ...process.env, UDPTORRENT_HOME: undefined } })
  return new Proc(name, child)
}

export interface TrackerProc extends Proc { port: number, address: string }

export async function startTracker (home: string, extra: string[] = [], port = 0): Promise<TrackerProc> {
  const p = spawnCli('tracker', ['tracker', '--home', home, '--host', '127.0.0.1', '--port', String(port), ...extra])
  const m = await p.waitForLine(/^tracker listening on ([\d.]+):(\d+)/)
  return Object.assign(p, { port: Number(m[2]), address: `${m[1] as string}:${m[2] as string}` })
}

export interface NodeProc extends Proc { port: number }

export async function startNode (home: string, id: number, tracker: string, extra: string[] = [], stdin: 'pipe' | 'ignore' = 'ignore'): Promise<NodeProc> {
  const p = spawnCli(`node${id}`, ['node', '--id', String(id), '--home', home, '--tracker', tracker, '--host', '127.0.0.1', ...extra], stdin)
  const m = await p.waitForLine(/^node \d+ listening on [\d.]+:(\d+)/)
  return Object.assign(p, { port: Number(m[1]) })
}

/** Kills every process this module started that is still running. */
export function killAll (): void {
  for (const child of running) child.kill('SIGKILL')
  running.clear()
}
