#!/usr/bin/env -S node --max-semi-space-size=1
// The shebang's flag is configs.ts V8_MAX_SEMI_SPACE_MB (a shebang cannot import it; the process
// harness passes the same constant). Received datagrams are up to 64 KB each and die young; with
// V8's default young generation they pile up as external memory between scavenges. A 1 MB
// semi-space collects them promptly: peak RSS of a 1 GB download 157 -> 146 MB, throughput unchanged.
import yargs, { type Argv } from 'yargs'
import { hideBin } from 'yargs/helpers'
import {
  DEFAULT_BIND_HOST, DIRECT_IO_WRITES, RECEIVE_BATCH, UDP_SEGMENTATION, DEFAULT_NODE_PORT, MAX_DATAGRAM_BYTES, DEFAULT_TRACKER_HOST, DEFAULT_TRACKER_PORT, DOWNLOAD_NO_OWNER_TIMEOUT_MS, HOME_ENV_VAR,
  DEFAULT_PIECE_SIZE, MAX_PIECE_SIZE, MAX_UPLOAD_SLOTS, MIN_PIECE_SIZE, UPLOAD_SLOTS,
  SIM_DEFAULT_FILE_BYTES, SIM_DEFAULT_PEER_COUNTS, SIM_DEFAULT_PEER_UPLOAD, SIM_DEFAULT_PIECE_BYTES, SIM_DEFAULT_SEED_UPLOAD, SIM_MAX_PEERS
} from '../configs.js'
import { CONFIG_FILE_NAME, ConfigFileError, LOG_LEVELS, loadConfigFile, type ConfigFile } from './config-file.js'
import { setConsoleLogLevel } from './logging.js'
import { MIN_DATAGRAM_BYTES } from './messages/index.js'
import { parseByteRate, parseByteSize } from './transport/impairment.js'
import { runNode } from './node/main.js'
import type { PieceOrder } from './node/piece-scheduler.js'
import { resolveHome } from './paths.js'
import { runTracker } from './tracker/main.js'

/** A flag or environment value that does not make sense; reported in one line, exit code 2. */
class UsageError extends Error {
  override readonly name = 'UsageError'
}

function parseHostPort (value: string): { host: string, port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(value.trim())
  const port = m === null ? NaN : Number(m[2])
  if (m === null || !(port > 0 && port < 65536)) throw new UsageError(`--tracker must be host:port, got "${value}"`)
  return { host: m[1] as string, port }
}

function checkPort (port: number, flag: string): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`${flag} must be a port number 0..65535`)
  return port
}

function checkDatagramBytes (value: number | undefined, flag: string): number | undefined {
  if (value !== undefined && !(Number.isInteger(value) && value >= MIN_DATAGRAM_BYTES && value <= MAX_DATAGRAM_BYTES)) {
    throw new UsageError(`${flag} must be ${MIN_DATAGRAM_BYTES}..${MAX_DATAGRAM_BYTES}`)
  }
  return value
}

function checkInt (value: number | undefined, flag: string, min: number, max: number): number | undefined {
  if (value !== undefined && !(Number.isInteger(value) && value >= min && value <= max)) throw new UsageError(`${flag} must be a whole number ${min}..${max}`)
  return value
}

function rate (value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined
  try {
    return parseByteRate(value)
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`)
  }
}

// The config file is read before parsing: its values sit between the environment and the defaults
// (yargs precedence: flag > UDPTORRENT_* env > config objects > defaults). A bad file: one line, exit 2.
/** A usage or start-up error: one line on stderr, exit code 2, never a stack. */
function exitWithUsageError (message: string): never {
  process.stderr.write(`udptorrent: ${message}\n`)
  process.exit(2)
}

let configFile: ConfigFile | undefined
try {
  configFile = loadConfigFile(hideBin(process.argv))
} catch (err) {
  if (!(err instanceof ConfigFileError)) throw err
  exitWithUsageError(err.message)
}

const common = <T>(y: Argv<T>) => y
  .option('home', { type: 'string', describe: `folder holding node_files/, tracker_db/ and logs/ (default: $${HOME_ENV_VAR} or the current folder)` })
  .option('config', { type: 'string', describe: `JSON file of flag values (default: <home>/${CONFIG_FILE_NAME} if it exists); flags and UDPTORRENT_* override it` })
  .option('host', { type: 'string', default: DEFAULT_BIND_HOST, describe: 'address to bind' })
  .option('heartbeat', { type: 'number', describe: 'heartbeat interval in seconds (tracker: what it asks of nodes; node: overrides that)' })
  // No yargs default: a level given by flag, env or file also applies to the pretty console logs (src/logging.ts).
  .option('log-level', { type: 'string', choices: LOG_LEVELS, describe: 'log level (default: info in the log file; warn on a TTY console)' })

const heartbeatMs = (s: number | undefined): number | undefined => {
  if (s === undefined) return undefined
  if (!(s > 0)) throw new UsageError('--heartbeat must be a positive number of seconds')
  return Math.round(s * 1000)
}

const ENV_PREFIX = 'UDPTORRENT'

/**
 * One environment serves every command: UDPTORRENT_UPLOAD_LIMIT is meant for nodes, and a tracker
 * or a simulation started from the same shell must not refuse it as an unknown argument under
 * .strict(). A key this command does not know is dropped when it came from the environment only;
 * an unknown flag on the command line is still refused.
 */
function dropOtherCommandsEnv (argv: Record<string, unknown>, y?: unknown): void {
  // yargs passes itself as a second argument and has getOptions(), the options of the command that
  // runs; the typings leave both out.
  const parser = y as { getOptions?: () => { key: Record<string, unknown> } } | undefined
  if (typeof parser?.getOptions !== 'function') return
  const known = new Set(Object.keys(parser.getOptions().key))
  const cliArgs = hideBin(process.argv)
  for (const key of Object.keys(argv)) {
    const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
    if (key === '_' || key === '$0' || known.has(key) || known.has(flag)) continue
    const fromEnv = process.env[`${ENV_PREFIX}_${flag.replace(/-/g, '_').toUpperCase()}`] !== undefined
    const onCommandLine = cliArgs.some((a) => a === `--${flag}` || a.startsWith(`--${flag}=`) || a === `--no-${flag}`)
    if (fromEnv && !onCommandLine) Reflect.deleteProperty(argv, key)
  }
}

await yargs(hideBin(process.argv))
  .scriptName('udptorrent')
  .env(ENV_PREFIX)
  .middleware(dropOtherCommandsEnv, true)
  .command('tracker', 'run the tracker (UDP)', (y) => common(y)
    .option('port', { type: 'number', default: DEFAULT_TRACKER_PORT, describe: 'UDP port (0 = ephemeral)' })
    .option('max-owners', { type: 'number', describe: 'K: the most owners one NEED reply lists' })
    .option('http', { type: 'number', describe: 'serve the live dashboard, /stats.json and /metrics on this TCP port (off by default)' })
    .option('http-host', { type: 'string', default: '127.0.0.1', describe: 'address the dashboard binds to' })
    .config(configFile?.values.tracker ?? {}),
  async (argv) => {
    setConsoleLogLevel(argv['log-level'])
    await runTracker({
      home: resolveHome(argv.home),
      host: argv.host,
      port: checkPort(argv.port, '--port'),
      heartbeatMs: heartbeatMs(argv.heartbeat),
      maxOwners: argv['max-owners'],
      logLevel: argv['log-level'] ?? 'info',
      httpPort: argv.http === undefined ? undefined : checkPort(argv.http, '--http'),
      httpHost: argv['http-host']
    })
  })
  .command('node', 'run a node: share and download files', (y) => common(y)
    .option('id', { type: 'number', demandOption: true, describe: 'node id; files live in node_files/node<id>/' })
    .option('tracker', { type: 'string', default: `${DEFAULT_TRACKER_HOST}:${DEFAULT_TRACKER_PORT}`, describe: 'tracker host:port' })
    .option('port', { type: 'number', default: DEFAULT_NODE_PORT, describe: 'UDP port (0 = ephemeral)' })
    .option('send', { type: 'string', array: true, default: [] as string[], describe: 'share this file at start (repeatable)' })
    .option('download', { type: 'string', array: true, default: [] as string[], describe: 'download this file at start (repeatable)' })
    .option('exit-when-done', { type: 'boolean', default: false, describe: 'exit 0 once every --download verified, non-zero if one failed' })
    .option('owner-timeout', { type: 'number', default: DOWNLOAD_NO_OWNER_TIMEOUT_MS / 1000, describe: 'seconds a download waits with no live owner before it fails' })
    .option('upload-limit', { type: 'string', describe: 'most bytes per second sent to peers, e.g. 5MB/s (default: unlimited)' })
    .option('download-limit', { type: 'string', describe: 'most bytes per second asked of peers, e.g. 5MB/s (default: unlimited)' })
    .option('max-datagram-bytes', { type: 'number', describe: 'largest data datagram to probe for (default: per path, from the interface MTU)' })
    .option('progress-interval', { type: 'number', describe: 'milliseconds between progress updates (default: 200 on a TTY, 2000 otherwise)' })
    .option('datagram-bytes', { type: 'number', hidden: true, describe: 'data datagram size' })
    .option('json', { type: 'boolean', default: false, describe: 'print newline-delimited JSON events on stdout (and nothing else) for scripts' })
    .option('direct-io', { type: 'boolean', default: DIRECT_IO_WRITES, describe: 'write downloaded pieces with O_DIRECT where the file system allows it (--no-direct-io: through the page cache)' })
    .option('udp-gso', { type: 'boolean', default: UDP_SEGMENTATION, describe: 'send each answer\'s datagrams in runs, one system call per run (UDP GSO), where the kernel and the built addon allow it (--no-udp-gso: one call per datagram)' })
    .option('recv-batch', { type: 'boolean', default: RECEIVE_BATCH, describe: 'read waiting datagrams in batches, one system call per batch (recvmmsg), where the built addon allows it (--no-recv-batch: one call per datagram)' })
    .option('share', { type: 'boolean', default: true, describe: 'upload what this node downloads, while downloading and after (--no-share: a pure client)' })
    .option('piece-size', { type: 'number', describe: `piece size in bytes for files this node starts sharing, ${MIN_PIECE_SIZE}..${MAX_PIECE_SIZE} (default ${DEFAULT_PIECE_SIZE})` })
    .option('upload-slots', { type: 'number', describe: `peers served at once, tit-for-tat plus one optimistic (default ${UPLOAD_SLOTS})` })
    .option('piece-order', { type: 'string', choices: ['rarest', 'sequential'], hidden: true, describe: 'simulator hook: piece selection in a swarm' })
    .option('super-seed', { type: 'boolean', default: false, describe: 'give each piece of a complete file to one peer first, so a seed that leaves early has sent every piece' })
    .option('exit-after-upload', { type: 'number', hidden: true, describe: 'simulator hook: leave once this many bytes of file content were uploaded' })
    .option('impair', { type: 'string', hidden: true, describe: 'test hook: impair inbound peer datagrams, e.g. "loss=5,dup=1,reorder=2,seed=7"' })
    .config(configFile?.values.node ?? {}),
  async (argv) => {
    setConsoleLogLevel(argv['log-level'])
    if (!Number.isInteger(argv.id) || argv.id < 0 || argv.id > 0xffffffff) throw new UsageError('--id must be a whole number 0..4294967295')
    const datagramBytes = checkDatagramBytes(argv['datagram-bytes'], '--datagram-bytes')
    const maxDatagramBytes = checkDatagramBytes(argv['max-datagram-bytes'], '--max-datagram-bytes')
    await runNode({
      id: argv.id,
      home: resolveHome(argv.home),
      tracker: parseHostPort(argv.tracker),
      host: argv.host,
      port: checkPort(argv.port, '--port'),
      heartbeatMs: heartbeatMs(argv.heartbeat),
      send: argv.send.map(String),
      download: argv.download.map(String),
      exitWhenDone: argv['exit-when-done'],
      logLevel: argv['log-level'] ?? 'info',
      json: argv.json,
      impair: argv.impair,
      datagramBytes,
      maxDatagramBytes,
      uploadLimit: rate(argv['upload-limit'], '--upload-limit'),
      downloadLimit: rate(argv['download-limit'], '--download-limit'),
      noOwnerTimeoutMs: argv['owner-timeout'] * 1000,
      progressIntervalMs: argv['progress-interval'],
      share: argv.share,
      superSeed: argv['super-seed'],
      pieceSize: checkInt(argv['piece-size'], '--piece-size', MIN_PIECE_SIZE, MAX_PIECE_SIZE),
      uploadSlots: checkInt(argv['upload-slots'], '--upload-slots', 1, MAX_UPLOAD_SLOTS),
      pieceOrder: argv['piece-order'] as PieceOrder | undefined,
      exitAfterUploadBytes: argv['exit-after-upload'],
      directIo: argv['direct-io'],
      udpGso: argv['udp-gso'],
      recvBatch: argv['recv-batch']
    })
  })
  .command('simulate', 'run a swarm (tracker, seed, N peers) and compare its distribution time with the Kurose & Ross bound', (y) => y
    .option('home', { type: 'string', describe: 'folder the report goes under (reports/sim-<time>/)' })
    .option('out', { type: 'string', describe: 'report folder (default: <home>/reports/sim-<time>)' })
    .option('size', { type: 'string', default: `${SIM_DEFAULT_FILE_BYTES}B`, describe: 'file size, e.g. 8MB' })
    .option('piece-size', { type: 'string', default: `${SIM_DEFAULT_PIECE_BYTES}B`, describe: 'piece size, e.g. 32KB' })
    .option('seed-upload', { type: 'string', default: `${SIM_DEFAULT_SEED_UPLOAD}B/s`, describe: 'the seed\'s upload limit u_s, e.g. 5MB/s' })
    .option('peer-upload', { type: 'string', default: `${SIM_DEFAULT_PEER_UPLOAD}B/s`, describe: 'each peer\'s upload limit u, e.g. 1MB/s' })
    .option('peer-download', { type: 'string', describe: 'each peer\'s download limit (default: unlimited)' })
    .option('peers', { type: 'string', default: SIM_DEFAULT_PEER_COUNTS.join(','), describe: 'the values of N to run, e.g. 1,2,4,8,16,32' })
    .option('mode', { type: 'string', choices: ['both', 'p2p', 'cs'], default: 'both', describe: 'P2P, client-server (only the seed uploads), or both' })
    .option('stagger', { type: 'number', default: 0, describe: 'milliseconds between peers\' arrivals (0: a flash crowd)' })
    .option('loss', { type: 'number', default: 0, describe: 'percent of peer datagrams lost, through the project\'s emulator' })
    .option('delay', { type: 'number', default: 0, describe: 'milliseconds of delay added to every peer datagram received' })
    .option('only', { type: 'string', choices: ['all', 'sweep', 'leave'], default: 'all', describe: 'the N sweep, the seed-leaves comparison (N = 16, rarest first vs sequential), or all' }),
  async (argv) => {
    const bytes = (v: string, flag: string): number => {
      try {
        return parseByteSize(v)
      } catch (err) {
        throw new UsageError(`${flag}: ${(err as Error).message}`)
      }
    }
    const peerCounts = argv.peers.split(',').map((n) => Number(n))
    if (peerCounts.some((n) => !Number.isInteger(n) || n < 1 || n > SIM_MAX_PEERS)) throw new UsageError(`--peers must list whole numbers 1..${SIM_MAX_PEERS}`)
    if (!(argv.loss >= 0 && argv.loss < 100)) throw new UsageError('--loss must be 0..99 percent')
    if (!(argv.delay >= 0) || !(argv.stagger >= 0)) throw new UsageError('--delay and --stagger must be ≥ 0')
    const home = resolveHome(argv.home)
    // Loaded here, not at the top: the charting library would slow every node's start-up.
    const { defaultReportDir, runSimulate } = await import('./sim/main.js')
    const ac = new AbortController()
    process.once('SIGINT', () => ac.abort(new Error('interrupted')))
    await runSimulate({
      fileBytes: bytes(argv.size, '--size'),
      pieceBytes: checkInt(bytes(argv['piece-size'], '--piece-size'), '--piece-size', MIN_PIECE_SIZE, MAX_PIECE_SIZE) as number,
      seedUpload: rate(argv['seed-upload'], '--seed-upload') as number,
      peerUpload: rate(argv['peer-upload'], '--peer-upload') as number,
      peerDownload: rate(argv['peer-download'], '--peer-download') ?? Infinity,
      peerCounts,
      modes: argv.mode === 'both' ? ['p2p', 'cs'] : [argv.mode as 'p2p' | 'cs'],
      staggerMs: argv.stagger,
      lossPercent: argv.loss,
      delayMs: argv.delay,
      parts: argv.only === 'all' ? ['sweep', 'leave'] : [argv.only as 'sweep' | 'leave'],
      out: argv.out ?? defaultReportDir(home),
      command: `udptorrent ${hideBin(process.argv).join(' ')}`,
      signal: ac.signal
    })
  })
  .demandCommand(1, 'name a command: tracker, node or simulate')
  .strict()
  .fail((msg, err) => exitWithUsageError(err?.message ?? msg))
  .help()
  .parseAsync()
  // .fail() normally has it; a rejection that still gets here is one line too.
  .catch((err: unknown) => exitWithUsageError(err instanceof Error ? err.message : String(err)))
