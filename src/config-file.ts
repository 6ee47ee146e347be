import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { HOME_ENV_VAR, MAX_DATAGRAM_BYTES, MAX_PIECE_SIZE, MAX_UPLOAD_SLOTS, MIN_PIECE_SIZE } from '../configs.js'
import { MIN_DATAGRAM_BYTES } from './messages/index.js'
import { parseByteRate } from './transport/impairment.js'

/**
 * The optional config file: JSON whose keys are flag names (as typed on the command line, without
 * the dashes). Its values replace the defaults of configs.ts; environment variables
 * (UDPTORRENT_<FLAG>) and flags replace its values (precedence: flag > env > file > default).
 *
 *   {
 *     "log-level": "debug",                     top level: for every command that has the flag
 *     "tracker": { "port": 7000, "max-owners": 8 },       only for `udptorrent tracker`
 *     "node": { "tracker": "10.0.0.5:7000", "upload-limit": "5MB/s" }   only for `udptorrent node`
 *   }
 *
 * It is `<home>/udptorrent.config.json` when that exists, or the file named by --config (or
 * UDPTORRENT_CONFIG), which must exist. Every key and value is checked: an unknown key, a value of
 * the wrong type or out of range is an error naming the file, the key and the problem.
 */
export const CONFIG_FILE_NAME = 'udptorrent.config.json'
export const CONFIG_ENV_VAR = 'UDPTORRENT_CONFIG'

export type CommandName = 'tracker' | 'node'

/** A config file that cannot be used; its message is one line naming the file, the key and the problem. */
export class ConfigFileError extends Error {
  override readonly name = 'ConfigFileError'
}

/** Returns a description of what is wrong with the value, or undefined when it is fine. */
type Check = (v: unknown) => string | undefined

const show = (v: unknown): string => JSON.stringify(v) ?? String(v)
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v)

const text: Check = (v) => typeof v === 'string' && v.trim() !== '' ? undefined : `must be a non-empty string, got ${show(v)}`
const bool: Check = (v) => typeof v === 'boolean' ? undefined : `must be true or false, got ${show(v)}`
const int = (min: number, max: number): Check => (v) => isInt(v) && v >= min && v <= max ? undefined : `must be a whole number ${min}..${max}, got ${show(v)}`
const positive: Check = (v) => typeof v === 'number' && Number.isFinite(v) && v > 0 ? undefined : `must be a positive number, got ${show(v)}`
const oneOf = (choices: readonly string[]): Check => (v) => typeof v === 'string' && choices.includes(v) ? undefined : `must be one of ${choices.join(', ')}, got ${show(v)}`
const names: Check = (v) => Array.isArray(v) && v.every((x) => typeof x === 'string') ? undefined : `must be a list of file names, got ${show(v)}`
const hostPort: Check = (v) => {
  const m = typeof v === 'string' ? /^\[?([^\]]+?)\]?:(\d+)$/.exec(v.trim()) : null
  const port = m === null ? NaN : Number(m[2])
  return port > 0 && port < 65536 ? undefined : `must be "host:port", got ${show(v)}`
}
const rate: Check = (v) => {
  if (typeof v !== 'string') return `must be a rate such as "5MB/s", got ${show(v)}`
  try {
    parseByteRate(v)
    return undefined
  } catch (err) {
    return `must be a rate such as "5MB/s": ${(err as Error).message}`
  }
}
const port = int(0, 65535)

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const

/** Every key a config file may set, per command. A flag missing here cannot come from the file. */
const COMMON: Record<string, Check> = {
  host: text,
  heartbeat: positive,
  'log-level': oneOf(LOG_LEVELS)
}
export const CONFIG_KEYS: Record<CommandName, Record<string, Check>> = {
  tracker: {
    ...COMMON,
    port,
    'max-owners': int(1, 255),
    http: port,
    'http-host': text
  },
  node: {
    ...COMMON,
    id: int(0, 0xffffffff),
    tracker: hostPort,
    port,
    send: names,
    download: names,
    'exit-when-done': bool,
    'owner-timeout': positive,
    'upload-limit': rate,
    'download-limit': rate,
    'max-datagram-bytes': int(MIN_DATAGRAM_BYTES, MAX_DATAGRAM_BYTES),
    'progress-interval': int(1, 3_600_000),
    json: bool,
    share: bool,
    'direct-io': bool,
    'udp-gso': bool,
    'recv-batch': bool,
    'super-seed': bool,
    'piece-size': int(MIN_PIECE_SIZE, MAX_PIECE_SIZE),
    'upload-slots': int(1, MAX_UPLOAD_SLOTS)
  }
}

const COMMANDS = Object.keys(CONFIG_KEYS) as CommandName[]

export interface ConfigFile {
  path: string
  /** Validated values for each command: the top level merged with the command's section. */
  values: Record<CommandName, Record<string, unknown>>
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Checks a parsed config object; throws ConfigFileError for the first problem found. */
export function validateConfig (raw: unknown, file: string): ConfigFile {
  const fail = (problem: string): never => { throw new ConfigFileError(`config file ${file}: ${problem}`) }
  if (!isPlainObject(raw)) fail(`must hold a JSON object, got ${show(raw)}`)
  const top = raw as Record<string, unknown>
  const values = { tracker: {}, node: {} } as Record<CommandName, Record<string, unknown>>
  const anyKnows = (key: string): boolean => COMMANDS.some((c) => key in (CONFIG_KEYS[c] as object))
  for (const [key, value] of Object.entries(top)) {
    if ((COMMANDS as string[]).includes(key) && isPlainObject(value)) continue // a section; below
    if (!anyKnows(key)) fail(`unknown key "${key}"`)
    for (const c of COMMANDS) {
      const check = CONFIG_KEYS[c][key]
      if (check === undefined) continue
      const problem = check(value)
      if (problem !== undefined) fail(`"${key}" ${problem}`)
      values[c][key] = value
    }
  }
  for (const c of COMMANDS) {
    const section = top[c]
    if (!isPlainObject(section)) continue
    for (const [key, value] of Object.entries(section)) {
      const check = CONFIG_KEYS[c][key]
      if (check === undefined) fail(`unknown key "${c}.${key}" (not a flag of udptorrent ${c})`)
      const problem = (check as Check)(value)
      if (problem !== undefined) fail(`"${c}.${key}" ${problem}`)
      values[c][key] = value
    }
  }
  return { path: file, values }
}

/** Reads and checks a config file. */
export function readConfigFile (file: string): ConfigFile {
  let textContent: string
  try {
    textContent = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigFileError(`config file ${file}: cannot read it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  let raw: unknown
  try {
    raw = JSON.parse(textContent)
  } catch (err) {
    throw new ConfigFileError(`config file ${file}: not valid JSON: ${(err as Error).message.split('\n')[0] ?? ''}`)
  }
  return validateConfig(raw, file)
}

/** The value of `--name X`, `--name=X` (last one wins) in argv, before any `--`. */
function flagValue (argv: readonly string[], name: string): string | undefined {
  let found: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    if (a === '--') break
    if (a === `--${name}`) found = argv[i + 1]
    else if (a.startsWith(`--${name}=`)) found = a.slice(name.length + 3)
  }
  return found
}

/**
 * Finds and reads the config file before the command line is parsed (its values must be known to
 * the parser to take their place between environment and defaults): --config (or
 * UDPTORRENT_CONFIG), which must exist, else <home>/udptorrent.config.json if it exists.
 */
export function loadConfigFile (argv: readonly string[], env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): ConfigFile | undefined {
  const explicit = flagValue(argv, 'config') ?? env[CONFIG_ENV_VAR]
  if (explicit !== undefined) return readConfigFile(path.resolve(cwd, explicit))
  const home = path.resolve(cwd, flagValue(argv, 'home') ?? env[HOME_ENV_VAR] ?? '.')
  const candidate = path.join(home, CONFIG_FILE_NAME)
  return existsSync(candidate) ? readConfigFile(candidate) : undefined
}
