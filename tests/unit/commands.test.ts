import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { HELP_TEXT, parseCommand, tokenize, type Command } from '../../src/node/commands.js'

function expectInvalid (line: string, messagePart?: string | RegExp): void {
  const c = parseCommand(line)
  expect(c.kind, JSON.stringify(line)).toBe('invalid')
  const message = (c as Extract<Command, { kind: 'invalid' }>).message
  expect(typeof message).toBe('string')
  expect(message.length).toBeGreaterThan(0)
  expect(message).not.toContain('\n')
  if (messagePart !== undefined) expect(message).toMatch(messagePart)
}

describe('tokenize', () => {
  it('splits on any whitespace and drops empty runs', () => {
    expect(tokenize('a b\tc\n d   ')).toEqual(['a', 'b', 'c', 'd'])
    expect(tokenize('')).toEqual([])
    expect(tokenize('   ')).toEqual([])
  })

  it('double and single quotes group words and are removed', () => {
    expect(tokenize('send "my file.txt"')).toEqual(['send', 'my file.txt'])
    expect(tokenize("send 'my  file.txt' x")).toEqual(['send', 'my  file.txt', 'x'])
  })

  it('a quote inside a word joins with its neighbours', () => {
    expect(tokenize('ab"c d"e f')).toEqual(['abc de', 'f'])
  })

  it('the other quote character is literal inside quotes', () => {
    expect(tokenize('"it\'s here"')).toEqual(["it's here"])
    expect(tokenize('\'say "hi"\'')).toEqual(['say "hi"'])
  })

  it('empty quotes make an empty word', () => {
    expect(tokenize('a "" b')).toEqual(['a', '', 'b'])
    expect(tokenize("''")).toEqual([''])
  })

  it('an unclosed quote is an error naming the quote', () => {
    const dq = tokenize('send "my file.txt')
    expect(Array.isArray(dq)).toBe(false)
    expect((dq as { error: string }).error).toContain('"')
    const sq = tokenize("send 'x")
    expect(Array.isArray(sq)).toBe(false)
    expect((sq as { error: string }).error).toContain("'")
    expect(Array.isArray(tokenize('"'))).toBe(false)
  })
})

describe('parseCommand', () => {
  it('empty and blank lines are empty', () => {
    expect(parseCommand('')).toEqual({ kind: 'empty' })
    expect(parseCommand('   ')).toEqual({ kind: 'empty' })
    expect(parseCommand('\t \n')).toEqual({ kind: 'empty' })
  })

  it('help, status and exit (with aliases, any case, surrounding blanks)', () => {
    expect(parseCommand('help')).toEqual({ kind: 'help' })
    expect(parseCommand('?')).toEqual({ kind: 'help' })
    expect(parseCommand('  HELP  ')).toEqual({ kind: 'help' })
    expect(parseCommand('status')).toEqual({ kind: 'status' })
    expect(parseCommand('Status')).toEqual({ kind: 'status' })
    expect(parseCommand('exit')).toEqual({ kind: 'exit' })
    expect(parseCommand('quit')).toEqual({ kind: 'exit' })
  })

  it('torrent -setMode send a.txt', () => {
    expect(parseCommand('torrent -setMode send a.txt')).toEqual({ kind: 'send', name: 'a.txt' })
  })

  it('torrent -setMode download a.txt', () => {
    expect(parseCommand('torrent -setMode download a.txt')).toEqual({ kind: 'download', name: 'a.txt' })
  })

  it('--setmode and any case of the flag, command and mode work', () => {
    expect(parseCommand('torrent --setmode send a.txt')).toEqual({ kind: 'send', name: 'a.txt' })
    expect(parseCommand('torrent -SETMODE Download b.bin')).toEqual({ kind: 'download', name: 'b.bin' })
    expect(parseCommand('TORRENT -setMode SEND c')).toEqual({ kind: 'send', name: 'c' })
    expect(parseCommand('torrent -setmode EXIT')).toEqual({ kind: 'exit' })
  })

  it('the file name keeps its case', () => {
    expect(parseCommand('torrent -setMode send ReadMe.TXT')).toEqual({ kind: 'send', name: 'ReadMe.TXT' })
  })

  it('a quoted name keeps its spaces', () => {
    expect(parseCommand('torrent -setMode download "my file.txt"')).toEqual({ kind: 'download', name: 'my file.txt' })
    expect(parseCommand("torrent -setMode send 'two  spaces.txt'")).toEqual({ kind: 'send', name: 'two  spaces.txt' })
  })

  it('unquoted words after the mode are joined with one space', () => {
    expect(parseCommand('torrent -setMode send my file.txt')).toEqual({ kind: 'send', name: 'my file.txt' })
  })

  it('torrent -setMode exit leaves the swarm', () => {
    expect(parseCommand('torrent -setMode exit')).toEqual({ kind: 'exit' })
  })

  it('the name is NFC-normalised', () => {
    const decomposed = 'cafe\u0301.txt'
    expect(parseCommand(`torrent -setMode send ${decomposed}`)).toEqual({ kind: 'send', name: 'caf\u00e9.txt' })
  })

  it('invalid: missing file name', () => {
    expectInvalid('torrent -setMode send', /needs a file name/)
    expectInvalid('torrent -setMode download   ', /needs a file name/)
  })

  it('invalid: missing or wrong flag', () => {
    expectInvalid('torrent', /usage/)
    expectInvalid('torrent send a.txt', /usage/)
    expectInvalid('torrent -mode send a.txt', /usage/)
    expectInvalid('torrent ---setMode send a.txt', /usage/)
  })

  it('invalid: unknown or missing mode', () => {
    expectInvalid('torrent -setMode upload a.txt', /unknown mode "upload"/)
    expectInvalid('torrent -setMode', /unknown mode/)
  })

  it('invalid: unknown command', () => {
    expectInvalid('download a.txt', /unknown command "download"/)
    expectInvalid('foo', /unknown command/)
  })

  it('invalid: exit takes no file', () => {
    expectInvalid('torrent -setMode exit extra', /no file/)
  })

  it('invalid: unclosed quote', () => {
    expectInvalid('torrent -setMode send "a.txt', /unclosed/)
  })

  for (const name of ['../etc/passwd', 'a/b', 'a\\b', '.hidden', 'x.part', 'X.PART', '..', '""']) {
    it(`invalid: refused file name ${name}`, () => {
      expectInvalid(`torrent -setMode send ${name}`, /refused/)
      expectInvalid(`torrent -setMode download ${name}`, /refused/)
    })
  }

  it('invalid: a name that is too long', () => {
    expectInvalid(`torrent -setMode send ${'x'.repeat(256)}`, /refused/)
    expect(parseCommand(`torrent -setMode send ${'x'.repeat(255)}`)).toEqual({ kind: 'send', name: 'x'.repeat(255) })
  })

  it('the help text mentions every command', () => {
    for (const word of ['torrent -setMode send', 'download', 'exit', 'status', 'help']) expect(HELP_TEXT).toContain(word)
  })

  it('property: never throws, and always returns a well-formed command', () => {
    const kinds = new Set(['send', 'download', 'exit', 'help', 'status', 'empty', 'invalid'])
    const word = fc.oneof(
      fc.constantFrom('torrent', '-setMode', '--setmode', 'send', 'download', 'exit', 'help', 'status', '"', "'", '..', '/', '.part', ' ', '\t'),
      fc.string({ unit: 'binary', maxLength: 12 }),
      fc.string({ maxLength: 12 })
    )
    const line = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.string({ unit: 'grapheme', maxLength: 60 }),
      fc.array(word, { maxLength: 8 }).map((ws) => ws.join(' ')),
      fc.tuple(fc.constantFrom('send', 'download'), fc.string({ unit: 'binary', maxLength: 300 })).map(([m, n]) => `torrent -setMode ${m} ${n}`),
      // lone surrogates
      fc.array(fc.integer({ min: 0xd800, max: 0xdfff }), { maxLength: 4 }).map((cs) => `torrent -setMode send a${String.fromCharCode(...cs)}`)
    )
    fc.assert(fc.property(line, (l) => {
      let c: Command | undefined
      expect(() => { c = parseCommand(l) }).not.toThrow()
      const cmd = c as Command
      expect(kinds.has(cmd.kind)).toBe(true)
      if (cmd.kind === 'invalid') expect(cmd.message.length).toBeGreaterThan(0)
      if (cmd.kind === 'send' || cmd.kind === 'download') {
        expect(cmd.name.length).toBeGreaterThan(0)
        expect(cmd.name).not.toMatch(/[/\\]/)
        expect(cmd.name.startsWith('.')).toBe(false)
        expect(cmd.name.includes('..')).toBe(false)
        expect(cmd.name.toLowerCase().endsWith('.part')).toBe(false)
      }
    }), { numRuns: 1000 })
  })
})
