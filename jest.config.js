/** Jest runs TypeScript as ESM: @kubernetes/client-node 1.x is ESM-only (see shared/notes/sdk-pitfalls.md §2.2). */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json', diagnostics: { ignoreCodes: [151001] } }],
  },
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/'],
  testTimeout: 300000,
  // Each real-stack test file brings up its own control plane; they share 2 cores, so one at a time.
  maxWorkers: 1,
};
