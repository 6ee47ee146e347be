import path from 'node:path'
import { HOME_ENV_VAR, LOGS_DIR, NODE_FILES_DIR, TRACKER_DB_DIR } from '../configs.js'

/** The folder holding node_files/, tracker_db/ and logs/: the flag, else the environment, else cwd. */
export function resolveHome (flag?: string): string {
  return path.resolve(flag ?? process.env[HOME_ENV_VAR] ?? process.cwd())
}

export const nodeFilesDir = (home: string, nodeId: number): string => path.join(home, NODE_FILES_DIR, `node${nodeId}`)
export const trackerDbDir = (home: string): string => path.join(home, TRACKER_DB_DIR)
export const logsDir = (home: string): string => path.join(home, LOGS_DIR)
