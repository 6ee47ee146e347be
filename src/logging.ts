import { createRequire } from 'node:module'
import path from 'node:path'
import { pino, type DestinationStream, type Level, type Logger } from 'pino'
import { logsDir } from './paths.js'

export type { Logger } from 'pino'

/** Where pretty console log records go: text with its line end, already formatted. */
export type ConsoleLogSink = (text: string) => void

export interface LoggerOptions {
  /**
   * Level of the pretty console copy: a level, or false for none. Default: see
   * setConsoleLogLevel (warn, or the level chosen explicitly), and none unless stderr is a TTY.
   */
  consoleLevel?: string | false
  /** Receives the pretty records (default: written to stderr). The node's console UI passes one that
   *  draws them above its progress bars. */
  consoleSink?: ConsoleLogSink
}

/**
 * Log routing (one rule for the tracker and the node):
 *
 * - The JSON file logs/<name>.log always gets every record at the chosen level (`--log-level`,
 *   default info). This is the record of what happened; tests and tools read it.
 * - When stderr is a TTY, records are also pretty-printed (pino-pretty) to stderr, but only at
 *   warn and above, unless a level was chosen explicitly (flag, environment or config file), in
 *   which case that level applies to the console too. The console is for people and carries the
 *   node's progress bars and prompt: routine info records would flood them.
 * - Without a TTY the console gets no log records at all (stdout carries the node's plain progress
 *   lines or, with --json, nothing but JSON events; stderr carries only error messages).
 * - Nothing here ever writes to stdout.
 */
let defaultConsoleLevel: string = 'warn'

/** Called by the CLI once flags are parsed: the explicitly chosen level, or undefined for the default. */
export function setConsoleLogLevel (explicitLevel: string | undefined): void {
  defaultConsoleLevel = explicitLevel ?? 'warn'
}

const fileDestinations = new WeakMap<Logger, { flush: () => void }>()

export function createFileLogger (home: string, name: string, level = 'info', options: LoggerOptions = {}): Logger {
  const dest = pino.destination({ dest: path.join(logsDir(home), `${name}.log`), mkdir: true, sync: false })
  const base = { level, base: { proc: name, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }
  const consoleLevel = options.consoleLevel ?? (process.stderr.isTTY === true ? defaultConsoleLevel : false)
  let logger: Logger
  if (consoleLevel === false || consoleLevel === 'silent') {
    logger = pino(base, dest)
  } else {
    const sink = options.consoleSink ?? ((text: string) => { process.stderr.write(text) })
    const streams = [{ stream: prettyStream(sink), level: consoleLevel as Level }]
    if (level !== 'silent') streams.push({ stream: dest as DestinationStream, level: level as Level })
    // The logger passes a record on when either stream wants it; each stream filters by its own level.
    const lowest = pino.levels.values[level] === undefined ? consoleLevel : minLevel(level, consoleLevel)
    logger = pino({ ...base, level: lowest }, pino.multistream(streams))
  }
  fileDestinations.set(logger, dest)
  return logger
}

function minLevel (a: string, b: string): string {
  const v = pino.levels.values
  return (v[a] ?? Infinity) <= (v[b] ?? Infinity) ? a : b
}

/** pino-pretty, loaded only when a console copy is wanted (it is not needed for the file). */
function prettyStream (sink: ConsoleLogSink): DestinationStream {
  const require = createRequire(import.meta.url)
  const { prettyFactory } = require('pino-pretty') as typeof import('pino-pretty')
  const pretty = prettyFactory({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,proc' })
  return { write: (line: string) => { sink(pretty(line)) } }
}

/** Starts writing out what the async file destination still buffers; call before process exit. */
export function flushLogger (logger: Logger): void {
  try {
    const dest = fileDestinations.get(logger)
    if (dest !== undefined) dest.flush()
    else logger.flush()
  } catch {
    // Flushing a closed destination at exit is harmless (pino's exit hook flushes what is left).
  }
}
