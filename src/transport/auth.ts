import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, timingSafeEqual, verify, type KeyObject } from 'node:crypto'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { AUTH_EPOCH_MS, AUTH_EPOCHS_ACCEPTED, PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from '../../configs.js'
import type { RemoteAddress } from './endpoint.js'

/**
 * Stateless proof that a peer receives at the address it sends from (BEP 15 connection ids, QUIC
 * retry tokens): an HMAC of the address and a time epoch under a local secret. Nobody without the
 * secret can forge one, it is only ever sent to the address it names, and it expires on its own.
 */
export class AddressTokens {
  constructor (
    private readonly secret: Buffer,
    private readonly bytes: number,
    private readonly now: () => number = Date.now,
    private readonly epochMs = AUTH_EPOCH_MS,
    private readonly epochsAccepted = AUTH_EPOCHS_ACCEPTED
  ) {}

  issue (addr: RemoteAddress): Buffer {
    return this.token(addr, Math.floor(this.now() / this.epochMs))
  }

  check (addr: RemoteAddress, token: Buffer): boolean {
    if (token.length !== this.bytes) return false
    const epoch = Math.floor(this.now() / this.epochMs)
    for (let e = epoch; e > epoch - this.epochsAccepted; e--) {
      if (timingSafeEqual(this.token(addr, e), token)) return true
    }
    return false
  }

  private token (addr: RemoteAddress, epoch: number): Buffer {
    const host = addr.host.startsWith('::ffff:') ? addr.host.slice(7) : addr.host
    return createHmac('sha256', this.secret).update(`${epoch}|${host}|${addr.port}`).digest().subarray(0, this.bytes)
  }
}

/** A 32-byte secret kept in `file` (created with mode 0600 the first time). */
export async function loadOrCreateSecret (file: string): Promise<Buffer> {
  try {
    const secret = Buffer.from((await readFile(file, 'utf8')).trim(), 'hex')
    if (secret.length === 32) return secret
  } catch {
    // First start: make one below.
  }
  const secret = randomBytes(32)
  await mkdir(path.dirname(file), { recursive: true })
  await writeFile(file, secret.toString('hex') + '\n', { mode: 0o600 })
  return secret
}

/** A node's Ed25519 key pair: its identity towards the tracker. */
export interface NodeIdentity {
  /** Raw 32-byte public key, as sent in REGISTER. */
  publicKey: Buffer
  sign: (data: Buffer) => Buffer
}

export async function loadOrCreateIdentity (file: string): Promise<NodeIdentity> {
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(await readFile(file, 'utf8'))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    privateKey = generateKeyPairSync('ed25519').privateKey
    await mkdir(path.dirname(file), { recursive: true })
    await writeFile(file, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 })
    await chmod(file, 0o600)
  }
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' })
  const publicKey = Buffer.from(jwk.x as string, 'base64url')
  return { publicKey, sign: (data) => sign(null, data, privateKey) }
}

/** Public keys parsed once per raw value. */
const keyCache = new Map<string, KeyObject>()

export function publicKeyObject (raw: Buffer): KeyObject | undefined {
  if (raw.length !== PUBLIC_KEY_BYTES) return undefined
  const hex = raw.toString('hex')
  let key = keyCache.get(hex)
  if (key === undefined) {
    try {
      key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' })
    } catch {
      return undefined
    }
    if (keyCache.size > 10_000) keyCache.clear()
    keyCache.set(hex, key)
  }
  return key
}

/** Fills a datagram's trailing signature field with a signature over everything before it. */
export function signDatagram (datagram: Buffer, identity: NodeIdentity): Buffer {
  const body = datagram.subarray(0, datagram.length - SIGNATURE_BYTES)
  identity.sign(body).copy(datagram, datagram.length - SIGNATURE_BYTES)
  return datagram
}

/** True when the datagram's trailing signature was made by `publicKey` over everything before it. */
export function verifyDatagram (datagram: Buffer, publicKey: Buffer): boolean {
  const key = publicKeyObject(publicKey)
  if (key === undefined || datagram.length <= SIGNATURE_BYTES) return false
  const body = datagram.subarray(0, datagram.length - SIGNATURE_BYTES)
  const signature = datagram.subarray(datagram.length - SIGNATURE_BYTES)
  try {
    return verify(null, body, key, signature)
  } catch {
    return false
  }
}
