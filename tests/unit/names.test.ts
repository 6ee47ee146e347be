import { Buffer } from 'node:buffer'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MAX_FILE_NAME_BYTES, NODE_STATE_DIR, PART_SUFFIX } from '../../configs.js'
import { InvalidFileNameError, checkFileName, isValidFileName } from '../../src/messages/index.js'

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8')

/** What checkFileName threw (undefined when it returned). */
function thrown (raw: string): unknown {
  try {
    checkFileName(raw)
  } catch (err) {
    return err
  }
  return undefined
}

function expectRefused (raw: string): void {
  const err = thrown(raw)
  expect(err, JSON.stringify(raw)).toBeInstanceOf(InvalidFileNameError)
  expect((err as Error).name).toBe('InvalidFileNameError')
  expect((err as Error).message.length).toBeGreaterThan(0)
  expect(isValidFileName(raw)).toBe(false)
}

function expectAccepted (raw: string, normalised = raw): void {
  expect(checkFileName(raw)).toBe(normalised)
  expect(isValidFileName(raw)).toBe(true)
}

describe('checkFileName accepts ordinary names', () => {
  it.each([
    'report.pdf', 'a b.txt', 'données.bin', 'README', 'x', '文件.txt', 'emoji 😀.png', 'x.part.txt', 'a.b.c',
    'name.', 'trailing space ', '-dash', 'with.dot.in.middle'
  ])('accepts %j unchanged', name => {
    expectAccepted(name)
  })

  it(`accepts a name of exactly ${MAX_FILE_NAME_BYTES} UTF-8 bytes`, () => {
    const ascii = 'a'.repeat(MAX_FILE_NAME_BYTES)
    expectAccepted(ascii)
    const cjk = '文'.repeat(MAX_FILE_NAME_BYTES / 3) // 85 chars, 3 bytes each
    expect(bytes(cjk)).toBe(MAX_FILE_NAME_BYTES)
    expectAccepted(cjk)
    const mixed = 'é'.repeat(127) + 'a'
    expect(bytes(mixed)).toBe(MAX_FILE_NAME_BYTES)
    expectAccepted(mixed)
  })
})

describe('checkFileName refuses dangerous or unrepresentable names', () => {
  it.each([
    ['empty', ''],
    ['a lone slash', '/'],
    ['a separator', 'a/b'],
    ['a backslash', 'a\\b'],
    ['dot-dot', '..'],
    ['a traversal', '../etc/passwd'],
    ['a Windows traversal', '..\\windows'],
    ['an absolute path', '/etc/passwd'],
    ['dot-dot inside', 'x..y'],
    ['dot-dot at the end', 'x..'],
    ['NUL', 'a\u0000b'],
    ['a lone NUL', '\u0000'],
    ['a leading dot', '.hidden'],
    ['a lone dot', '.'],
    ['the state folder', NODE_STATE_DIR],
    ['the .part suffix', 'movie.mkv' + PART_SUFFIX],
    ['only the suffix', PART_SUFFIX]
  ])('refuses %s (%j)', (_label, raw) => {
    expectRefused(raw)
  })

  it.each([
    '\u0001', '\t', '\n', '\r', '\u001b', '\u001f', '\u007f'
  ])('refuses the control character %j anywhere in the name', ch => {
    expectRefused(`a${ch}b`)
    expectRefused(`${ch}ab`)
    expectRefused(`ab${ch}`)
  })

  it(`refuses a name of ${MAX_FILE_NAME_BYTES + 1} bytes`, () => {
    expectRefused('a'.repeat(MAX_FILE_NAME_BYTES + 1))
    expectRefused('a'.repeat(1000))
  })

  it('counts UTF-8 bytes, not characters', () => {
    const cjk = '文'.repeat(86) // 86 chars, 258 bytes
    expect(cjk.length).toBeLessThan(MAX_FILE_NAME_BYTES)
    expect(bytes(cjk)).toBeGreaterThan(MAX_FILE_NAME_BYTES)
    expectRefused(cjk)
    const emoji = '😀'.repeat(64) // 128 UTF-16 units, 256 bytes
    expect(bytes(emoji)).toBe(MAX_FILE_NAME_BYTES + 1)
    expectRefused(emoji)
    expectAccepted('😀'.repeat(63) + 'abc')
  })

  it('refuses names whose NFC form would be forbidden', () => {
    // U+FF0F FULLWIDTH SOLIDUS is not changed by NFC and is therefore not a separator, but
    // a combining sequence never hides a forbidden character from the check.
    expectAccepted('a\uff0fb')
    expectRefused('.\u0301') // NFC keeps the leading dot
  })
})

describe('NFC normalisation', () => {
  it('normalises a decomposed é to the precomposed form', () => {
    expect('e\u0301').not.toBe('\u00e9')
    expectAccepted('e\u0301', '\u00e9')
    expectAccepted('cafe\u0301.txt', 'caf\u00e9.txt')
    expectAccepted('\u212b', '\u00c5') // ANGSTROM SIGN → LATIN CAPITAL A WITH RING
  })

  it('applies the byte limit to the normalised name', () => {
    const decomposed = 'e\u0301'.repeat(100) // 300 bytes raw, 200 bytes in NFC
    expect(bytes(decomposed)).toBeGreaterThan(MAX_FILE_NAME_BYTES)
    expectAccepted(decomposed, '\u00e9'.repeat(100))
    expectRefused('e\u0301'.repeat(128)) // 256 bytes even in NFC
  })
})

describe('checkFileName properties', () => {
  const tokenString = fc.array(
    fc.constantFrom('a', 'B', '7', ' ', '.', '..', '/', '\\', '\u0000', '\u001f', '\u007f', 'é', 'e', '\u0301', '文', '😀', PART_SUFFIX, '\uD800', '\uDC00'),
    { maxLength: 40 }
  ).map(a => a.join(''))
  const anyString = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.string({ unit: 'grapheme', maxLength: 100 }),
    fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map(c => String.fromCharCode(c)), maxLength: 300 }),
    tokenString
  )

  it('for any string: throws InvalidFileNameError, or returns a safe, NFC, bounded name', () => {
    fc.assert(fc.property(anyString, raw => {
      let out: string
      try {
        out = checkFileName(raw)
      } catch (err) {
        expect(err).toBeInstanceOf(InvalidFileNameError)
        expect(isValidFileName(raw)).toBe(false)
        return
      }
      expect(isValidFileName(raw)).toBe(true)
      expect(out).toBe(raw.normalize('NFC'))
      expect(out.normalize('NFC')).toBe(out)
      expect(out.length).toBeGreaterThan(0)
      expect(out).not.toContain('/')
      expect(out).not.toContain('\\')
      expect(out).not.toContain('\u0000')
      expect(out).not.toContain('..')
      expect(out).not.toMatch(/[\u0000-\u001f\u007f]/)
      expect(out.startsWith('.')).toBe(false)
      expect(out.endsWith(PART_SUFFIX)).toBe(false)
      expect(bytes(out)).toBeLessThanOrEqual(MAX_FILE_NAME_BYTES)
      expect(checkFileName(out)).toBe(out) // idempotent
    }), { numRuns: 3000 })
  })

  it('accepts every name built from a safe alphabet that avoids the forbidden patterns', () => {
    const safe = fc.array(fc.constantFrom('a', 'Z', '0', ' ', '-', '_', '.', 'é', '文', '😀', '(', ')'), { minLength: 1, maxLength: 80 })
      .map(a => a.join(''))
      .filter(s => !s.startsWith('.') && !s.includes('..') && !s.endsWith(PART_SUFFIX) && bytes(s) <= MAX_FILE_NAME_BYTES)
    fc.assert(fc.property(safe, name => {
      expect(checkFileName(name)).toBe(name)
      expect(isValidFileName(name)).toBe(true)
    }), { numRuns: 1000 })
  })
})

describe('edge cases that were defects', () => {
  /** An unpaired surrogate cannot be encoded as UTF-8 (it becomes U+FFFD), so the name is not representable. */
  it('formerly broken: accepts a name containing an unpaired UTF-16 surrogate', () => {
    expectRefused('a\uD800b')
  })

  /** The doc comment promises "no NUL or control characters"; C1 controls (U+0080..U+009F) pass. */
  it('formerly broken: accepts C1 control characters (e.g. U+0085 NEL, U+009B CSI)', () => {
    expectRefused('a\u0085b')
    expectRefused('a\u009b31mb')
  })
})
