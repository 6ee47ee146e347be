/**
 * Scenario 6: crashes and a full disk. A downloader SIGKILLed mid-download resumes from its verified
 * pieces; the tracker SIGKILLed mid-download comes back on the same port with its state while the
 * download carries on; a download onto a full file system fails with a clear ENOSPC message and the
 * node keeps running.
 */
import { execFileSync } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { startNode, startTracker, waitFor, type Proc } from '../../src/harness/processes.js'
import { makeHome, makeRandomFile, nodeDir, onCleanup, readLog, sha256File, sha256OrMissing, sleep, withTimeout, type Row } from './util.js'

const SIZE = 32 * 1024 * 1024

/** The latest `progress <name>: NN.N%` a node printed, or -1. */
function progressOf (p: Proc, name: string): number {
  for (let i = p.lines.length - 1; i >= 0; i--) {
    const m = new RegExp(`^progress ${name.replace('.', '\\.')}: ([\\d.]+)%`).exec(p.lines[i] as string)
    if (m !== null) return Number(m[1])
  }
  return -1
}

async function resumeAfterKill (): Promise<Row> {
  const home = await makeHome('resume')
  const NAME = 'resume.bin'
  const file = await makeRandomFile(home, 70, NAME, SIZE)
  const want = await sha256File(file)
  const tracker = await startTracker(home)
  const owner = await startNode(home, 70, tracker.address, ['--send', NAME])
  await owner.waitForLine(/^sharing resume\.bin/)
  const flags = ['--download', NAME, '--exit-when-done', '--progress-interval', '100', '--download-limit', '8MB/s']
  const first = await startNode(home, 71, tracker.address, flags)
  const killedAt = await waitFor('download progress ≥ 30 %', () => { const p = progressOf(first, NAME); return p >= 30 ? p : (first.exitCode !== undefined ? -2 : undefined) }, 30_000)
  if (killedAt === -2) throw new Error(`the first download ended before it could be killed: ${first.lines.slice(-3).join(' | ')}`)
  first.kill('SIGKILL')
  await first.waitExit(5_000)
  const second = await startNode(home, 71, tracker.address, flags)
  const code = await second.waitExit(60_000)
  const identical = code === 0 && await sha256OrMissing(path.join(nodeDir(home, 71), NAME)) === want
  const complete = (await readLog(home, 'node71')).find((r) => r.msg === 'download complete')
  const resumed = Number(complete?.resumedPieces ?? 0)
  const pieces = SIZE / (256 * 1024)
  return {
    scenario: '6a downloader SIGKILL + resume',
    tried: `downloader 71 fetching a 32 MiB file (${pieces} pieces) at --download-limit 8MB/s, SIGKILLed at ${killedAt.toFixed(1)} % (from its progress lines), then restarted with the same home and flags`,
    expected: `the restart completes byte-identical; 'download complete' has resumedPieces > 0`,
    observed: `restart exit ${String(code)}, ${identical ? 'byte-identical' : 'NOT identical'}; resumedPieces ${resumed} of ${pieces}; ${typeof complete?.seconds === 'number' ? complete.seconds.toFixed(2) : '?'} s for the rest (the record's seconds)`,
    held: identical && resumed > 0
  }
}

async function trackerRestart (): Promise<Row> {
  const home = await makeHome('trackerkill')
  const NAME = 'tk.bin'
  const file = await makeRandomFile(home, 80, NAME, SIZE)
  const want = await sha256File(file)
  let tracker = await startTracker(home)
  const port = tracker.port
  const owner = await startNode(home, 80, tracker.address, ['--send', NAME])
  await owner.waitForLine(/^sharing tk\.bin/)
  const dl = await startNode(home, 81, tracker.address, ['--download', NAME, '--exit-when-done', '--progress-interval', '100', '--download-limit', '4MB/s'])
  const killedAt = await waitFor('download progress ≥ 15 %', () => { const p = progressOf(dl, NAME); return p >= 15 ? p : undefined }, 30_000)
  tracker.kill('SIGKILL')
  await tracker.waitExit(5_000)
  const downFor = 1_500
  await sleep(downFor)
  const progressWhileDown = progressOf(dl, NAME)
  tracker = await startTracker(home, [], port)
  const code = await dl.waitExit(60_000)
  const identical = code === 0 && await sha256OrMissing(path.join(nodeDir(home, 81), NAME)) === want
  const tlog = await readLog(home, 'tracker')
  const restored = tlog.find((r) => r.msg === 'state restored')
  // After the restart the tracker heard the finished download's OWN (then its EXIT, with --exit-when-done).
  const ownAfter = tlog.some((r) => r.msg === 'node owns file' && r.nodeId === 81)
  const downloaderStillRunningAtRestart = dl.exitCode === undefined || code === 0
  return {
    scenario: '6b tracker SIGKILL + restart',
    tried: `tracker SIGKILLed while downloader 81 was at ${killedAt.toFixed(1)} % of a 32 MiB file (--download-limit 4MB/s); down for ${downFor / 1000} s; restarted on the same port ${port} with the same home`,
    expected: `the running download finishes byte-identical; tracker log has 'state restored'`,
    observed: `download went on while the tracker was down (${killedAt.toFixed(1)} % → ${progressWhileDown.toFixed(1)} %); downloader exit ${String(code)}, ${identical ? 'byte-identical' : 'NOT identical'}; 'state restored' ${restored === undefined ? 'MISSING' : `present (nodes ${String(restored.nodes)}, files ${String(restored.files)})`}; restarted tracker got the downloader's OWN: ${ownAfter ? 'yes' : 'no'}`,
    held: identical && restored !== undefined && downloaderStillRunningAtRestart
  }
}

async function diskFull (): Promise<Row> {
  const tried = 'tmpfs of 4 MB (mount -t tmpfs -o size=4m) on downloader 91\'s node folder; download of an 8 MiB file'
  if (process.getuid?.() !== 0) {
    return { scenario: '6c ENOSPC', tried, expected: 'skipped: needs root to mount a tmpfs', observed: `skipped: not root (uid ${String(process.getuid?.())})`, held: true }
  }
  const home = await makeHome('enospc')
  const NAME = 'big.bin'
  await makeRandomFile(home, 90, NAME, 8 * 1024 * 1024)
  const dir = nodeDir(home, 91)
  await mkdir(dir, { recursive: true })
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', dir], { stdio: 'pipe', timeout: 10_000 })
  } catch (err) {
    return { scenario: '6c ENOSPC', tried, expected: 'skipped: the tmpfs could not be mounted', observed: `skipped: mount failed: ${((err as { stderr?: Buffer }).stderr?.toString() ?? (err as Error).message).trim()}`, held: true }
  }
  let mounted = true
  const unmount = (): void => {
    if (!mounted) return
    try {
      execFileSync('umount', [dir], { stdio: 'pipe', timeout: 10_000 })
      mounted = false
    } catch {
      try { execFileSync('umount', ['-l', dir], { stdio: 'pipe', timeout: 10_000 }); mounted = false } catch { /* reported by the cleanup runner */ }
    }
  }
  onCleanup(unmount)
  try {
    const tracker = await startTracker(home)
    const owner = await startNode(home, 90, tracker.address, ['--send', NAME])
    await owner.waitForLine(/^sharing big\.bin/)
    const dl = await startNode(home, 91, tracker.address, ['--download', NAME], 'pipe')
    let failed: string | undefined
    try {
      failed = (await dl.waitForLine(/^download failed: .*/, 30_000))[0]
    } catch (err) {
      failed = undefined
      if (dl.exitCode !== undefined) failed = `(process exited ${String(dl.exitCode)}: ${dl.lines.slice(-3).join(' | ')})`
    }
    // Still running, and still answering its REPL.
    await sleep(500)
    let answers = false
    if (dl.exitCode === undefined) {
      const before = dl.lines.length
      dl.write('status')
      answers = await waitFor('status reply', () => dl.lines.slice(before).some((l) => /^node 91 at /.test(l)), 5_000).catch(() => false)
    }
    const alive = dl.exitCode === undefined
    const crash = (await readLog(home, 'node91')).filter((r) => (r.level ?? 0) >= 60 || /unhandled|uncaught/i.test(String(r.msg)))
    dl.kill('SIGKILL')
    await dl.waitExit(5_000).catch(() => {})
    return {
      scenario: '6c ENOSPC',
      tried,
      expected: "the node prints 'download failed: ... (ENOSPC)' and keeps running (answers 'status')",
      observed: `${failed ?? 'no download failed line'}; node ${alive ? 'still running' : `EXITED (${String(dl.exitCode)})`}${alive ? `, status ${answers ? 'answered' : 'NOT answered'}` : ''}${crash.length > 0 ? `; fatal log records: ${crash.length}` : ''}`,
      held: failed !== undefined && /\(ENOSPC\)/.test(failed) && alive && answers
    }
  } finally {
    // Processes first (an open file would keep the mount busy), then the mount.
    await withTimeout(sleep(100), 1_000, 'settle')
    unmount()
  }
}

export async function crashScenarios (): Promise<Row[]> {
  const rows: Row[] = []
  for (const step of [resumeAfterKill, trackerRestart, diskFull]) {
    try {
      rows.push(await step())
    } catch (err) {
      rows.push({ scenario: `6 ${step.name}`, tried: '(aborted)', expected: 'completes in bounded time', observed: `error: ${(err as Error).message.split('\n')[0] as string}`, held: false })
    }
  }
  return rows
}
