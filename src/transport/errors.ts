/** The remote stopped answering: nothing arrived from it for the idle timeout while we waited. */
export class PeerTimeoutError extends Error {
  override readonly name = 'PeerTimeoutError'
}

/** The remote refused a request (unknown content, range outside the file, overloaded). */
export class PeerRejectedError extends Error {
  override readonly name = 'PeerRejectedError'
  constructor (message: string, readonly reason: number) {
    super(message)
  }
}

/** A request/response exchange got no reply within its overall timeout. */
export class RequestTimeoutError extends Error {
  override readonly name = 'RequestTimeoutError'
}

/** The endpoint or link was closed while an operation was pending. */
export class TransportClosedError extends Error {
  override readonly name = 'TransportClosedError'
}

/** The standard error for an aborted operation, carrying the signal's reason when it is an Error. */
export function abortError (signal: AbortSignal): Error {
  const reason: unknown = signal.reason
  if (reason instanceof Error) return reason
  const err = new Error('The operation was aborted')
  err.name = 'AbortError'
  return err
}
