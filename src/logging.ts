import path from 'node:path'
import { pino, type Logger } from 'pino'
import { logsDir } from './paths.js'

export type { Logger } from 'pino'

/**
 * One JSON log file per process, logs/<name>.log. Console output for people is separate
 * (src/node/console-ui.ts); nothing here writes to stdout.
 */
export function createFileLogger (home: string, name: string, level = 'info'): Logger {
  const dest = pino.destination({ dest: path.join(logsDir(home), `${name}.log`), mkdir: true, sync: false })
  return pino({ level, base: { proc: name, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, dest)
}

/** Writes out what the async destination still buffers; call before process exit. */
export function flushLogger (logger: Logger): void {
  try {
    logger.flush()
  } catch {
    // Flushing a closed destination at exit is harmless.
  }
}
