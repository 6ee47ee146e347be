import { createFileLogger, flushLogger } from '../logging.js'
import { startDashboard, type Dashboard } from './dashboard.js'
import { Tracker } from './tracker.js'

export interface TrackerMainInit {
  home: string
  host: string
  port: number
  heartbeatMs?: number
  maxOwners?: number
  logLevel: string
  /** Port of the HTTP dashboard; off when absent. */
  httpPort?: number
  httpHost?: string
}

/** The `udptorrent tracker` process: serve until SIGINT/SIGTERM, then write the state and exit. */
export async function runTracker (init: TrackerMainInit): Promise<void> {
  const logger = createFileLogger(init.home, 'tracker', init.logLevel)
  const tracker = await Tracker.start({
    home: init.home, host: init.host, port: init.port, heartbeatMs: init.heartbeatMs, maxOwnersReturned: init.maxOwners, logger
  })
  const { host, port } = tracker.address
  process.stdout.write(`tracker listening on ${host}:${port} (state in ${init.home}/tracker_db, log in ${init.home}/logs/tracker.log)\n`)
  let dashboard: Dashboard | undefined
  if (init.httpPort !== undefined) {
    const httpHost = init.httpHost ?? '127.0.0.1'
    try {
      dashboard = await startDashboard(tracker, { host: httpHost, port: init.httpPort, logger })
    } catch (err) {
      logger.error({ err, httpHost, httpPort: init.httpPort }, 'dashboard could not start')
      await tracker.close()
      flushLogger(logger)
      process.stderr.write(`dashboard could not listen on ${httpHost}:${init.httpPort}: ${(err as Error).message}\n`)
      process.exit(1)
    }
    process.stdout.write(`dashboard on ${dashboard.url}\n`)
  }
  let closing = false
  const shutdown = async (why: string): Promise<void> => {
    if (closing) return
    closing = true
    logger.info({ why }, 'tracker shutting down')
    await dashboard?.close()
    await tracker.close()
    flushLogger(logger)
    process.stdout.write(`tracker stopped (${why})\n`)
    process.exit(0)
  }
  process.once('SIGINT', () => { void shutdown('SIGINT') })
  process.once('SIGTERM', () => { void shutdown('SIGTERM') })
}
