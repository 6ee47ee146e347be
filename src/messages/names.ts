import { MAX_FILE_NAME_BYTES, NODE_STATE_DIR, PART_SUFFIX } from '../../configs.js'
import { InvalidFileNameError } from './errors.js'

/**
 * The single rule for file names, applied at the REPL and on the wire alike. A name is one path
 * component inside the node's folder: no separators, no `..`, no NUL or control characters, and
 * no leading dot (which keeps the node's own `.udptorrent` state folder and dotfiles unreachable).
 * Names are NFC-normalised so that the same visible name maps to one file.
 * Returns the normalised name or throws InvalidFileNameError with the reason.
 */
export function checkFileName (raw: string): string {
  if (raw.length === 0) throw new InvalidFileNameError('file name is empty')
  const name = raw.normalize('NFC')
  const bytes = Buffer.byteLength(name, 'utf8')
  if (bytes > MAX_FILE_NAME_BYTES) {
    throw new InvalidFileNameError(`file name is ${bytes} bytes; the limit is ${MAX_FILE_NAME_BYTES}`)
  }
  if (name.includes('/') || name.includes('\\')) throw new InvalidFileNameError('file name must not contain / or \\')
  if (name.includes('..')) throw new InvalidFileNameError('file name must not contain ..')
  // A lone surrogate has no UTF-8 form: the name could not survive the wire unchanged.
  if (!name.isWellFormed()) throw new InvalidFileNameError('file name is not valid Unicode')
  // C0 and C1 controls (U+009B starts terminal escape sequences) and the invisible U+FEFF.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f\ufeff]/.test(name)) throw new InvalidFileNameError('file name must not contain NUL, control or invisible characters')
  if (name.startsWith('.')) throw new InvalidFileNameError('file name must not start with a dot')
  // Case-folded: on a case-insensitive disk "x.PART" would collide with the unfinished download of "x".
  if (name === NODE_STATE_DIR || name.toLowerCase().endsWith(PART_SUFFIX)) {
    throw new InvalidFileNameError(`file name must not end with ${PART_SUFFIX}: that suffix marks unfinished downloads`)
  }
  return name
}

export function isValidFileName (raw: string): boolean {
  try {
    checkFileName(raw)
    return true
  } catch {
    return false
  }
}

/**
 * Whether two different names are equal but for case. Names stay case-sensitive on the wire, but
 * on a disk that folds case both would be one file, so a node never keeps both.
 */
export function differsOnlyInCase (a: string, b: string): boolean {
  return a !== b && a.toLowerCase() === b.toLowerCase()
}
