import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // Integration tests start real processes; the machine has 2 cores, so keep files few at a time.
    maxConcurrency: 2,
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 30_000,
    reporters: process.env.CI === 'true' ? ['verbose'] : ['default']
  }
})
