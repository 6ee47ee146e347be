import { checkFileName, InvalidFileNameError } from '../messages/index.js'

export type Command =
  | { kind: 'send', name: string }
  | { kind: 'download', name: string }
  | { kind: 'exit' }
  | { kind: 'help' }
  | { kind: 'status' }
  | { kind: 'empty' }
  | { kind: 'invalid', message: string }

export const HELP_TEXT = [
  'commands:',
  '  torrent -setMode send <file>       share a file from this node\'s folder',
  '  torrent -setMode download <file>   download a file from the swarm into this node\'s folder',
  '  torrent -setMode exit              leave the swarm and stop this node',
  '  status                             files shared, downloads in progress, peers known',
  '  help                               this text',
  'file names with spaces can be quoted: torrent -setMode send "my file.txt"'
].join('\n')

/** Splits a line into words; single or double quotes group words, and a quote must be closed. */
export function tokenize (line: string): string[] | { error: string } {
  const out: string[] = []
  let cur = ''
  let quote: string | undefined
  let inWord = false
  for (const ch of line) {
    if (quote !== undefined) {
      if (ch === quote) quote = undefined
      else cur += ch
    } else if (ch === '"' || ch === "'") {
      quote = ch
      inWord = true
    } else if (/\s/.test(ch)) {
      if (inWord) out.push(cur)
      cur = ''
      inWord = false
    } else {
      cur += ch
      inWord = true
    }
  }
  if (quote !== undefined) return { error: `unclosed ${quote} quote` }
  if (inWord) out.push(cur)
  return out
}

/** Parses one REPL line. Never throws: anything unusable becomes an 'invalid' command with a one-line reason. */
export function parseCommand (line: string): Command {
  const words = tokenize(line.trim())
  if (!Array.isArray(words)) return { kind: 'invalid', message: words.error }
  if (words.length === 0) return { kind: 'empty' }
  const [head, ...rest] = words as [string, ...string[]]
  switch (head.toLowerCase()) {
    case 'help':
    case '?':
      return { kind: 'help' }
    case 'status':
      return { kind: 'status' }
    case 'exit':
    case 'quit':
      return { kind: 'exit' }
    case 'torrent':
      return parseTorrent(rest)
    default:
      return { kind: 'invalid', message: `unknown command "${head}"; type help` }
  }
}

function parseTorrent (words: string[]): Command {
  const [flag, mode, ...nameWords] = words
  if (flag === undefined || !/^--?setmode$/i.test(flag)) return { kind: 'invalid', message: 'usage: torrent -setMode send|download|exit [file]' }
  switch (mode?.toLowerCase()) {
    case 'exit':
      return nameWords.length === 0 ? { kind: 'exit' } : { kind: 'invalid', message: 'torrent -setMode exit takes no file' }
    case 'send':
    case 'download': {
      if (nameWords.length === 0) return { kind: 'invalid', message: `torrent -setMode ${mode.toLowerCase()} needs a file name` }
      try {
        const name = checkFileName(nameWords.join(' '))
        return { kind: mode.toLowerCase() as 'send' | 'download', name }
      } catch (err) {
        if (err instanceof InvalidFileNameError) return { kind: 'invalid', message: `refused: ${err.message}` }
        throw err
      }
    }
    default:
      return { kind: 'invalid', message: `unknown mode "${mode ?? ''}"; use send, download or exit` }
  }
}
