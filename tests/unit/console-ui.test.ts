import { PassThrough, Writable } from 'node:stream'
import readline from 'node:readline'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { ConsoleUi, describeProgress, ETA_SMOOTHING_SECONDS, ProgressMeter } from '../../src/node/console-ui.js'
import type { DownloadProgress } from '../../src/node/download.js'
import { formatTable } from '../../src/node/format.js'

const MB = 1_000_000

function progress (name: string, bytesDone: number, size = 100 * MB, phase: DownloadProgress['phase'] = 'pieces'): DownloadProgress {
  const pieceSize = 262_144
  return {
    name,
    phase,
    size,
    pieces: Math.ceil(size / pieceSize),
    piecesDone: Math.floor(bytesDone / pieceSize),
    bytesDone,
    bytesThisRun: bytesDone,
    startedAt: 0,
    owners: [1, 2].map((nodeId) => ({
      nodeId,
      address: `127.0.0.1:${4000 + nodeId}`,
      state: nodeId === 1 ? 'active' : 'dead',
      bytes: bytesDone / 2,
      goodputBytesPerSecond: 0,
      pieces: 0,
      failures: 0,
      link: { srttMs: 1, rttVarMs: 0, minRttMs: 1, rtoMs: 20, cwnd: 16, inflight: 0, datagramBytes: 1200, probesSent: 0, requestsSent: 0, datagramsReceived: 0, bytesReceived: 0, retransmits: 0, timeouts: 0, duplicates: 0, unexpected: 0, cancelsSent: 0 }
    }))
  }
}

describe('ProgressMeter', () => {
  it('starts with the plain average rate, then smooths: a 1 s burst moves the ETA little, a lasting change wins', () => {
    let now = 0
    const meter = new ProgressMeter(ETA_SMOOTHING_SECONDS, () => now)
    let bytes = 0
    const step = (seconds: number, rate: number): ReturnType<ProgressMeter['view']> => {
      let v = meter.view(progress('f', bytes, 1000 * MB))
      for (let t = 0; t < seconds * 5; t++) {
        now += 200
        bytes += rate / 5
        v = meter.view(progress('f', bytes, 1000 * MB))
      }
      return v
    }
    // Bias-corrected: from the first sample on, the rate is what was measured, not dragged to 0.
    expect(step(1, 2 * MB).bytesPerSecond).toBeCloseTo(2 * MB, -3)
    const steady = step(20, 1 * MB)
    expect(steady.bytesPerSecond).toBeGreaterThan(0.9 * MB)
    expect(steady.bytesPerSecond).toBeLessThan(1.2 * MB)
    const etaBefore = steady.etaSeconds as number
    // One second at 10x: an instantaneous rate would cut the ETA tenfold.
    const burst = step(1, 10 * MB)
    expect(burst.bytesPerSecond).toBeLessThan(2.2 * MB)
    expect(burst.etaSeconds).toBeGreaterThan(etaBefore * 0.45)
    // A stall of one second barely moves it either.
    const stall = step(1, 0)
    expect(stall.bytesPerSecond).toBeGreaterThan(0.8 * MB)
    // Sustained for 5 time constants, the new rate is what is shown.
    const later = step(5 * ETA_SMOOTHING_SECONDS, 4 * MB)
    expect(later.bytesPerSecond).toBeGreaterThan(3.9 * MB)
    expect(later.bytesPerSecond).toBeLessThan(4.1 * MB)
  })

  it('has no rate or ETA before pieces flow, and a 0 ETA when done', () => {
    const meter = new ProgressMeter()
    const v = meter.view(progress('f', 0, 0, 'locating'))
    expect(v.bytesPerSecond).toBeUndefined()
    expect(v.etaSeconds).toBeUndefined()
    expect(describeProgress(v)).toBe('f: looking for owners…')
    expect(meter.view(progress('f', 10, 10, 'done')).etaSeconds).toBe(0)
  })

  it('keeps the plain line format the tests and scripts parse', () => {
    const meter = new ProgressMeter()
    expect(describeProgress(meter.view(progress('data.bin', 50 * MB)))).toMatch(/^data\.bin: 50\.0% 50\.0 MB\/100\.0 MB [\d.]+ [KMG]?B\/s ETA \S+ owners 1 pieces 190\/382$/)
  })
})

describe('formatTable', () => {
  it('aligns columns, two spaces apart, with no trailing spaces', () => {
    expect(formatTable(['A', 'LONG HEADER', 'C'], [['xxxx', 'y', ''], ['z', 'w', 'v']])).toEqual([
      '  A     LONG HEADER  C',
      '  xxxx  y',
      '  z     w            v'
    ])
  })
})

/**
 * Just enough of a VT100 to replay what the UI and readline write: printable text with autowrap,
 * CR, LF (as a tty with ONLCR: to column 0), cursor up/down/left/right/column, erase line and
 * erase below. The screen grows downwards instead of scrolling.
 */
class VirtualTerminal extends Writable {
  readonly isTTY = true
  columns = 120
  rows = 40
  private lines: string[][] = [[]]
  private row = 0
  private col = 0
  private autowrap = true
  raw = ''

  override _write (chunk: Buffer | string, _enc: BufferEncoding, cb: () => void): void {
    const s = chunk.toString()
    this.raw += s
    this.feed(s)
    cb()
  }

  getColorDepth (): number { return 1 }
  hasColors (): boolean { return false }

  private line (r: number): string[] {
    while (this.lines.length <= r) this.lines.push([])
    return this.lines[r] as string[]
  }

  private feed (s: string): void {
    for (let i = 0; i < s.length; i++) {
      const ch = s[i] as string
      if (ch === '\x1b') {
        const m = /^\x1b\[([?\d;]*)([A-Za-z])/.exec(s.slice(i))
        if (m === null) throw new Error(`unexpected escape ${JSON.stringify(s.slice(i, i + 8))}`)
        i += m[0].length - 1
        this.csi(m[1] as string, m[2] as string)
      } else if (ch === '\r') {
        this.col = 0
      } else if (ch === '\n') {
        this.row++
        this.col = 0
        this.line(this.row)
      } else {
        if (this.col >= this.columns) {
          if (this.autowrap) {
            this.row++
            this.col = 0
          } else {
            this.col = this.columns - 1 // DECAWM off: the last column is overwritten
          }
        }
        const l = this.line(this.row)
        while (l.length < this.col) l.push(' ')
        l[this.col++] = ch
      }
    }
  }

  private csi (params: string, cmd: string): void {
    if (params === '?7') {
      this.autowrap = cmd === 'h'
      return
    }
    if (params.startsWith('?')) return // cursor visibility: not modelled
    const n = params === '' ? undefined : Number(params)
    const l = this.line(this.row)
    switch (cmd) {
      case 'A': this.row = Math.max(0, this.row - (n ?? 1)); break
      case 'B': this.row += n ?? 1; this.line(this.row); break
      case 'C': this.col = Math.min(this.columns - 1, this.col + (n ?? 1)); break
      case 'D': this.col = Math.max(0, this.col - (n ?? 1)); break
      case 'G': this.col = (n ?? 1) - 1; break
      case 'K':
        if ((n ?? 0) === 0) l.splice(this.col)
        else if (n === 1) for (let c = 0; c <= this.col && c < l.length; c++) l[c] = ' '
        else l.splice(0)
        break
      case 'J':
        if ((n ?? 0) !== 0) throw new Error(`ESC[${params}J`)
        l.splice(this.col)
        this.lines.splice(this.row + 1)
        break
      default:
        throw new Error(`unexpected ESC[${params}${cmd}`)
    }
  }

  /** The screen, trailing spaces and trailing empty lines dropped. */
  get screen (): string[] {
    const out = this.lines.map((l) => l.join('').trimEnd())
    while (out.length > 0 && out.at(-1) === '') out.pop()
    return out
  }

  get cursor (): { row: number, col: number } { return { row: this.row, col: this.col } }
}

describe('ConsoleUi on a TTY', () => {
  const cleanups: Array<() => void> = []
  afterEach(() => { for (const f of cleanups.splice(0)) f() })

  function setup (): { term: VirtualTerminal, ui: ConsoleUi, input: PassThrough, rl: readline.Interface, typed: string[] } {
    const term = new VirtualTerminal()
    const input = new PassThrough()
    const rl = readline.createInterface({ input, output: term as unknown as NodeJS.WriteStream, terminal: true })
    rl.setPrompt('node3> ')
    // A long interval: the test calls render() itself.
    const ui = new ConsoleUi(term as unknown as NodeJS.WriteStream, 3_600_000, term)
    const typed: string[] = []
    rl.on('line', (line) => {
      ui.inputCommitted(line)
      typed.push(line)
      ui.say(`you typed ${line}`)
      ui.prompt()
    })
    cleanups.push(() => { ui.stop(); rl.close() })
    ui.say('node 3 listening on 127.0.0.1:5000')
    ui.attachPrompt(rl)
    ui.prompt()
    return { term, ui, input, rl, typed }
  }

  it('shows the prompt under messages when nothing downloads', () => {
    const { term, ui } = setup()
    expect(term.screen).toEqual(['node 3 listening on 127.0.0.1:5000', 'node3>'])
    ui.say('sharing a.bin')
    expect(term.screen).toEqual(['node 3 listening on 127.0.0.1:5000', 'sharing a.bin', 'node3>'])
    expect(term.cursor).toEqual({ row: 2, col: 7 })
  })

  it('keeps bars above the prompt, output above the bars, and the typed input intact', async () => {
    const { term, ui, input, typed } = setup()
    ui.render([progress('big.bin', 0, 0, 'locating')])
    expect(term.screen).toEqual([
      'node 3 listening on 127.0.0.1:5000',
      expect.stringMatching(/^big\.bin ░{24} looking for owners…$/),
      'node3>'
    ])
    ui.render([progress('big.bin', 25 * MB)])
    // Bytes, percent, rate, ETA (none yet: one sample), owners in use, verified pieces.
    expect(term.screen).toEqual([
      'node 3 listening on 127.0.0.1:5000',
      'big.bin ██████░░░░░░░░░░░░░░░░░░  25.0% 25.0 MB/100.0 MB - ETA -- owners 1/2 pieces 95/382',
      'node3>'
    ])
    // Bars are cut one column short of the width.
    term.columns = 40
    ui.render([progress('big.bin', 26 * MB)])
    expect(term.screen[1]).toHaveLength(39)
    term.columns = 120

    // Typing while the bars are redrawn: the partial input stays, the cursor after it.
    input.write('sta')
    await vi.waitFor(() => expect(term.screen.at(-1)).toBe('node3> sta'))
    ui.render([progress('big.bin', 30 * MB)])
    ui.say('a message arrives')
    expect(term.screen).toEqual([
      'node 3 listening on 127.0.0.1:5000',
      'a message arrives',
      expect.stringMatching(/^big\.bin █{7}░{17}  30\.0%/),
      'node3> sta'
    ])
    expect(term.cursor).toEqual({ row: 3, col: 10 })

    // Enter: the command and its answer scroll above the bars; a fresh prompt below them.
    input.write('tus\r')
    await vi.waitFor(() => expect(typed).toEqual(['status']))
    expect(term.screen).toEqual([
      'node 3 listening on 127.0.0.1:5000',
      'a message arrives',
      'node3> status',
      'you typed status',
      expect.stringMatching(/^big\.bin /),
      'node3>'
    ])

    // A second download: two bars, names aligned. Then the first ends: one bar, nothing stale.
    ui.render([progress('big.bin', 40 * MB), progress('b.iso', 0, 0, 'manifest')])
    expect(term.screen.slice(4)).toEqual([
      expect.stringMatching(/^big\.bin █{10}░{14}  40\.0%/),
      expect.stringMatching(/^b\.iso {3}░{24} fetching manifest…$/),
      'node3>'
    ])
    ui.say('download complete: big.bin')
    ui.render([progress('b.iso', 5 * MB, 10 * MB)])
    expect(term.screen.slice(4)).toEqual([
      'download complete: big.bin',
      expect.stringMatching(/^b\.iso █{12}░{12}  50\.0%/),
      'node3>'
    ])

    // A message longer than the terminal is wide wraps whole above the bars.
    const long = `download complete: x.bin sha256 ${'0123456789abcdef'.repeat(8)}`
    ui.say(long)
    expect(term.screen.slice(5, 8)).toEqual([long.slice(0, 120), long.slice(120), expect.stringMatching(/^b\.iso /)])
    expect(term.screen.slice(4)).toHaveLength(5)
    ui.render([progress('b.iso', 6 * MB, 10 * MB)])
    expect(term.screen.slice(4)).toEqual(['download complete: big.bin', long.slice(0, 120), long.slice(120), expect.stringMatching(/^b\.iso █{14}░{10}  60\.0%/), 'node3>'])

    // Log records (stderr) go above the bars too.
    ui.log('[12:00:00.000] WARN: owner dropped\n')
    expect(term.screen.slice(7)).toEqual(['[12:00:00.000] WARN: owner dropped', expect.stringMatching(/^b\.iso /), 'node3>'])

    // All done: the bars go, the prompt stays.
    ui.render([])
    expect(term.screen.slice(7)).toEqual(['[12:00:00.000] WARN: owner dropped', 'node3>'])
    ui.stop()
    expect(term.screen.at(-1)).toBe('[12:00:00.000] WARN: owner dropped')
  })

  it('without a TTY writes plain progress lines and no escape codes', () => {
    const chunks: string[] = []
    const out = new Writable({ write (chunk: Buffer, _enc, cb) { chunks.push(chunk.toString()); cb() } })
    const ui = new ConsoleUi(out as unknown as NodeJS.WriteStream, 3_600_000, out)
    ui.say('hello')
    ui.render([progress('data.bin', 50 * MB)])
    ui.render([progress('x', 0, 0, 'locating')])
    ui.stop()
    expect(chunks.join('')).not.toContain('\x1b')
    const lines = chunks.join('').split('\n')
    expect(lines[0]).toBe('hello')
    expect(lines[1]).toMatch(/^progress data\.bin: 50\.0% 50\.0 MB\/100\.0 MB /)
    expect(lines[2]).toBe('progress x: looking for owners…')
  })
})
