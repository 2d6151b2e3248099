// The cluster workflow's own logic in seconds: Temporal's test environment (a private dev server from
// the toolchain) with stub activities standing in for Kubernetes and etcd. The real-stack tests stay
// the proof of the operations themselves; these pin workflow-level behaviour.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { bins } from '../local/toolchain.js';
import { searchKeys } from '../workflows/naming.js';
import type { Activities } from '../activities/index.js';
import type { Observation } from '../workflows/types.js';

const here = dirname(fileURLToPath(import.meta.url));
let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;
let queue = 0;

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  env = await TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: bins.temporal }, ip: '127.0.0.1', searchAttributes: Object.values(searchKeys) },
  });
  bundle = await bundleWorkflowCode({ workflowsPath: join(here, '..', 'workflows', 'index.ts'), logger: new DefaultLogger('WARN') });
}, 120000);
afterAll(async () => { await env?.teardown(); });

/** Runs fn with a worker on a fresh task queue that uses these stub activities. */
async function withWorker<T>(activities: Partial<Activities>, fn: (taskQueue: string) => Promise<T>): Promise<T> {
  const taskQueue = `wf-test-${queue++}`;
  const worker = await Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: bundle, activities });
  return worker.runUntil(fn(taskQueue));
}

const quiet = { publishStatus: async () => undefined, recordEvent: async () => undefined, recordOperationMetric: async () => undefined };

test('a cancel signal delivered at a run\'s first activation does not fail the workflow task', async () => {
  const gone: Observation = { exists: false, deleting: false, uid: '', generation: 0, pods: [], etcd: null, highestIndex: -1, observedAt: '' };
  await withWorker({ ...quiet, observeCluster: async () => gone }, async (taskQueue) => {
    // signal-with-start buffers the signal: its handler runs inside the run's first activation.
    const handle = await env.client.workflow.signalWithStart('etcdClusterWorkflow', {
      workflowId: 'default/c-cancel-first', taskQueue, args: [{ namespace: 'default', name: 'c-cancel-first' }], signal: 'cancelOperation', signalArgs: [],
    });
    const result = await Promise.race([handle.result(), new Promise((r) => setTimeout(() => r('timed out'), 20000))]);
    const failedTasks = (await handle.fetchHistory()).events?.filter((e) => e.workflowTaskFailedEventAttributes) ?? [];
    expect(failedTasks.map((e) => e.workflowTaskFailedEventAttributes?.failure?.message)).toEqual([]);
    expect(result).toBe('default/c-cancel-first is gone');
  });
}, 60000);
