import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import * as vega from 'vega'
import { compile, type TopLevelSpec } from 'vega-lite'
import type { ScenarioResult } from './scenario.js'

export interface SimReport {
  /** The command line that produced it. */
  command: string
  startedAt: string
  machine: string
  sweep: ScenarioResult[]
  /** Seed leaves after one copy: rarest first, then sequential. */
  seedLeaves: ScenarioResult[]
}

const MB = 1_000_000
const fmt = (n: number | undefined, digits = 2): string => n === undefined ? '–' : n.toFixed(digits)
const finished = (r: ScenarioResult): number => r.completion.filter((c) => c !== undefined).length

async function svg (spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' })
  return await view.toSVG()
}

/** Plot 1: each peer's completion time, as a CDF, one line per run shown. */
function completionCdf (runs: Array<{ label: string, result: ScenarioResult }>): TopLevelSpec {
  const values = runs.flatMap(({ label, result }) => {
    const times = result.completion.filter((c): c is number => c !== undefined).sort((a, b) => a - b)
    return times.map((seconds, i) => ({ run: label, seconds, fraction: (i + 1) / result.completion.length }))
  })
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: 'Completion time of each peer (CDF)',
    width: 520,
    height: 300,
    data: { values },
    mark: { type: 'line', interpolate: 'step-after', point: true },
    encoding: {
      x: { field: 'seconds', type: 'quantitative', title: 'seconds after the peer asked' },
      y: { field: 'fraction', type: 'quantitative', title: 'fraction of peers done', scale: { domain: [0, 1] } },
      color: { field: 'run', type: 'nominal', title: null }
    }
  }
}

/** Plot 2: distribution time against N, measured and bound, for both modes. */
function timeAgainstN (sweep: ScenarioResult[]): TopLevelSpec {
  const name = (r: ScenarioResult): string => r.init.mode === 'p2p' ? 'P2P' : 'client-server'
  const values = sweep.flatMap((r) => [
    ...(r.distributionSeconds === undefined ? [] : [{ N: r.init.peers, seconds: r.distributionSeconds, series: `${name(r)} measured`, kind: 'measured' }]),
    { N: r.init.peers, seconds: r.boundSeconds, series: `${name(r)} bound`, kind: 'bound' }
  ])
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: 'Distribution time against N (Kurose & Ross bounds dashed)',
    width: 520,
    height: 320,
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'N', type: 'quantitative', title: 'N peers', scale: { type: 'log', base: 2 } },
      y: { field: 'seconds', type: 'quantitative', title: 'seconds until every peer has the file' },
      color: { field: 'series', type: 'nominal', title: null },
      strokeDash: { field: 'kind', type: 'nominal', title: null, scale: { domain: ['measured', 'bound'], range: [[1, 0], [6, 4]] } }
    }
  }
}

function describeSettings (r: ScenarioResult): string {
  const i = r.init
  const down = Number.isFinite(i.peerDownload) ? `${fmt(i.peerDownload / MB)} MB/s` : 'unlimited'
  const link = i.lossPercent > 0 || i.delayMs > 0 ? `${i.lossPercent} % loss, ${i.delayMs} ms delay per datagram received` : 'loopback, no impairment'
  const arrival = i.staggerMs > 0 ? `staggered, one peer every ${i.staggerMs} ms` : 'flash crowd (all at once)'
  return `file ${fmt(i.fileBytes / MB)} MB in ${i.pieceBytes / 1024} KiB pieces; seed upload u_s ${fmt(i.seedUpload / MB)} MB/s; ` +
    `peer upload u ${fmt(i.peerUpload / MB)} MB/s; peer download ${down}; ${arrival}; ${link}`
}

export function sweepTable (sweep: ScenarioResult[]): string {
  const ns = [...new Set(sweep.map((r) => r.init.peers))].sort((a, b) => a - b)
  const row = (n: number, mode: string): ScenarioResult | undefined => sweep.find((r) => r.init.peers === n && r.init.mode === mode)
  const lines = [
    '| N | P2P measured (s) | P2P bound (s) | P2P ratio | client-server measured (s) | client-server bound (s) | CS ratio | CS / P2P |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|'
  ]
  for (const n of ns) {
    const p = row(n, 'p2p')
    const c = row(n, 'cs')
    const ratio = (r: ScenarioResult | undefined): string => r?.distributionSeconds === undefined ? (r === undefined ? '–' : `unfinished (${finished(r)}/${r.init.peers})`) : fmt(r.distributionSeconds / r.boundSeconds)
    const speedup = p?.distributionSeconds !== undefined && c?.distributionSeconds !== undefined ? `${fmt(c.distributionSeconds / p.distributionSeconds)}×` : '–'
    lines.push(`| ${n} | ${fmt(p?.distributionSeconds)} | ${fmt(p?.boundSeconds)} | ${ratio(p)} | ${fmt(c?.distributionSeconds)} | ${fmt(c?.boundSeconds)} | ${ratio(c)} | ${speedup} |`)
  }
  return lines.join('\n')
}

function seedLeavesTable (runs: ScenarioResult[]): string {
  const lines = ['| piece selection | peers | completed | last completion (s) |', '|---|---:|---:|---:|']
  for (const r of runs) {
    const times = r.completion.filter((c): c is number => c !== undefined)
    lines.push(`| ${r.init.pieceOrder === 'rarest' ? 'rarest first' : 'sequential (in order)'} | ${r.init.peers} | ${finished(r)} | ${times.length === 0 ? '–' : fmt(Math.max(...times))} |`)
  }
  return lines.join('\n')
}

/** Writes summary.md, index.html (plots inline as SVG) and results.json into `dir`. */
export async function writeReport (dir: string, report: SimReport): Promise<void> {
  await mkdir(dir, { recursive: true })
  const biggest = (mode: string): ScenarioResult | undefined =>
    report.sweep.filter((r) => r.init.mode === mode).sort((a, b) => b.init.peers - a.init.peers)[0]
  const cdfRuns = [
    ...[biggest('p2p'), biggest('cs')].filter((r): r is ScenarioResult => r !== undefined)
      .map((result) => ({ label: `${result.init.mode === 'p2p' ? 'P2P' : 'client-server'}, N = ${result.init.peers}`, result })),
    ...report.seedLeaves.map((result) => ({ label: `seed leaves, ${result.init.pieceOrder}, N = ${result.init.peers}`, result }))
  ]
  const plot1 = cdfRuns.length > 0 ? await svg(completionCdf(cdfRuns)) : ''
  const plot2 = report.sweep.length > 0 ? await svg(timeAgainstN(report.sweep)) : ''
  const first = report.sweep[0] ?? report.seedLeaves[0]
  const settings = first === undefined ? '' : describeSettings(first)
  const md = [
    '# udptorrent swarm simulation',
    '',
    `Command: \`${report.command}\`  `,
    `Started: ${report.startedAt}  `,
    `Machine: ${report.machine}`,
    '',
    `Settings: ${settings}.`,
    '',
    'Distribution time runs from the moment every peer is told to download (all processes already up and',
    'registered) to the moment the last peer has verified the whole file. Bounds: Kurose & Ross §2.5,',
    'D_cs ≥ max(N·F/u_s, F/d_min), D_p2p ≥ max(F/u_s, F/d_min, N·F/(u_s + N·u)). Ratio = measured / bound.',
    '',
    '## Flash crowd: P2P and client-server against their bounds',
    '',
    report.sweep.length > 0 ? sweepTable(report.sweep) : '(not run)',
    '',
    '## Seed leaves after uploading one full copy',
    '',
    'The seed super-seeds (--super-seed: each piece goes to one peer first) and leaves once it has sent a full copy\'s bytes of content and every piece at least once; then only the peers can finish the file.',
    '',
    report.seedLeaves.length > 0 ? seedLeavesTable(report.seedLeaves) : '(not run)',
    '',
    'Plots: index.html (completion CDF; distribution time against N).',
    ''
  ].join('\n')
  await writeFile(path.join(dir, 'summary.md'), md)
  await writeFile(path.join(dir, 'results.json'), JSON.stringify(report, (_k, v: unknown) => v === Infinity ? 'Infinity' : v, 1))
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>udptorrent swarm simulation</title>
<style>body{font:14px system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}</style>
</head><body>
<h1>udptorrent swarm simulation</h1>
<p><code>${escapeHtml(report.command)}</code> — ${escapeHtml(report.startedAt)} — ${escapeHtml(report.machine)}</p>
<p>${escapeHtml(settings)}</p>
<h2>Plot 1: completion time of each peer</h2>${plot1}
<h2>Plot 2: distribution time against N</h2>${plot2}
<h2>Tables</h2><pre>${escapeHtml(md)}</pre>
</body></html>`
  await writeFile(path.join(dir, 'index.html'), html)
}

function escapeHtml (s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] as string)
}
