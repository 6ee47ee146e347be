import { lstat, mkdir, open, readFile, realpath, rename, stat, writeFile, type FileHandle } from 'node:fs/promises'
import path from 'node:path'
import type { Logger } from 'pino'
import { DEFAULT_PIECE_SIZE, MAX_OPEN_SERVE_HANDLES, NODE_STATE_DIR, PART_SUFFIX, SHARED_FILE_RECHECK_MS } from '../../configs.js'
import { checkFileName, Stream, type FileIdentity } from '../messages/index.js'
import type { BlockSource, ServedResource } from '../transport/block-server.js'
import { CoveredBytes } from './covered-bytes.js'
import { hashFile, pieceCount, pieceLength, readFully, type Manifest } from './manifest.js'

/** A file this node cannot share (missing, not a regular file, outside its folder). */
export class ShareError extends Error {
  override readonly name = 'ShareError'
}

export interface SharedFile {
  identity: FileIdentity
  path: string
  manifest: Manifest
  /** What the file looked like when it was hashed; a change means its hashes no longer hold. */
  fingerprint: Fingerprint
}

interface Fingerprint { size: number, mtimeMs: number, ino: number }

/** A download in progress, served piece by piece as they verify. */
interface PartialFile {
  identity: FileIdentity
  manifest: Manifest
  /** The `.part` file, and where it goes once complete (reads follow it there). */
  partPath: string
  finalPath: string
  has: (piece: number) => boolean
}

export interface LibraryInit {
  dir: string
  pieceSize?: number
  logger?: Logger
  /** Called when a shared file changed or vanished and is no longer offered. */
  onWithdrawn?: (name: string, reason: string) => void
  /**
   * Super-seeding (BEP 16's aim, done by refusal): while some piece of a complete file has not gone
   * to anyone, a piece already given to one peer is refused to the others as missing, so they take
   * it from that peer and the seed's upload goes to pieces nobody has. Default off.
   */
  superSeed?: boolean
}

/** Which peer first got each piece of a super-seeded file, and which of its bytes were sent to it. */
interface SuperSeedState { firstPeer: Map<number, string>, count: number, sent: Map<number, CoveredBytes>, delivered: number }

/** The pieces that a non-empty byte range touches, as indexes first..last. */
function piecesOf (manifest: Manifest, offset: number, length: number): { first: number, last: number } {
  return { first: Math.floor(offset / manifest.pieceSize), last: Math.floor((offset + length - 1) / manifest.pieceSize) }
}

const SHARED_LIST = 'shared.json'

/**
 * The files a node shares, and the only source of bytes it serves. Peers address content by hash,
 * never by path, so a request can reach nothing but a file the node chose to share; names are
 * checked, and the file must be a regular file whose real path is inside the node's folder.
 */
export class Library implements BlockSource {
  private readonly byHash = new Map<string, SharedFile>()
  private readonly partials = new Map<string, PartialFile>()
  private readonly handles = new Map<string, Promise<FileHandle>>()
  private readonly checked = new Map<string, { at: number, ok: Promise<boolean> }>()
  private readonly superSeeds = new Map<string, SuperSeedState>()
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
    const before = await fingerprint(file)
    const manifest = await hashFile(file, this.pieceSize, signal)
    const after = await fingerprint(file)
    if (!sameFingerprint(before, after)) throw new ShareError(`${name} changed while it was being hashed; try again`)
    return await this.add(name, manifest, after)
  }

  /** Serves a file whose manifest is already known (a download that just verified). */
  async add (name: string, manifest: Manifest, known?: Fingerprint): Promise<SharedFile> {
    const file = path.join(this.init.dir, name)
    const shared: SharedFile = {
      identity: { name, size: manifest.size, pieceSize: manifest.pieceSize, contentHash: manifest.contentHash },
      path: file,
      manifest,
      fingerprint: known ?? await fingerprint(file)
    }
    for (const [key, f] of this.byHash) {
      if (f.identity.name === name && key !== manifest.contentHash.toString('hex')) this.byHash.delete(key)
    }
    this.byHash.set(manifest.contentHash.toString('hex'), shared)
    this.removePartial(manifest.contentHash)
    await this.saveList()
    return shared
  }

  /** Serves the verified pieces of a download in progress, until it completes (add) or stops (removePartial). */
  addPartial (identity: FileIdentity, manifest: Manifest, has: (piece: number) => boolean): void {
    const key = identity.contentHash.toString('hex')
    if (this.byHash.has(key)) return
    const finalPath = path.join(this.init.dir, identity.name)
    this.partials.set(key, { identity, manifest, partPath: `${finalPath}${PART_SUFFIX}`, finalPath, has })
  }

  removePartial (contentHash: Buffer): void {
    const p = this.partials.get(contentHash.toString('hex'))
    if (p === undefined) return
    this.partials.delete(contentHash.toString('hex'))
    this.closeHandle(p.partPath)
  }

  /** The verified pieces of a content, as a bitfield (most significant bit first). */
  private bitfield (manifest: Manifest, has: (piece: number) => boolean): Buffer {
    const pieces = pieceCount(manifest.size, manifest.pieceSize)
    const bits = Buffer.alloc(Math.ceil(pieces / 8))
    for (let i = 0; i < pieces; i++) if (has(i)) bits[i >> 3] = (bits[i >> 3] ?? 0) | (0x80 >> (i & 7))
    return bits
  }

  open (contentHash: Buffer, stream: Stream): ServedResource | undefined {
    const key = contentHash.toString('hex')
    const shared = this.byHash.get(key)
    if (shared === undefined) {
      const partial = this.partials.get(key)
      return partial === undefined ? undefined : this.openPartial(partial, stream)
    }
    if (stream === Stream.Manifest) return this.manifestResource(shared.manifest)
    if (stream === Stream.Bitfield) return this.bitfieldResource(shared.manifest, () => true)
    return {
      size: shared.identity.size,
      claim: this.init.superSeed === true ? (offset, length, peer) => this.claimForSuperSeed(shared.manifest, offset, length, peer) : undefined,
      served: this.init.superSeed === true ? (offset, length, peer) => this.superSeedSent(shared.manifest, offset, length, peer) : undefined,
      read: async (offset, length) => {
        if (!await this.unchanged(shared)) throw new ShareError(`${shared.identity.name} changed on disk and is no longer shared`)
        const fh = await this.handle(shared.path)
        const buf = Buffer.allocUnsafe(length)
        await readFully(fh, buf, length, offset)
        return buf
      }
    }
  }

  /** Whether a super-seeded file has a piece that has not yet been sent in full to anyone. */
  superSeedPending (): boolean {
    if (this.init.superSeed !== true) return false
    for (const shared of this.byHash.values()) {
      const state = this.superSeeds.get(shared.identity.contentHash.toString('hex'))
      if (state === undefined || state.delivered < state.count) return true
    }
    return false
  }

  private superSeedState (manifest: Manifest): SuperSeedState {
    const key = manifest.contentHash.toString('hex')
    let state = this.superSeeds.get(key)
    if (state === undefined) {
      state = { firstPeer: new Map(), count: pieceCount(manifest.size, manifest.pieceSize), sent: new Map(), delivered: 0 }
      this.superSeeds.set(key, state)
    }
    return state
  }

  private superSeedSent (manifest: Manifest, offset: number, length: number, peer: string): void {
    const state = this.superSeedState(manifest)
    const { first, last } = piecesOf(manifest, offset, length)
    for (let p = first; p <= last; p++) {
      if (state.firstPeer.get(p) !== peer) continue
      const start = p * manifest.pieceSize
      const full = pieceLength(manifest.size, manifest.pieceSize, p)
      let covered = state.sent.get(p)
      if (covered === undefined) state.sent.set(p, covered = new CoveredBytes())
      if (covered.bytes >= full) continue
      covered.add(Math.max(offset, start), Math.min(offset + length, start + full))
      if (covered.bytes >= full) state.delivered++
    }
  }

  private claimForSuperSeed (manifest: Manifest, offset: number, length: number, peer: string): boolean {
    const state = this.superSeedState(manifest)
    if (state.firstPeer.size >= state.count || length === 0) return true
    const { first, last } = piecesOf(manifest, offset, length)
    for (let p = first; p <= last; p++) {
      const owner = state.firstPeer.get(p)
      if (owner !== undefined && owner !== peer) return false
    }
    for (let p = first; p <= last; p++) if (!state.firstPeer.has(p)) state.firstPeer.set(p, peer)
    return true
  }

  private manifestResource (manifest: Manifest): ServedResource {
    const hashes = manifest.pieceHashes
    return { size: hashes.length, read: async (offset, length) => hashes.subarray(offset, offset + length) }
  }

  private bitfieldResource (manifest: Manifest, has: (piece: number) => boolean): ServedResource {
    const size = Math.ceil(pieceCount(manifest.size, manifest.pieceSize) / 8)
    return { size, read: async (offset, length) => this.bitfield(manifest, has).subarray(offset, offset + length) }
  }

  private openPartial (partial: PartialFile, stream: Stream): ServedResource {
    const { manifest } = partial
    if (stream === Stream.Manifest) return this.manifestResource(manifest)
    if (stream === Stream.Bitfield) return this.bitfieldResource(manifest, partial.has)
    return {
      size: manifest.size,
      has: (offset, length) => {
        if (length === 0) return true
        const { first, last } = piecesOf(manifest, offset, length)
        for (let p = first; p <= last; p++) if (!partial.has(p)) return false
        return true
      },
      read: async (offset, length) => {
        const buf = Buffer.allocUnsafe(length)
        // The download may have just renamed the part file into place: an open handle follows it,
        // and a new open looks for it under its final name.
        const fh = await this.handle(partial.partPath).catch(async () => await this.handle(partial.finalPath))
        await readFully(fh, buf, length, offset)
        return buf
      }
    }
  }

  private closeHandle (file: string): void {
    const handle = this.handles.get(file)
    this.handles.delete(file)
    void handle?.then(async (fh) => await fh.close()).catch(() => {})
  }

  /**
   * Whether the file still is what was hashed (size, mtime, inode), re-checked at most once a
   * second. A changed or deleted file is withdrawn: its pieces would no longer verify.
   */
  private async unchanged (shared: SharedFile): Promise<boolean> {
    const key = shared.identity.contentHash.toString('hex')
    const now = Date.now()
    const last = this.checked.get(key)
    if (last !== undefined && now - last.at < SHARED_FILE_RECHECK_MS) return await last.ok
    const ok = fingerprint(shared.path).then((fp) => sameFingerprint(fp, shared.fingerprint), () => false)
    this.checked.set(key, { at: now, ok })
    if (!await ok) this.withdraw(shared)
    return await ok
  }

  private withdraw (shared: SharedFile): void {
    const key = shared.identity.contentHash.toString('hex')
    if (this.byHash.get(key) !== shared) return
    this.byHash.delete(key)
    this.checked.delete(key)
    this.closeHandle(shared.path)
    const reason = 'it changed or was deleted on disk, so its hashes no longer hold'
    this.init.logger?.error({ file: shared.identity.name, path: shared.path }, `stopped sharing: ${reason}`)
    this.init.onWithdrawn?.(shared.identity.name, reason)
    void this.saveList().catch(() => {})
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

async function fingerprint (file: string): Promise<Fingerprint> {
  const st = await stat(file)
  return { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino }
}

function sameFingerprint (a: Fingerprint, b: Fingerprint): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino
}
