/**
 * Deterministic, seeded network impairment (loss, duplication, reordering, delay, jitter and a
 * rate-limited drop-tail bottleneck) applied to datagrams in user space. The test machines have no
 * netem, and netem would not be reproducible anyway: here the fate of every datagram follows from
 * the seed and the order of push() calls alone.
 */

import { Prng } from './prng.js'

export const DEFAULT_IMPAIRMENT_SEED = 1
/** Bottleneck FIFO size: about 870 datagrams of 1200 bytes, a deep but finite router buffer. */
export const DEFAULT_IMPAIRMENT_QUEUE_BYTES = 1024 * 1024
/** How long a datagram picked for reordering waits for a successor before it goes out anyway. */
export const DEFAULT_REORDER_HOLD_MS = 10
/**
 * Node clamps longer timers to 1 ms (with a warning), which would turn a huge delay into none,
 * so every duration is bounded by this.
 */
export const MAX_IMPAIRMENT_DELAY_MS = 2 ** 31 - 1

export interface ImpairmentInit {
  /** Default DEFAULT_IMPAIRMENT_SEED. */
  seed?: number
  /** 0..100, Bernoulli per datagram. */
  lossPercent?: number
  /** 0..100: chance a datagram is delivered twice. */
  duplicatePercent?: number
  /**
   * 0..100: chance a datagram is held back and released right after the next one that survives
   * loss, or after reorderHoldMs if none follows.
   */
  reorderPercent?: number
  /** Default DEFAULT_REORDER_HOLD_MS. */
  reorderHoldMs?: number
  /** Fixed one-way delay. */
  delayMs?: number
  /** Uniform extra delay in [0, jitterMs); it may reorder datagrams, as real jitter does. */
  jitterMs?: number
  /** Bottleneck: datagrams are serialised through a FIFO at this rate. 0 or undefined = unlimited. */
  rateBytesPerSecond?: number
  /** Drop-tail limit of the bottleneck FIFO, default DEFAULT_IMPAIRMENT_QUEUE_BYTES. Only matters with a rate. */
  queueBytes?: number
  /** The path's largest datagram: larger ones are dropped, as a link with that MTU would. Default unlimited. */
  maxDatagramBytes?: number
}

export interface ImpairmentStats {
  /** push() calls while open. */
  seen: number
  /** deliver() calls, duplicates included. */
  delivered: number
  /** Random loss. */
  dropped: number
  /** Extra copies made. */
  duplicated: number
  /** Held datagrams that were released after a later one (a hold that timed out is not counted). */
  reordered: number
  /** Copies refused because the bottleneck FIFO was full; not included in `dropped`. */
  queueDrops: number
}

/** A spec string for parseImpairment() that does not parse. */
export class ImpairmentSpecError extends Error {
  override readonly name = 'ImpairmentSpecError'
}

// ---- spec strings ------------------------------------------------------------------------------

type SpecKey = 'loss' | 'dup' | 'reorder' | 'hold' | 'delay' | 'jitter' | 'rate' | 'queue' | 'mtu' | 'seed'

const SPEC_KEYS: readonly SpecKey[] = ['loss', 'dup', 'reorder', 'hold', 'delay', 'jitter', 'rate', 'queue', 'mtu', 'seed']

/** Case-insensitive, so "mb" is megabytes: there is no millibyte to confuse it with. */
const BYTE_UNITS: ReadonlyMap<string, number> = new Map([
  ['', 1], ['b', 1],
  ['k', 1e3], ['kb', 1e3], ['m', 1e6], ['mb', 1e6], ['g', 1e9], ['gb', 1e9],
  ['ki', 1024], ['kib', 1024], ['mi', 1024 ** 2], ['mib', 1024 ** 2], ['gi', 1024 ** 3], ['gib', 1024 ** 3]
])

// Digits only: Number() would also accept "", "0x10", "1e3" and "Infinity", none of which a
// person writing a spec means.
const NUMBER_WITH_UNIT = /^(\d+(?:\.\d*)?|\.\d+)\s*([a-z%/]*)$/i

function isSpecKey (key: string): key is SpecKey {
  return (SPEC_KEYS as readonly string[]).includes(key)
}

function specError (item: string, why: string): ImpairmentSpecError {
  return new ImpairmentSpecError(`bad impairment "${item}": ${why}`)
}

function splitValue (item: string, value: string): { n: number, unit: string } {
  const m = NUMBER_WITH_UNIT.exec(value)
  if (m === null) throw specError(item, `"${value}" is not a non-negative number`)
  return { n: Number(m[1]), unit: (m[2] ?? '').toLowerCase() }
}

function parsePercent (item: string, value: string): number {
  const { n, unit } = splitValue(item, value)
  if (unit !== '' && unit !== '%') throw specError(item, `unknown unit "${unit}", expected a percentage like 5 or 5%`)
  if (n > 100) throw specError(item, `${n}% is more than 100%`)
  return n
}

function parseDuration (item: string, value: string): number {
  const { n, unit } = splitValue(item, value)
  let ms: number
  if (unit === '' || unit === 'ms') ms = n
  else if (unit === 's') ms = n * 1000
  else throw specError(item, `unknown unit "${unit}", expected ms or s`)
  if (ms > MAX_IMPAIRMENT_DELAY_MS) throw specError(item, `${ms} ms exceeds ${MAX_IMPAIRMENT_DELAY_MS} ms`)
  return ms
}

/** "10MB/s" → 10_000_000 bytes per second; the same units as the rate= key of a spec. */
export function parseByteRate (value: string): number {
  const rate = parseBytes('rate', value, true)
  if (rate <= 0) throw new ImpairmentSpecError(`rate must be positive, got "${value}"`)
  return rate
}

/** "8MB" → 8_000_000 bytes, "32KiB" → 32_768; the same units as the queue= key of a spec. */
export function parseByteSize (value: string): number {
  const bytes = parseBytes('size', value, false)
  if (bytes <= 0) throw new ImpairmentSpecError(`size must be positive, got "${value}"`)
  return bytes
}

function parseBytes (item: string, value: string, perSecond: boolean): number {
  const { n, unit } = splitValue(item, value)
  let base = unit
  if (perSecond) {
    // "10MB/s", "10MBps" and plain "10MB" all mean a rate here.
    if (base.endsWith('/s')) base = base.slice(0, -2)
    else if (base.endsWith('ps')) base = base.slice(0, -2)
  }
  const multiplier = BYTE_UNITS.get(base)
  if (multiplier === undefined) {
    const expected = perSecond ? 'B/s, KB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s or k/M/G' : 'B, KB, MB, GB, KiB, MiB, GiB or k/M/G'
    throw specError(item, `unknown unit "${unit}", expected ${expected}`)
  }
  const bytes = Math.floor(n * multiplier)
  if (!Number.isSafeInteger(bytes)) throw specError(item, `${value} is too large`)
  return bytes
}

function parseSeed (item: string, value: string): number {
  if (!/^\d+$/.test(value)) throw specError(item, `seed must be a non-negative integer, got "${value}"`)
  const seed = Number(value)
  if (seed > 0xffffffff) throw specError(item, `seed must fit in 32 bits (at most ${0xffffffff})`)
  return seed
}

/**
 * Parses "loss=5,dup=1,reorder=2,delay=10,jitter=2,rate=10MB/s,queue=256KB,seed=7" (any subset,
 * any order; also hold=<ms> for reorderHoldMs). Percentages are 0..100 with an optional "%";
 * durations are ms unless suffixed "s"; K/M/G are powers of 1000 and Ki/Mi/Gi powers of 1024.
 * An empty string is no impairment. Throws ImpairmentSpecError for anything else.
 */
export function parseImpairment (spec: string): ImpairmentInit {
  const init: ImpairmentInit = {}
  const seen = new Set<SpecKey>()
  for (const raw of spec.split(',')) {
    const item = raw.trim()
    // Tolerate "loss=5," and the empty string; an empty item carries no meaning to get wrong.
    if (item === '') continue
    const eq = item.indexOf('=')
    if (eq < 0) throw specError(item, `expected key=value with key one of ${SPEC_KEYS.join(', ')}`)
    const key = item.slice(0, eq).trim().toLowerCase()
    const value = item.slice(eq + 1).trim()
    if (!isSpecKey(key)) throw specError(item, `unknown key "${key}", expected one of ${SPEC_KEYS.join(', ')}`)
    if (seen.has(key)) throw specError(item, `"${key}" is given more than once`)
    seen.add(key)
    switch (key) {
      case 'loss': init.lossPercent = parsePercent(item, value); break
      case 'dup': init.duplicatePercent = parsePercent(item, value); break
      case 'reorder': init.reorderPercent = parsePercent(item, value); break
      case 'hold': init.reorderHoldMs = parseDuration(item, value); break
      case 'delay': init.delayMs = parseDuration(item, value); break
      case 'jitter': init.jitterMs = parseDuration(item, value); break
      case 'rate': init.rateBytesPerSecond = parseBytes(item, value, true); break
      case 'queue': {
        const bytes = parseBytes(item, value, false)
        if (bytes < 1) throw specError(item, 'queue must hold at least 1 byte')
        init.queueBytes = bytes
        break
      }
      case 'mtu': {
        const bytes = parseBytes(item, value, false)
        if (bytes < 1) throw specError(item, 'mtu must be at least 1 byte')
        init.maxDatagramBytes = bytes
        break
      }
      case 'seed': init.seed = parseSeed(item, value); break
    }
  }
  return init
}

const FORMAT_UNITS: ReadonlyArray<readonly [number, string]> = [
  [1e9, 'GB'], [1024 ** 3, 'GiB'], [1e6, 'MB'], [1024 ** 2, 'MiB'], [1e3, 'KB'], [1024, 'KiB']
]

function formatBytes (n: number): string {
  // Prefer a unit the number is an exact multiple of, so 1 MiB prints as "1MiB" and not "1.05MB".
  for (const [size, name] of FORMAT_UNITS) {
    if (n >= size && n % size === 0) return `${n / size}${name}`
  }
  for (const [size, name] of FORMAT_UNITS) {
    if (n >= size && name.length === 2) return `${Number((n / size).toPrecision(3))}${name}`
  }
  return `${n}B`
}

/** A one-line human summary, e.g. "loss 5% dup 1% reorder 2% delay 10ms"; "none" when nothing impairs. */
export function formatImpairment (init: ImpairmentInit): string {
  const parts: string[] = []
  const reorder = init.reorderPercent ?? 0
  const rate = init.rateBytesPerSecond ?? 0
  if ((init.lossPercent ?? 0) > 0) parts.push(`loss ${init.lossPercent}%`)
  if ((init.duplicatePercent ?? 0) > 0) parts.push(`dup ${init.duplicatePercent}%`)
  if (reorder > 0) {
    parts.push(`reorder ${reorder}%`)
    if (init.reorderHoldMs !== undefined) parts.push(`hold ${init.reorderHoldMs}ms`)
  }
  if ((init.delayMs ?? 0) > 0) parts.push(`delay ${init.delayMs}ms`)
  if ((init.jitterMs ?? 0) > 0) parts.push(`jitter ${init.jitterMs}ms`)
  if (rate > 0) {
    parts.push(`rate ${formatBytes(rate)}/s`)
    if (init.queueBytes !== undefined) parts.push(`queue ${formatBytes(init.queueBytes)}`)
  }
  if (init.maxDatagramBytes !== undefined) parts.push(`mtu ${init.maxDatagramBytes}B`)
  if (parts.length === 0) return 'none'
  if (init.seed !== undefined) parts.push(`seed ${init.seed}`)
  return parts.join(' ')
}

// ---- the impairment itself ---------------------------------------------------------------------

type Deliver = (d: Buffer) => void

interface Pending {
  due: number
  /** Breaks ties in `due` so equal times keep push order (the bottleneck is a FIFO). */
  seq: number
  datagram: Buffer
  deliver: Deliver
}

function checkRange (name: string, value: number | undefined, min: number, max: number): void {
  if (value === undefined) return
  if (!(Number.isFinite(value) && value >= min && value <= max)) {
    throw new RangeError(`impairment ${name} must be in ${min}..${max}, got ${value}`)
  }
}

// Looked up on every call rather than captured, so vi.useFakeTimers() (which swaps
// globalThis.performance) drives the same clock as the timers.
function now (): number {
  return performance.now()
}

export class Impairment {
  readonly stats: ImpairmentStats = { seen: 0, delivered: 0, dropped: 0, duplicated: 0, reordered: 0, queueDrops: 0 }

  private readonly noop: boolean
  /** delay, jitter or rate set: delivery goes through the timed queue. */
  private readonly timed: boolean
  private readonly lossP: number
  private readonly dupP: number
  private readonly reorderP: number
  private readonly holdMs: number
  private readonly maxDatagramBytes: number
  private readonly delayMs: number
  private readonly jitterMs: number
  private readonly bytesPerMs: number
  private readonly queueBytes: number
  private readonly prng: Prng
  private closed = false

  // The one datagram held back for reordering, kept in fields rather than an object so a hold
  // allocates nothing but its timer.
  private held: Buffer | undefined
  private heldCopies = 0
  private heldJitter = 0
  private heldDeliver: Deliver | undefined
  private holdTimer: ReturnType<typeof setTimeout> | undefined

  /**
   * Datagrams in flight, as a binary min-heap on (due, seq) driven by a single timer: a timer per
   * datagram would cost an allocation and a timer-list insert each, and sub-millisecond
   * serialisation times would be rounded up to 1 ms each, capping the rate at 1000 datagrams/s.
   */
  private readonly heap: Pending[] = []
  private seq = 0
  private timer: ReturnType<typeof setTimeout> | undefined
  private timerDue = 0
  /** When the bottleneck finishes sending everything accepted so far (virtual clock, ms). */
  private linkFreeAt = 0

  constructor (init: ImpairmentInit) {
    checkRange('lossPercent', init.lossPercent, 0, 100)
    checkRange('duplicatePercent', init.duplicatePercent, 0, 100)
    checkRange('reorderPercent', init.reorderPercent, 0, 100)
    checkRange('reorderHoldMs', init.reorderHoldMs, 0, MAX_IMPAIRMENT_DELAY_MS)
    checkRange('delayMs', init.delayMs, 0, MAX_IMPAIRMENT_DELAY_MS)
    checkRange('jitterMs', init.jitterMs, 0, MAX_IMPAIRMENT_DELAY_MS)
    checkRange('rateBytesPerSecond', init.rateBytesPerSecond, 0, Number.MAX_SAFE_INTEGER)
    checkRange('queueBytes', init.queueBytes, 1, Number.MAX_SAFE_INTEGER)
    checkRange('maxDatagramBytes', init.maxDatagramBytes, 1, Number.MAX_SAFE_INTEGER)
    this.prng = new Prng(init.seed ?? DEFAULT_IMPAIRMENT_SEED)
    this.lossP = (init.lossPercent ?? 0) / 100
    this.dupP = (init.duplicatePercent ?? 0) / 100
    this.reorderP = (init.reorderPercent ?? 0) / 100
    this.holdMs = init.reorderHoldMs ?? DEFAULT_REORDER_HOLD_MS
    this.delayMs = init.delayMs ?? 0
    this.jitterMs = init.jitterMs ?? 0
    this.bytesPerMs = (init.rateBytesPerSecond ?? 0) / 1000
    this.queueBytes = init.queueBytes ?? DEFAULT_IMPAIRMENT_QUEUE_BYTES
    this.timed = this.delayMs > 0 || this.jitterMs > 0 || this.bytesPerMs > 0
    this.maxDatagramBytes = init.maxDatagramBytes ?? Infinity
    this.noop = !this.timed && this.lossP === 0 && this.dupP === 0 && this.reorderP === 0 && this.maxDatagramBytes === Infinity
  }

  /** true when the init impairs nothing: callers can skip it entirely on the hot path */
  get isNoop (): boolean { return this.noop }

  /**
   * Decides the fate of one datagram and calls deliver() 0, 1 or 2 times: synchronously when
   * there is no delay, rate or reorder hold, otherwise later from an unref()'d timer.
   * The datagram is delivered as the same Buffer (both copies too), so do not reuse it.
   */
  push (datagram: Buffer, deliver: Deliver): void {
    if (this.closed) return
    this.stats.seen++
    if (this.noop) {
      this.stats.delivered++
      deliver(datagram)
      return
    }
    // Always four draws in this order, whatever branches apply, so one datagram's fate never
    // shifts the random numbers of the next: the same seed gives the same decisions per position.
    const rLoss = this.prng.next()
    const rDup = this.prng.next()
    const rReorder = this.prng.next()
    const jitter = this.prng.next() * this.jitterMs

    if (rLoss < this.lossP || datagram.length > this.maxDatagramBytes) {
      this.stats.dropped++
      return
    }
    const copies = rDup < this.dupP ? 2 : 1
    if (copies === 2) this.stats.duplicated++

    const held = this.held
    const heldDeliver = this.heldDeliver
    if (held !== undefined && heldDeliver !== undefined) {
      // This datagram overtakes the held one. It is never held itself, so a hold lasts exactly
      // one successor and the observed reorder rate is p / (1 + p) rather than p.
      const heldCopies = this.heldCopies
      const heldJitter = this.heldJitter
      this.clearHeld()
      this.forward(datagram, copies, jitter, deliver)
      this.stats.reordered++
      this.forward(held, heldCopies, heldJitter, heldDeliver)
      return
    }
    if (rReorder < this.reorderP) {
      this.held = datagram
      this.heldCopies = copies
      this.heldJitter = jitter
      this.heldDeliver = deliver
      this.holdTimer = setTimeout(this.releaseHeld, this.holdMs)
      this.holdTimer.unref()
      return
    }
    this.forward(datagram, copies, jitter, deliver)
  }

  /** cancel every pending timer and drop anything queued; push() afterwards is a no-op */
  close (): void {
    if (this.closed) return
    this.closed = true
    this.clearHeld()
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.heap.length = 0
  }

  private clearHeld (): void {
    if (this.holdTimer !== undefined) clearTimeout(this.holdTimer)
    this.holdTimer = undefined
    this.held = undefined
    this.heldDeliver = undefined
  }

  /** Nothing followed the held datagram in time: it goes out late but in order. */
  private readonly releaseHeld = (): void => {
    this.holdTimer = undefined
    const held = this.held
    const deliver = this.heldDeliver
    if (held === undefined || deliver === undefined) return
    const copies = this.heldCopies
    const jitter = this.heldJitter
    this.clearHeld()
    this.forward(held, copies, jitter, deliver)
  }

  /** Past loss, duplication and reordering: through the bottleneck, then the propagation delay. */
  private forward (datagram: Buffer, copies: number, jitter: number, deliver: Deliver): void {
    for (let i = 0; i < copies; i++) {
      if (this.closed) return
      if (!this.timed) {
        this.stats.delivered++
        deliver(datagram)
        continue
      }
      const t = now()
      let due = t
      if (this.bytesPerMs > 0) {
        // A fluid model of the link: the bytes still queued are whatever it cannot have sent by
        // now. It needs no per-datagram bookkeeping and stays exact at any rate.
        const start = this.linkFreeAt > t ? this.linkFreeAt : t
        const backlog = (start - t) * this.bytesPerMs
        // The epsilon absorbs float error so that exactly filling the queue is allowed.
        if (backlog + datagram.length > this.queueBytes + 1e-6) {
          this.stats.queueDrops++
          continue
        }
        this.linkFreeAt = start + datagram.length / this.bytesPerMs
        due = this.linkFreeAt
      }
      this.schedule(due + this.delayMs + jitter, datagram, deliver)
    }
  }

  private schedule (due: number, datagram: Buffer, deliver: Deliver): void {
    const heap = this.heap
    heap.push({ due, seq: this.seq++, datagram, deliver })
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(i, parent)) break
      this.swap(i, parent)
      i = parent
    }
    this.arm()
  }

  private readonly onTimer = (): void => {
    this.timer = undefined
    try {
      const heap = this.heap
      const t = now()
      while (!this.closed) {
        const top = heap[0]
        if (top === undefined || top.due > t) break
        this.pop()
        this.stats.delivered++
        top.deliver(top.datagram)
      }
    } finally {
      // Even if a deliver() threw, what is left must still go out.
      this.arm()
    }
  }

  /** Keeps exactly one timer, set for the earliest due datagram. */
  private arm (): void {
    const top = this.heap[0]
    if (this.closed || top === undefined) {
      if (this.timer !== undefined) clearTimeout(this.timer)
      this.timer = undefined
      return
    }
    if (this.timer !== undefined) {
      if (this.timerDue <= top.due) return
      clearTimeout(this.timer)
    }
    this.timerDue = top.due
    // Rounded up: timers have 1 ms resolution, and firing early would only mean arming again.
    this.timer = setTimeout(this.onTimer, Math.max(1, Math.ceil(top.due - now())))
    this.timer.unref()
  }

  private pop (): void {
    const heap = this.heap
    const last = heap.pop()
    if (last === undefined || heap.length === 0) return
    heap[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < heap.length && this.before(l, m)) m = l
      if (r < heap.length && this.before(r, m)) m = r
      if (m === i) return
      this.swap(i, m)
      i = m
    }
  }

  private before (a: number, b: number): boolean {
    const x = this.heap[a] as Pending
    const y = this.heap[b] as Pending
    return x.due < y.due || (x.due === y.due && x.seq < y.seq)
  }

  private swap (a: number, b: number): void {
    const heap = this.heap
    const x = heap[a] as Pending
    heap[a] = heap[b] as Pending
    heap[b] = x
  }
}
