import os from 'node:os'
import path from 'node:path'
import { SIM_REPORTS_DIR, SIM_SEED_LEAVES_PEERS } from '../../configs.js'
import { writeReport, sweepTable, type SimReport } from './report.js'
import { boundFor, runScenario, type ScenarioInit, type ScenarioResult, type SimMode } from './scenario.js'

export type SimPart = 'sweep' | 'leave'

export interface SimulateInit {
  fileBytes: number
  pieceBytes: number
  seedUpload: number
  peerUpload: number
  peerDownload: number
  peerCounts: number[]
  modes: SimMode[]
  staggerMs: number
  lossPercent: number
  delayMs: number
  parts: SimPart[]
  /** Where the report folder goes (default reports/sim-<time> under the home). */
  out: string
  command: string
  signal?: AbortSignal
}

const say = (line: string): void => { process.stdout.write(`${line}\n`) }

/** `udptorrent simulate`: the flash-crowd sweep, the seed-leaves comparison, then the report. */
export async function runSimulate (init: SimulateInit): Promise<SimReport> {
  const report: SimReport = {
    command: init.command,
    startedAt: new Date().toISOString(),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}, Node ${process.version}`,
    sweep: [],
    seedLeaves: []
  }
  const base: Omit<ScenarioInit, 'mode' | 'peers'> = {
    fileBytes: init.fileBytes,
    pieceBytes: init.pieceBytes,
    seedUpload: init.seedUpload,
    peerUpload: init.peerUpload,
    peerDownload: init.peerDownload,
    staggerMs: init.staggerMs,
    lossPercent: init.lossPercent,
    delayMs: init.delayMs,
    pieceOrder: 'rarest',
    seedLeaves: false,
    signal: init.signal
  }
  const run = async (scenario: ScenarioInit, label: string): Promise<ScenarioResult> => {
    say(`${label}: N = ${scenario.peers}, bound ${boundFor(scenario).toFixed(2)} s ...`)
    const r = await runScenario({ ...scenario, onStatus: (l) => say(`  ${l}`) })
    const done = r.completion.filter((c) => c !== undefined).length
    say(`  ${r.distributionSeconds === undefined ? `unfinished: ${done}/${scenario.peers} peers completed` : `${r.distributionSeconds.toFixed(2)} s, ${(r.distributionSeconds / r.boundSeconds).toFixed(2)} × the bound`}`)
    return r
  }
  if (init.parts.includes('sweep')) {
    for (const peers of init.peerCounts) {
      for (const mode of init.modes) report.sweep.push(await run({ ...base, mode, peers }, mode === 'p2p' ? 'P2P' : 'client-server'))
    }
  }
  if (init.parts.includes('leave')) {
    for (const pieceOrder of ['rarest', 'sequential'] as const) {
      report.seedLeaves.push(await run({ ...base, mode: 'p2p', peers: SIM_SEED_LEAVES_PEERS, pieceOrder, seedLeaves: true }, `seed leaves after one copy, ${pieceOrder}`))
    }
  }
  await writeReport(init.out, report)
  say('')
  if (report.sweep.length > 0) say(sweepTable(report.sweep))
  for (const r of report.seedLeaves) {
    say(`seed leaves, ${r.init.pieceOrder}: ${r.completion.filter((c) => c !== undefined).length} of ${r.init.peers} peers completed`)
  }
  say(`\nreport: ${path.join(init.out, 'index.html')} and summary.md`)
  return report
}

export function defaultReportDir (home: string): string {
  return path.join(home, SIM_REPORTS_DIR, `sim-${new Date().toISOString().replace(/[:.]/g, '-')}`)
}
