import {
  TRACKER_REQUEST_INITIAL_TIMEOUT_MS, TRACKER_REQUEST_MAX_TIMEOUT_MS, TRACKER_REQUEST_TOTAL_TIMEOUT_MS
} from '../../configs.js'
import type { TrackerReply } from '../messages/index.js'
import { sameAddress, type Endpoint, type RemoteAddress } from './endpoint.js'
import { abortError, RequestTimeoutError } from './errors.js'

export interface TransactionInit {
  signal?: AbortSignal
  initialTimeoutMs?: number
  maxTimeoutMs?: number
  totalTimeoutMs?: number
}

/**
 * Sends the datagram `build(txid)` and resolves with the first reply from `to` that carries its
 * txid, resending the same bytes with exponential backoff. Replies from any other address are
 * ignored (they could be forged).
 */
export async function transact (endpoint: Endpoint, to: RemoteAddress, build: (txid: number) => Buffer, init: TransactionInit = {}): Promise<TrackerReply> {
  const { signal } = init
  if (signal?.aborted === true) throw abortError(signal)
  const initial = init.initialTimeoutMs ?? TRACKER_REQUEST_INITIAL_TIMEOUT_MS
  const max = init.maxTimeoutMs ?? TRACKER_REQUEST_MAX_TIMEOUT_MS
  const total = init.totalTimeoutMs ?? TRACKER_REQUEST_TOTAL_TIMEOUT_MS

  return await new Promise<TrackerReply>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined
    let wait = initial
    const started = Date.now()
    const finish = (): void => {
      endpoint.release(txid)
      if (timer !== undefined) clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
    const onAbort = (): void => {
      finish()
      reject(abortError(signal as AbortSignal))
    }
    const txid = endpoint.register((msg, from) => {
      if (!sameAddress(from, to) || msg.type < 0x80) return
      finish()
      resolve(msg as TrackerReply)
    })
    let datagram: Buffer
    try {
      datagram = build(txid)
    } catch (err) {
      finish()
      reject(err)
      return
    }
    const attempt = (): void => {
      const elapsed = Date.now() - started
      if (elapsed >= total) {
        finish()
        reject(new RequestTimeoutError(`no reply from ${to.host}:${to.port} after ${elapsed} ms`))
        return
      }
      try {
        endpoint.send(datagram, to)
      } catch (err) {
        finish()
        reject(err)
        return
      }
      timer = setTimeout(attempt, Math.min(wait, total - elapsed))
      wait = Math.min(wait * 2, max)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    attempt()
  })
}
