import { MAX_FILES_PER_NODE, MAX_NODES_PER_ADDRESS, SEQ_REORDER_SPAN, SEQ_REPLAY_WINDOW } from '../../configs.js'
import type { FileIdentity, OwnerEntry } from '../messages/index.js'

export interface RegistryInit {
  /** A node silent for longer than this is forgotten, with its ownerships. */
  pruneAfterMs: number
  now?: () => number
  maxNodesPerAddress?: number
  maxFilesPerNode?: number
  /** How many recent sequence numbers per node are remembered (default SEQ_REPLAY_WINDOW). */
  seqWindow?: number
}

/** A node's recently accepted request numbers; anything at or below `floor` is a replay. */
interface SeqWindow {
  floor: number
  /** Ascending by seq. */
  recent: Array<{ seq: number, txid: number }>
}

export interface NodeRecord {
  id: number
  host: string
  port: number
  lastSeen: number
  /** Keys (see fileKey) of the files this node shares. */
  files: Set<string>
}

/** A file is a (content, name) pair: the same bytes under two names are two entries, each findable. */
const fileKey = (file: FileIdentity): string => `${file.contentHash.toString('hex')}/${file.name}`

interface FileRecord {
  identity: FileIdentity
  owners: Set<number>
  /** The owners among `owners` still downloading: they serve only the pieces they have verified. */
  partial: Set<number>
}

export interface NeedResult {
  file: FileIdentity | null
  variants: number
  owners: OwnerEntry[]
}

/** Why the registry refused an operation; the server maps it to a wire error. */
export class RegistryError extends Error {
  override readonly name = 'RegistryError'
  constructor (readonly code: 'unknown-node' | 'forbidden' | 'not-found' | 'limit', message: string) {
    super(message)
  }
}

/** A read-only picture of the registry for observers (dashboard, stats). */
export interface RegistryView {
  nodes: Array<{ id: number, host: string, port: number, lastSeen: number, credit: number, files: number }>
  /** Each file with its owners in the order NEED offers them (best credit first); `partial` lists those still downloading. */
  files: Array<{ name: string, size: number, contentHash: string, owners: number[], partial: number[] }>
}

export interface RegistrySnapshot {
  version: 1
  nodes: Array<{ id: number, host: string, port: number, files: string[] }>
  files: Array<{ name: string, size: number, pieceSize: number, contentHash: string, owners: number[], partial?: number[] }>
  credit: Array<[number, number]>
  /** Node id → hex Ed25519 public key: the key that first registered the id owns it for good. */
  keys?: Array<[number, string]>
  /** Node id → highest request sequence number accepted (replays stay refused across restarts). */
  seqs?: Array<[number, number]>
}

/**
 * The tracker's state and rules, with no I/O: who is alive, who owns what, and who has uploaded
 * the most. A file is its content hash plus its name: a name that maps to two contents stays two
 * files (reported as variants, never merged), and one content under two names is found by either.
 */
export class Registry {
  private readonly nodes = new Map<number, NodeRecord>()
  private readonly files = new Map<string, FileRecord>()
  private readonly byName = new Map<string, Set<string>>()
  /** Upload credit outlives a node's registration, so a node that comes back keeps its rank. */
  private readonly credit = new Map<number, number>()
  private readonly keys = new Map<number, Buffer>()
  private readonly seqs = new Map<number, SeqWindow>()
  /** Credit each reporter has handed out per content: one download cannot be reported twice. */
  private readonly reported = new Map<string, number>()
  private readonly now: () => number
  /** Bumped on every change, so the store knows when to write. */
  version = 0

  constructor (private readonly init: RegistryInit) {
    this.now = init.now ?? Date.now
  }

  get nodeCount (): number { return this.nodes.size }
  get fileCount (): number { return this.files.size }
  getNode (id: number): NodeRecord | undefined { return this.nodes.get(id) }
  creditOf (id: number): number { return this.credit.get(id) ?? 0 }

  /** The public key bound to `id`, if any. */
  keyOf (id: number): Buffer | undefined { return this.keys.get(id) }

  /** Binds `id` to `key` the first time; the caller has checked the key signed the request. */
  bindKey (id: number, key: Buffer): void {
    if (this.keys.has(id)) return
    this.keys.set(id, Buffer.from(key))
    this.version++
  }

  /**
   * Classifies a signed request's sequence number, as an anti-replay window (RFC 4303 §3.4.3):
   * 'retransmit' (a request already accepted, again: same seq and txid), 'new' (never seen, above
   * the window's floor and within SEQ_REORDER_SPAN of the newest; now recorded) or 'replay'. The
   * window holds the last SEQ_REPLAY_WINDOW accepted numbers, so a node's concurrent requests
   * (heartbeat, OWN, NEED) are each accepted once whatever order they arrive or are retried in.
   */
  acceptSeq (id: number, seq: number, txid: number): 'new' | 'retransmit' | 'replay' {
    const window = this.seqs.get(id) ?? { floor: -1, recent: [] }
    const seen = window.recent.find((r) => r.seq === seq)
    if (seen !== undefined) return seen.txid === txid ? 'retransmit' : 'replay'
    const newest = window.recent.at(-1)?.seq ?? window.floor
    if (seq <= window.floor || seq <= newest - SEQ_REORDER_SPAN) return 'replay'
    let at = window.recent.length
    while (at > 0 && (window.recent[at - 1]?.seq ?? seq) > seq) at--
    window.recent.splice(at, 0, { seq, txid })
    if (window.recent.length > (this.init.seqWindow ?? SEQ_REPLAY_WINDOW)) window.floor = window.recent.shift()?.seq ?? window.floor
    this.seqs.set(id, window)
    this.version++
    return 'new'
  }

  /** Join or heartbeat. Returns whether the node was already known (if not, it must re-announce). */
  register (id: number, host: string, port: number): { known: boolean } {
    const node = this.nodes.get(id)
    if (node === undefined) {
      const max = this.init.maxNodesPerAddress ?? MAX_NODES_PER_ADDRESS
      let here = 0
      for (const n of this.nodes.values()) if (n.host === host) here++
      if (here >= max) throw new RegistryError('limit', `${here} nodes already registered from ${host}`)
      this.nodes.set(id, { id, host, port, lastSeen: this.now(), files: new Set() })
      this.version++
      return { known: false }
    }
    node.lastSeen = this.now()
    if (node.host !== host || node.port !== port) {
      node.host = host
      node.port = port
      this.version++
    }
    return { known: true }
  }

  /** The registered node `id`, provided the request came from its address. */
  private sender (id: number, host: string, port: number): NodeRecord {
    const node = this.nodes.get(id)
    if (node === undefined) throw new RegistryError('unknown-node', `node ${id} is not registered`)
    if (node.host !== host || node.port !== port) throw new RegistryError('forbidden', `node ${id} is registered from another address`)
    node.lastSeen = this.now()
    return node
  }

  /** `complete` false: a partial owner, which becomes complete by announcing the file again. */
  own (id: number, host: string, port: number, file: FileIdentity, complete = true): void {
    if (this.addOwner(this.sender(id, host, port), file, complete)) this.version++
  }

  /** Records `node` as an owner of `file`; false when nothing changed. A complete owner never becomes partial again. */
  private addOwner (node: NodeRecord, file: FileIdentity, complete: boolean): boolean {
    const key = fileKey(file)
    let rec = this.files.get(key)
    if (rec === undefined) {
      rec = { identity: file, owners: new Set(), partial: new Set() }
      this.files.set(key, rec)
      let names = this.byName.get(file.name)
      if (names === undefined) this.byName.set(file.name, names = new Set())
      names.add(key)
    }
    if (rec.owners.has(node.id)) {
      if (!complete || !rec.partial.has(node.id)) return false
      rec.partial.delete(node.id)
      return true
    }
    if (node.files.size >= (this.init.maxFilesPerNode ?? MAX_FILES_PER_NODE)) {
      if (rec.owners.size === 0) this.files.delete(key)
      throw new RegistryError('limit', `node ${node.id} already shares ${node.files.size} files`)
    }
    rec.owners.add(node.id)
    if (!complete) rec.partial.add(node.id)
    node.files.add(key)
    return true
  }

  /**
   * Live owners of `name`, best upload credit first, at most `k`. When the name maps to several
   * contents, the one with the most owners is offered and `variants` says how many there are.
   */
  need (id: number, host: string, port: number, name: string, k: number): NeedResult {
    this.sender(id, host, port)
    const keys = this.byName.get(name)
    if (keys === undefined || keys.size === 0) return { file: null, variants: 0, owners: [] }
    let best: FileRecord | undefined
    let bestCount = -1
    for (const key of keys) {
      const rec = this.files.get(key) as FileRecord
      const count = [...rec.owners].filter((o) => o !== id).length
      if (count > bestCount) {
        best = rec
        bestCount = count
      }
    }
    const chosen = best as FileRecord
    const owners = [...chosen.owners]
      .filter((o) => o !== id)
      .map((o) => this.nodes.get(o) as NodeRecord)
      .sort((a, b) => this.creditOf(b.id) - this.creditOf(a.id) || Number(chosen.partial.has(a.id)) - Number(chosen.partial.has(b.id)) || a.id - b.id)
      .slice(0, k)
      .map((n) => ({ nodeId: n.id, host: n.host, port: n.port, credit: this.creditOf(n.id), complete: !chosen.partial.has(n.id) }))
    return { file: chosen.identity, variants: keys.size, owners }
  }

  /**
   * The downloader's signed account of bytes received from each owner. Only owners of that content,
   * other than the reporter, are credited, and all of one reporter's reports for a content together
   * credit at most the file's size: a node cannot farm credit by reporting the same download twice.
   */
  update (id: number, host: string, port: number, contentHash: Buffer, received: Array<{ ownerId: number, bytes: number }>): number {
    this.sender(id, host, port)
    const hex = contentHash.toString('hex')
    const rec = [...this.files.entries()].find(([key]) => key.startsWith(`${hex}/`))?.[1]
    if (rec === undefined) throw new RegistryError('not-found', 'unknown content')
    // Entries for one owner are summed before the cap, so repeating an entry gains nothing.
    const perOwner = new Map<number, number>()
    for (const { ownerId, bytes } of received) perOwner.set(ownerId, (perOwner.get(ownerId) ?? 0) + bytes)
    // One reporter receives a file at most once: all its reports for a content credit at most its size.
    const reportKey = `${id}/${hex}`
    let allowance = rec.identity.size - (this.reported.get(reportKey) ?? 0)
    let credited = 0
    for (const [ownerId, bytes] of perOwner) {
      const owner = this.nodes.get(ownerId)
      const ownsContent = owner !== undefined && [...owner.files].some((key) => key.startsWith(`${hex}/`))
      if (ownerId === id || !ownsContent) continue
      const amount = Math.min(bytes, allowance)
      if (amount <= 0) break
      allowance -= amount
      this.credit.set(ownerId, this.creditOf(ownerId) + amount)
      credited += amount
    }
    if (credited > 0) this.reported.set(reportKey, (this.reported.get(reportKey) ?? 0) + credited)
    if (credited > 0) this.version++
    return credited
  }

  exit (id: number, host: string, port: number): void {
    this.sender(id, host, port)
    this.remove(id)
  }

  /** Forgets nodes silent for longer than the prune interval. Returns their ids. */
  prune (): number[] {
    const cutoff = this.now() - this.init.pruneAfterMs
    const gone: number[] = []
    for (const node of this.nodes.values()) {
      if (node.lastSeen < cutoff) gone.push(node.id)
    }
    for (const id of gone) this.remove(id)
    return gone
  }

  private remove (id: number): void {
    const node = this.nodes.get(id)
    if (node === undefined) return
    for (const key of node.files) {
      const rec = this.files.get(key)
      if (rec === undefined) continue
      rec.owners.delete(id)
      rec.partial.delete(id)
      if (rec.owners.size === 0) {
        this.files.delete(key)
        const names = this.byName.get(rec.identity.name)
        names?.delete(key)
        if (names?.size === 0) this.byName.delete(rec.identity.name)
      }
    }
    this.nodes.delete(id)
    this.version++
  }

  view (): RegistryView {
    const byCredit = (a: number, b: number): number => this.creditOf(b) - this.creditOf(a) || a - b
    return {
      nodes: [...this.nodes.values()].map((n) => ({ id: n.id, host: n.host, port: n.port, lastSeen: n.lastSeen, credit: this.creditOf(n.id), files: n.files.size })),
      files: [...this.files.values()].map((r) => ({
        name: r.identity.name, size: r.identity.size, contentHash: r.identity.contentHash.toString('hex'), owners: [...r.owners].sort(byCredit), partial: [...r.partial].sort((a, b) => a - b)
      }))
    }
  }

  snapshot (): RegistrySnapshot {
    return {
      version: 1,
      nodes: [...this.nodes.values()].map((n) => ({ id: n.id, host: n.host, port: n.port, files: [...n.files] })),
      files: [...this.files.values()].map((r) => ({
        name: r.identity.name, size: r.identity.size, pieceSize: r.identity.pieceSize, contentHash: r.identity.contentHash.toString('hex'), owners: [...r.owners], partial: [...r.partial]
      })),
      credit: [...this.credit.entries()],
      keys: [...this.keys.entries()].map(([id, key]) => [id, key.toString('hex')]),
      // A restart forgets the window: everything up to its highest number counts as used.
      seqs: [...this.seqs.entries()].map(([id, w]) => [id, Math.max(w.floor, ...w.recent.map((r) => r.seq))])
    }
  }

  /**
   * Loads a snapshot. Restored nodes count as just seen: they get a full prune interval to send
   * their next heartbeat, since the tracker, not they, was away.
   */
  restore (snap: RegistrySnapshot): void {
    const now = this.now()
    for (const n of snap.nodes) this.nodes.set(n.id, { id: n.id, host: n.host, port: n.port, lastSeen: now, files: new Set() })
    for (const f of snap.files) {
      const identity: FileIdentity = { name: f.name, size: f.size, pieceSize: f.pieceSize, contentHash: Buffer.from(f.contentHash, 'hex') }
      const partial = new Set(f.partial ?? [])
      for (const owner of f.owners) {
        const node = this.nodes.get(owner)
        if (node !== undefined) this.addOwner(node, identity, !partial.has(owner))
      }
    }
    for (const [id, c] of snap.credit) this.credit.set(id, c)
    for (const [id, hex] of snap.keys ?? []) this.keys.set(id, Buffer.from(hex, 'hex'))
    // A restored sequence number has no txid: anything at or below it is a replay.
    for (const [id, seq] of snap.seqs ?? []) this.seqs.set(id, { floor: seq, recent: [] })
  }
}
