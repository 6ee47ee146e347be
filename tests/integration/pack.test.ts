import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

describe('npm package', () => {
  // Builds, packs, installs the tarball into a temporary prefix (dependencies from the npm
  // registry) and runs the installed bin: --help, a tracker, a node sharing and another downloading.
  it('npm pack yields a package that installs with npm install -g and runs', async () => {
    const child = spawn('bash', [path.join(ROOT, 'scripts/pack-check.sh')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (d: Buffer) => { output += d.toString() })
    child.stderr.on('data', (d: Buffer) => { output += d.toString() })
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
    expect(code, output).toBe(0)
    expect(output).toMatch(/^pack-check: OK$/m)
    const size = /udptorrent-[\d.]+\.tgz: (\d+) files, (\d+) KB/.exec(output)
    expect(size, output).not.toBeNull()
    // Small: compiled sources only, no maps, tests or scripts.
    expect(Number(size?.[2])).toBeLessThan(500)
  }, 180_000)
})
