// Crash injection: the worker is SIGKILLed at activity boundaries of create and resize (test-only
// crash points), restarted, and must converge with no ghost member and no lost key.
import { join } from 'node:path';
import { clusters, converged, kubectl, missingKeys, TestController, writeKeys } from './support/controller.js';
import { eventually, startTestStack, type TestStack } from './support/stack.js';

let t: TestStack;
let ctl: TestController;
const covered: string[] = [];

beforeAll(async () => {
  t = await startTestStack({ nodes: 3 });
  ctl = new TestController(t);
  await eventually('default service account', () => t.core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' }), 60000);
  // The controller installs the CRD at start.
  ctl.start();
  await eventually('EtcdCluster CRD served', async () => (await kubectl(t, 'get', 'etcdclusters')).code === 0, 60000);
  await ctl.stop();
});
afterAll(async () => {
  await ctl?.stop();
  await t?.stop();
  console.log(`crash points covered: ${covered.join(', ')}`);
});

/** Runs with crash points armed (each fires once); restarts the controller after every crash until done() holds. */
async function withCrashes(phase: string, points: string[], act: () => Promise<void>, done: () => Promise<boolean>): Promise<string[]> {
  const env = { KEC_CRASH_POINTS: points.join(','), KEC_CRASH_MARKER_DIR: join(t.stack.logsDir, `markers-${phase}`) };
  ctl.start(env);
  await act();
  const crashes: string[] = [];
  await eventually(`${phase} converged through crashes`, async () => {
    if (!ctl.proc!.running) {
      crashes.push(`#${crashes.length + 1}`);
      ctl.start(env);
    }
    return done();
  }, 400000, 1000);
  await ctl.stop();
  return crashes;
}

const isConverged = (name: string, size: number) => async () => {
  try { await converged(t, name, size, 1); return true; } catch { return false; }
};

test('create survives worker crashes after createMemberPod, addLearner and promoteLearner', async () => {
  const points = ['createMemberPod', 'addLearner', 'promoteLearner'];
  const crashes = await withCrashes('create', points,
    async () => { await clusters(t).create({ apiVersion: 'coreos.com/v1', kind: 'EtcdCluster', metadata: { name: 'crashy' }, spec: { size: 3 } }); },
    isConverged('crashy', 3));
  expect(crashes).toHaveLength(points.length);
  covered.push(...points.map((p) => `create/${p}`));
  const m = await converged(t, 'crashy', 3);
  expect(m.pods).toEqual(['crashy-0000', 'crashy-0001', 'crashy-0002']);
  await writeKeys(m.ips, 'crash', 30);
});

test('scale up survives worker crashes after addLearner and waitLearnerCaughtUp', async () => {
  const points = ['addLearner', 'waitLearnerCaughtUp'];
  const crashes = await withCrashes('scale-up', points, async () => { await clusters(t).patchSpec('crashy', { size: 5 }); }, isConverged('crashy', 5));
  expect(crashes).toHaveLength(points.length);
  covered.push(...points.map((p) => `scale-up/${p}`));
  const m = await converged(t, 'crashy', 5);
  expect(await missingKeys(m.ips, 'crash', 30)).toEqual([]);
});

test('scale down survives worker crashes after moveLeaderAway, removeMember and deleteMemberPod', async () => {
  const points = ['moveLeaderAway', 'removeMember', 'deleteMemberPod'];
  const crashes = await withCrashes('scale-down', points, async () => { await clusters(t).patchSpec('crashy', { size: 3 }); }, isConverged('crashy', 3));
  expect(crashes.length).toBe(points.length);
  covered.push(...points.map((p) => `scale-down/${p}`));
  const m = await converged(t, 'crashy', 3);
  expect(await missingKeys(m.ips, 'crash', 30)).toEqual([]);
});

test('member replacement survives a worker crash after removing the dead member', async () => {
  const points = ['removeMember'];
  const before = await converged(t, 'crashy', 3);
  const crashes = await withCrashes('replace', points,
    async () => { await t.core.deleteNamespacedPod({ name: before.pods[0], namespace: 'default' }); },
    async () => (await isConverged('crashy', 3)()) && !(await converged(t, 'crashy', 3)).pods.includes(before.pods[0]));
  expect(crashes).toHaveLength(1);
  covered.push('replace-member/removeMember');
  const m = await converged(t, 'crashy', 3);
  expect(await missingKeys(m.ips, 'crash', 30)).toEqual([]);
});

test('destroy survives a worker crash while deleting the cluster resources', async () => {
  const points = ['deleteClusterResources'];
  const crashes = await withCrashes('destroy', points, async () => { await clusters(t).delete('crashy'); },
    async () => !(await clusters(t).get('crashy')));
  expect(crashes).toHaveLength(1);
  covered.push('destroy/deleteClusterResources');
  expect((await t.core.listNamespacedPod({ namespace: 'default', labelSelector: 'etcd_cluster=crashy' })).items).toHaveLength(0);
});
