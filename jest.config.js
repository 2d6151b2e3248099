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
  // Each real-stack test file brings up its own stack; the suite mostly waits on etcd, Kubernetes and timers (~80 %
  // idle on 2 cores one file at a time), so two files run at once. KEC_TEST_WORKERS=1: one at a time.
  maxWorkers: Number(process.env.KEC_TEST_WORKERS ?? 2),
};
