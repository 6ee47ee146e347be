import { lstat, mkdir, open, readFile, realpath, rename, writeFile, type FileHandle } from 'node:fs/promises'
import path from 'node:path'
import type { Logger } from 'pino'
import { DEFAULT_PIECE_SIZE, MAX_OPEN_SERVE_HANDLES, NODE_STATE_DIR } from '../../configs.js'
import { checkFileName, Stream, type FileIdentity } from '../messages/index.js'
import type { BlockSource, ServedResource } from '../transport/block-server.js'
import { hashFile, readFully, type Manifest } from './manifest.js'

/** A file this node cannot share (missing, not a regular file, outside its folder). */
export class ShareError extends Error {
  override readonly name = 'ShareError'
}

export interface SharedFile {
  identity: FileIdentity
  path: string
  manifest: Manifest
}

export interface LibraryInit {
  dir: string
  pieceSize?: number
  logger?: Logger
}

const SHARED_LIST = 'shared.json'

/**
 * The files a node shares, and the only source of bytes it serves. Peers address content by hash,
 * never by path, so a request can reach nothing but a file the node chose to share; names are
 * checked, and the file must be a regular file whose real path is inside the node's folder.
 */
export class Library implements BlockSource {
  private readonly byHash = new Map<string, SharedFile>()
  private readonly handles = new Map<string, Promise<FileHandle>>()
  private readonly pieceSize: number

  constructor (private readonly init: LibraryInit) {
    this.pieceSize = init.pieceSize ?? DEFAULT_PIECE_SIZE
  }

  get dir (): string { return this.init.dir }
  list (): SharedFile[] { return [...this.byHash.values()] }
  byName (name: string): SharedFile | undefined { return this.list().find((f) => f.identity.name === name) }

  /** Hashes `name` in the node's folder and starts serving it. */
  async share (rawName: string, signal?: AbortSignal): Promise<SharedFile> {
    const name = checkFileName(rawName)
    const file = path.join(this.init.dir, name)
    let st
    try {
      st = await lstat(file)
    } catch {
      throw new ShareError(`${name} is not in ${this.init.dir}`)
    }
    if (st.isSymbolicLink()) {
      const real = await realpath(file).catch(() => '')
      const root = await realpath(this.init.dir)
      if (!real.startsWith(root + path.sep)) throw new ShareError(`${name} is a link to outside ${this.init.dir}; refusing to share it`)
      st = await lstat(real)
    }
    if (!st.isFile()) throw new ShareError(`${name} is not a regular file`)
    const manifest = await hashFile(file, this.pieceSize, signal)
    return await this.add(name, manifest)
  }

  /** Serves a file whose manifest is already known (a download that just verified). */
  async add (name: string, manifest: Manifest): Promise<SharedFile> {
    const shared: SharedFile = {
      identity: { name, size: manifest.size, pieceSize: manifest.pieceSize, contentHash: manifest.contentHash },
      path: path.join(this.init.dir, name),
      manifest
    }
    for (const [key, f] of this.byHash) {
      if (f.identity.name === name && key !== manifest.contentHash.toString('hex')) this.byHash.delete(key)
    }
    this.byHash.set(manifest.contentHash.toString('hex'), shared)
    await this.saveList()
    return shared
  }

  open (contentHash: Buffer, stream: Stream): ServedResource | undefined {
    const shared = this.byHash.get(contentHash.toString('hex'))
    if (shared === undefined) return undefined
    if (stream === Stream.Manifest) {
      const hashes = shared.manifest.pieceHashes
      return { size: hashes.length, read: async (offset, length) => hashes.subarray(offset, offset + length) }
    }
    return {
      size: shared.identity.size,
      read: async (offset, length) => {
        const fh = await this.handle(shared.path)
        const buf = Buffer.allocUnsafe(length)
        await readFully(fh, buf, length, offset)
        return buf
      }
    }
  }

  /** Names shared before the last shutdown, to share again at start. */
  async previouslyShared (): Promise<string[]> {
    try {
      const names: unknown = JSON.parse(await readFile(this.listFile(), 'utf8'))
      return Array.isArray(names) ? names.filter((n): n is string => typeof n === 'string') : []
    } catch {
      return []
    }
  }

  async close (): Promise<void> {
    const handles = [...this.handles.values()]
    this.handles.clear()
    await Promise.allSettled(handles.map(async (h) => await (await h).close()))
  }

  private listFile (): string {
    return path.join(this.init.dir, NODE_STATE_DIR, SHARED_LIST)
  }

  private async saveList (): Promise<void> {
    const file = this.listFile()
    await mkdir(path.dirname(file), { recursive: true })
    await writeFile(`${file}.tmp`, JSON.stringify(this.list().map((f) => f.identity.name)))
    await rename(`${file}.tmp`, file)
  }

  private async handle (file: string): Promise<FileHandle> {
    let h = this.handles.get(file)
    if (h === undefined) {
      if (this.handles.size >= MAX_OPEN_SERVE_HANDLES) {
        const [oldestPath, oldest] = this.handles.entries().next().value as [string, Promise<FileHandle>]
        this.handles.delete(oldestPath)
        void oldest.then(async (fh) => await fh.close()).catch(() => {})
      }
      h = open(file, 'r')
      h.catch(() => this.handles.delete(file))
      this.handles.set(file, h)
    } else {
      // Map order doubles as recency order for the LRU.
      this.handles.delete(file)
      this.handles.set(file, h)
    }
    return await h
  }
}
