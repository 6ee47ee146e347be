import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { CONFIG_FILE_NAME, ConfigFileError, loadConfigFile, validateConfig } from '../../src/config-file.js'

const dirs: string[] = []
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

describe('validateConfig', () => {
  it('gives each command the top-level keys it has, and its own section over them', () => {
    const c = validateConfig({ port: 7000, 'log-level': 'debug', 'max-owners': 4, tracker: { port: 6970 }, node: { tracker: '10.0.0.5:6970', 'upload-limit': '5MB/s' } }, 'f.json')
    expect(c.values.tracker).toEqual({ port: 6970, 'log-level': 'debug', 'max-owners': 4 })
    expect(c.values.node).toEqual({ port: 7000, 'log-level': 'debug', tracker: '10.0.0.5:6970', 'upload-limit': '5MB/s' })
  })

  it('reads a top-level "tracker" string as the node flag, an object as the tracker section', () => {
    expect(validateConfig({ tracker: 'h:1' }, 'f').values).toEqual({ tracker: {}, node: { tracker: 'h:1' } })
    expect(validateConfig({ tracker: {} }, 'f').values).toEqual({ tracker: {}, node: {} })
  })

  it.each([
    [{ nope: 1 }, 'config file f.json: unknown key "nope"'],
    [{ home: '/x' }, 'config file f.json: unknown key "home"'],
    [{ extends: './other.json' }, 'config file f.json: unknown key "extends"'],
    [{ port: 70000 }, 'config file f.json: "port" must be a whole number 0..65535, got 70000'],
    [{ port: '7000' }, 'config file f.json: "port" must be a whole number 0..65535, got "7000"'],
    [{ heartbeat: 0 }, 'config file f.json: "heartbeat" must be a positive number, got 0'],
    [{ node: { 'exit-when-done': 'yes' } }, 'config file f.json: "node.exit-when-done" must be true or false, got "yes"'],
    [{ tracker: { tracker: 'h:1' } }, 'config file f.json: unknown key "tracker.tracker" (not a flag of udptorrent tracker)'],
    [{ node: { send: 'a.bin' } }, 'config file f.json: "node.send" must be a list of file names, got "a.bin"'],
    [null, 'config file f.json: must hold a JSON object, got null']
  ])('%j → %s', (raw, message) => {
    expect(() => validateConfig(raw, 'f.json')).toThrow(new ConfigFileError(message))
  })
})

describe('loadConfigFile', () => {
  async function dir (): Promise<string> {
    const d = await mkdtemp(path.join(os.tmpdir(), 'udptorrent-config-'))
    dirs.push(d)
    return d
  }

  it('finds <home>/udptorrent.config.json by --home, --home=, or the environment; none is fine', async () => {
    const d = await dir()
    expect(loadConfigFile(['node', '--home', d], {}, '/')).toBeUndefined()
    await writeFile(path.join(d, CONFIG_FILE_NAME), '{"port": 1}')
    expect(loadConfigFile(['node', '--home', d], {}, '/')?.values.node).toEqual({ port: 1 })
    expect(loadConfigFile(['node', `--home=${d}`], {}, '/')?.path).toBe(path.join(d, CONFIG_FILE_NAME))
    expect(loadConfigFile(['node'], { UDPTORRENT_HOME: d }, '/')?.path).toBe(path.join(d, CONFIG_FILE_NAME))
    expect(loadConfigFile(['node'], {}, d)?.path).toBe(path.join(d, CONFIG_FILE_NAME))
    // After "--" nothing is a flag.
    expect(loadConfigFile(['node', '--', '--home', d], {}, '/')).toBeUndefined()
  })

  it('--config (or UDPTORRENT_CONFIG) names the file, which must exist', async () => {
    const d = await dir()
    const f = path.join(d, 'mine.json')
    await writeFile(f, '{"node": {"id": 4}}')
    expect(loadConfigFile(['node', '--config', 'mine.json'], {}, d)?.values.node).toEqual({ id: 4 })
    expect(loadConfigFile(['node'], { UDPTORRENT_CONFIG: f }, '/')?.values.node).toEqual({ id: 4 })
    expect(() => loadConfigFile(['node', '--config', 'missing.json'], {}, d)).toThrow(/config file .*missing\.json: cannot read it: ENOENT/)
  })
})
