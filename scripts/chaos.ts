/**
 * npm run chaos [-- --budget small|full] [--only N[,N...]]
 *
 * Attacks a real tracker and real nodes (processes started through src/harness/processes.ts) on
 * 127.0.0.0/8 and checks that each defence holds: fuzzing, a many-source flood, forged and replayed
 * tracker requests, owners that lie (corrupt data, never answer, wrong offsets), and crashes (a
 * downloader and the tracker SIGKILLed mid-download, a full disk). Prints a table of what was tried
 * and what held, then the attacks consciously left undefended, and exits 1 if anything did not hold.
 *
 * The budget is `full` unless CI=true (then `small`); --budget overrides. Every wait is bounded; all
 * processes are killed and every mount undone at the end, on error and on SIGINT. CHAOS_KEEP=1 keeps
 * the temporary homes (and their logs).
 */
import { killAll } from '../src/harness/processes.js'
import { crashScenarios } from './chaos/crash.js'
import { evilOwnerScenarios } from './chaos/evil-owners.js'
import { floodScenario } from './chaos/flood.js'
import { forgeryScenario } from './chaos/forgery.js'
import { fuzzScenario } from './chaos/fuzz.js'
import { NOT_DEFENDED } from './chaos/not-defended.js'
import { BUDGETS, formatTable, runCleanups, withTimeout, type Budget, type Row } from './chaos/util.js'

function usage (): never {
  console.error('usage: node dist/scripts/chaos.js [--budget small|full] [--only 1,2,...]   (default budget: small when CI=true, else full)')
  process.exit(2)
}

const argv = process.argv.slice(2)
let budgetName: Budget['name'] = process.env.CI === 'true' ? 'small' : 'full'
let only: Set<number> | undefined
for (let i = 0; i < argv.length; i++) {
  const a = argv[i] as string
  const value = (): string => { const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i]; if (v === undefined) usage(); return v }
  if (a === '--budget' || a.startsWith('--budget=')) {
    const v = value()
    if (v !== 'small' && v !== 'full') usage()
    budgetName = v
  } else if (a === '--only' || a.startsWith('--only=')) {
    only = new Set(value().split(',').map(Number))
  } else if (a === '--help' || a === '-h') {
    usage()
  } else {
    usage()
  }
}
const budget = BUDGETS[budgetName]

interface Scenario {
  n: number
  name: string
  /** Whole-scenario bound; every step inside has its own, shorter one. */
  timeoutMs: number
  run: (b: Budget) => Promise<Row[]>
}

const SCENARIOS: Scenario[] = [
  { n: 1, name: 'fuzz', timeoutMs: budget.name === 'full' ? 330_000 : 90_000, run: fuzzScenario },
  { n: 2, name: 'flood', timeoutMs: budget.name === 'full' ? 180_000 : 90_000, run: floodScenario },
  { n: 3, name: 'forgery and replay', timeoutMs: 60_000, run: forgeryScenario },
  { n: 4, name: 'lying owners', timeoutMs: 120_000, run: evilOwnerScenarios },
  { n: 6, name: 'crashes and a full disk', timeoutMs: 150_000, run: crashScenarios }
]

let interrupted = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true
    console.error(`\nchaos: ${signal}; killing processes and undoing mounts`)
    killAll()
    void runCleanups().finally(() => process.exit(130))
  })
}
// A bug in the suite itself must not leave processes or mounts behind, nor pass silently.
const internalErrors: string[] = []
process.on('unhandledRejection', (err) => {
  internalErrors.push(String((err as Error)?.stack ?? err))
  console.error(`chaos: unhandled rejection: ${String((err as Error)?.stack ?? err)}`)
})
process.on('uncaughtException', (err) => {
  console.error(`chaos: uncaught exception: ${err.stack ?? String(err)}`)
  killAll()
  void runCleanups().finally(() => process.exit(1))
})

const rows: Row[] = []
const started = performance.now()
console.log(`udptorrent chaos suite, budget ${budget.name} (${budget.fuzzPerTarget.toLocaleString('en-US')} fuzz datagrams per target)`)
try {
  for (const s of SCENARIOS) {
    if (interrupted) break
    if (only !== undefined && !only.has(s.n) && !(s.n === 4 && only.has(5))) continue
    const t0 = performance.now()
    console.log(`\n== ${s.n}. ${s.name} ...`)
    try {
      const got = await withTimeout(s.run(budget), s.timeoutMs, `scenario ${s.n} (${s.name})`)
      rows.push(...got)
      for (const r of got) console.log(`   ${r.info === true ? 'measured' : r.held ? 'held' : 'DID NOT HOLD'}: ${r.scenario}`)
    } catch (err) {
      console.log(`   DID NOT HOLD: ${s.name}: ${(err as Error).stack ?? String(err)}`)
      rows.push({ scenario: `${s.n} ${s.name}`, tried: '(scenario aborted)', expected: 'completes in bounded time', observed: `error: ${(err as Error).message}`, held: false })
    } finally {
      // Each scenario starts from nothing: its processes, sockets, mounts and homes go now.
      killAll()
      await runCleanups()
    }
    console.log(`   (${((performance.now() - t0) / 1000).toFixed(1)} s)`)
  }
} finally {
  killAll()
  await runCleanups()
}

if (internalErrors.length > 0) {
  rows.push({ scenario: 'chaos suite itself', tried: 'every scenario', expected: 'no unhandled error in the suite', observed: `${internalErrors.length} unhandled rejections: ${internalErrors.map((e) => e.split('\n')[0]).join('; ')}`, held: false })
}
const seconds = (performance.now() - started) / 1000
console.log(`\nchaos results (budget ${budget.name}, ${seconds.toFixed(0)} s)\n`)
console.log(formatTable(['scenario', 'what was tried', 'expected', 'observed', 'held'],
  rows.map((r) => [r.scenario, r.tried, r.expected, r.observed, r.info === true ? 'info' : r.held ? 'yes' : 'NO']), [18, 44, 30, 52, 4]))
console.log('\nNot defended (considered, and consciously left open):\n')
for (const [i, item] of NOT_DEFENDED.entries()) console.log(`${i + 1}. ${item.attack}\n   ${item.why}\n`)
const failed = rows.filter((r) => !r.held && r.info !== true)
const checks = rows.filter((r) => r.info !== true).length
console.log(failed.length === 0 ? `all ${checks} checks held` : `${failed.length} of ${checks} checks did NOT hold: ${failed.map((r) => r.scenario).join('; ')}`)
process.exitCode = failed.length === 0 && !interrupted ? 0 : 1
