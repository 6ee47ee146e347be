import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { RegistrySnapshot } from './registry.js'

/** The tracker database file could not be read back; the tracker refuses to start on it. */
export class TrackerStoreError extends Error {
  override readonly name = 'TrackerStoreError'
}

/**
 * The registry on disk as JSON. Writes go to a temp file then rename(), so a crash leaves either
 * the old state or the new one, never a torn file.
 */
export class TrackerStore {
  constructor (readonly file: string) {}

  async load (): Promise<RegistrySnapshot | undefined> {
    let text: string
    try {
      text = await readFile(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
    let snap: unknown
    try {
      snap = JSON.parse(text)
    } catch (err) {
      throw new TrackerStoreError(`${this.file} is not valid JSON: ${(err as Error).message}`)
    }
    if (!isSnapshot(snap)) throw new TrackerStoreError(`${this.file} is not a udptorrent tracker database (version 1)`)
    return snap
  }

  async save (snap: RegistrySnapshot): Promise<void> {
    await mkdir(path.dirname(this.file), { recursive: true })
    const tmp = `${this.file}.${process.pid}.tmp`
    await writeFile(tmp, JSON.stringify(snap, null, 1))
    await rename(tmp, this.file)
  }
}

function isSnapshot (v: unknown): v is RegistrySnapshot {
  if (typeof v !== 'object' || v === null) return false
  const s = v as Partial<RegistrySnapshot>
  return s.version === 1 && Array.isArray(s.nodes) && Array.isArray(s.files) && Array.isArray(s.credit) &&
    s.nodes.every((n) => Number.isInteger(n.id) && typeof n.host === 'string' && Number.isInteger(n.port) && Array.isArray(n.files)) &&
    s.files.every((f) => typeof f.name === 'string' && Number.isSafeInteger(f.size) && Number.isInteger(f.pieceSize) &&
      typeof f.contentHash === 'string' && /^[0-9a-f]{64}$/.test(f.contentHash) && Array.isArray(f.owners) &&
      (f.partial === undefined || Array.isArray(f.partial))) &&
    s.credit.every((c) => Array.isArray(c) && c.length === 2 && Number.isInteger(c[0]) && Number.isFinite(c[1])) &&
    (s.keys === undefined || (Array.isArray(s.keys) && s.keys.every((k) => Array.isArray(k) && Number.isInteger(k[0]) && typeof k[1] === 'string' && /^[0-9a-f]{64}$/.test(k[1])))) &&
    (s.seqs === undefined || (Array.isArray(s.seqs) && s.seqs.every((q) => Array.isArray(q) && Number.isInteger(q[0]) && Number.isSafeInteger(q[1]))))
}
