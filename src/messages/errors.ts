/** A datagram that does not parse as a udptorrent message. Carries a short machine-readable cause. */
export class MalformedMessageError extends Error {
  override readonly name = 'MalformedMessageError'
  constructor (readonly reason: MalformedCause, detail: string) {
    super(`${reason}: ${detail}`)
  }
}

export type MalformedCause =
  | 'too-short'
  | 'bad-magic'
  | 'bad-version'
  | 'unknown-type'
  | 'truncated'
  | 'trailing-bytes'
  | 'out-of-bounds'
  | 'bad-name'
  | 'bad-utf8'

/** A file name that must not be used: it could escape the node's folder or is not representable. */
export class InvalidFileNameError extends Error {
  override readonly name = 'InvalidFileNameError'
}
