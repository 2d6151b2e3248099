// Test stacks: each test file gets its own real control plane, Temporal server and 3 real nodes,
// on free ports in a temporary folder, torn down in afterAll.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { LocalStack, type StackOptions } from '../../local/stack.js';
import { NodeFaults } from '../../local/real-nodes/faults.js';

export interface TestStack {
  stack: LocalStack;
  kc: KubeConfig;
  core: CoreV1Api;
  /** Faults and pod inspection on the stack's real nodes. */
  nodes: NodeFaults;
  stop(): Promise<void>;
}

export async function startTestStack(opts: Partial<StackOptions> = {}): Promise<TestStack> {
  const stateDir = mkdtempSync(join(process.env.KEC_TEST_TMP ?? tmpdir(), 'kec-test-'));
  const stack = await LocalStack.start({
    stateDir,
    ports: 'free',
    ui: false,
    nodes: 3,
    ...opts,
  });
  const kc = new KubeConfig();
  kc.loadFromFile(stack.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const faults = stack.realNodes && new NodeFaults(stack.realNodes, kc);
  const t: TestStack = {
    stack,
    kc,
    core,
    get nodes() {
      if (!faults) throw new Error('this test stack has no nodes (startTestStack({ nodes: 0 }))');
      return faults;
    },
    async stop() {
      await stack.stop();
      if (!process.env.KEC_KEEP_TEST_STATE) rmSync(stateDir, { recursive: true, force: true });
    },
  };
  return t;
}

import { sleep } from '../../local/process.js';
export { sleep };

/** Polls fn until it returns a truthy value; fails with the last value seen and what was awaited. */
export async function eventually<T>(
  what: string,
  fn: () => Promise<T | undefined | false | null>,
  timeoutMs = 60000,
  intervalMs = 500,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what} (last: ${JSON.stringify(last)})`);
}
