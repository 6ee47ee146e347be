import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { killAll } from '../../src/harness/processes.js'

export { CLI, Proc, spawnCli, startNode, startTracker, waitFor, type NodeProc, type TrackerProc } from '../../src/harness/processes.js'

export async function makeHome (): Promise<string> {
  return await mkdtemp(path.join(os.tmpdir(), 'udptorrent-test-'))
}

/** Writes `size` random bytes to node_files/node<id>/<name> in `home` (in chunks: memory stays small). */
export async function makeRandomFile (home: string, id: number, name: string, size: number): Promise<string> {
  const dir = path.join(home, 'node_files', `node${id}`)
  await mkdir(dir, { recursive: true })
  const file = path.join(dir, name)
  const chunks: Buffer[] = []
  for (let left = size; left > 0; left -= 1 << 20) chunks.push(randomBytes(Math.min(left, 1 << 20)))
  await writeFile(file, Buffer.concat(chunks))
  return file
}

export async function sha256File (file: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer)
  return h.digest('hex')
}

export function nodeFile (home: string, id: number, name: string): string {
  return path.join(home, 'node_files', `node${id}`, name)
}

/** The JSON records of a process's log file. */
export async function readLog (home: string, proc: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(path.join(home, 'logs', `${proc}.log`), 'utf8').catch(() => '')
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>)
}

/** The tracker's database as JSON, or undefined when it is missing (rename() means never half-written). */
export async function trackerDb (home: string): Promise<any> {
  const text = await readFile(path.join(home, 'tracker_db', 'tracker.json'), 'utf8').catch(() => undefined)
  if (text === undefined) return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** Kills whatever a test left running, and removes its home. */
export async function cleanup (...homes: string[]): Promise<void> {
  killAll()
  for (const h of homes) await rm(h, { recursive: true, force: true })
}
