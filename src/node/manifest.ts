import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { HASH_BYTES, OFF_THREAD_HASH_MIN_BYTES } from '../../configs.js'
import { abortError } from '../transport/errors.js'
import { HashWorker, sha256 } from './hash-worker.js'

/** The piece-hash list of a file and the hash that names it. */
export interface Manifest {
  size: number
  pieceSize: number
  /** SHA-256 of each piece, concatenated. */
  pieceHashes: Buffer
  /** SHA-256 of pieceHashes: the file's identity on the wire. */
  contentHash: Buffer
}

export { sha256 }

const hashWorker = new HashWorker()

/**
 * SHA-256 that leaves the main thread for large inputs, so a downloader hashes one piece while it
 * receives the next. Below OFF_THREAD_HASH_MIN_BYTES the hand-over costs more than the hash.
 */
export async function sha256Off (data: Uint8Array): Promise<Buffer> {
  if (data.length < OFF_THREAD_HASH_MIN_BYTES) return sha256(data)
  return await hashWorker.sha256(data)
}

export const pieceCount = (size: number, pieceSize: number): number => Math.ceil(size / pieceSize)

export function pieceLength (size: number, pieceSize: number, index: number): number {
  return Math.min(pieceSize, size - index * pieceSize)
}

export function pieceHash (m: Pick<Manifest, 'pieceHashes'>, index: number): Buffer {
  return m.pieceHashes.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES)
}

/** Hashes a file piece by piece, reading one piece at a time so memory stays flat. */
export async function hashFile (file: string, pieceSize: number, signal?: AbortSignal): Promise<Manifest> {
  const fh = await open(file, 'r')
  try {
    const { size } = await fh.stat()
    const n = pieceCount(size, pieceSize)
    const pieceHashes = Buffer.alloc(n * HASH_BYTES)
    const buf = Buffer.allocUnsafe(Math.min(pieceSize, Math.max(size, 1)))
    for (let i = 0; i < n; i++) {
      if (signal?.aborted === true) throw abortError(signal)
      const len = pieceLength(size, pieceSize, i)
      await readFully(fh, buf, len, i * pieceSize)
      sha256(buf.subarray(0, len)).copy(pieceHashes, i * HASH_BYTES)
    }
    return { size, pieceSize, pieceHashes, contentHash: sha256(pieceHashes) }
  } finally {
    await fh.close()
  }
}

/** SHA-256 of a whole file, streamed. */
export async function hashWholeFile (file: string, chunkBytes: number): Promise<string> {
  const fh = await open(file, 'r')
  try {
    const h = createHash('sha256')
    // Two buffers: the next chunk is read while this one is hashed. A download written with
    // O_DIRECT is not in the page cache, and reading it back costs as long as hashing it.
    let current = Buffer.allocUnsafe(chunkBytes)
    let next = Buffer.allocUnsafe(chunkBytes)
    let position = 0
    let reading: Promise<{ bytesRead: number }> = fh.read(current, 0, chunkBytes, position)
    for (;;) {
      const { bytesRead } = await reading
      if (bytesRead === 0) break
      position += bytesRead
      reading = fh.read(next, 0, chunkBytes, position)
      h.update(current.subarray(0, bytesRead))
      ;[current, next] = [next, current]
    }
    return h.digest('hex')
  } finally {
    await fh.close()
  }
}

/** Reads exactly `length` bytes at `position`, or throws if the file is shorter. */
export async function readFully (fh: import('node:fs/promises').FileHandle, buf: Buffer, length: number, position: number): Promise<void> {
  let done = 0
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done)
    if (bytesRead === 0) throw new Error(`file ended at ${position + done}, expected ${position + length}`)
    done += bytesRead
  }
}
