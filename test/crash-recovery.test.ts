// Crash injection: for each operation, the worker is SIGKILLed after every activity it runs, each
// boundary in turn (test-only crash points), restarted like a Deployment would, and the operation
// must finish correctly: no ghost member, no lost key. The boundaries covered are printed.
import {
  clusters,
  converged,
  convergedNow,
  crashedAt,
  crashEverywhere,
  kubectl,
  missingKeys,
  TestController,
  writeKeys,
} from './support/controller.js';
import { eventually, startTestStack, type TestStack } from './support/stack.js';
import { apiVersion, kind, ownedSelector } from '../api/etcdcluster.js';

let t: TestStack;
let ctl: TestController;
const covered: string[] = [];

beforeAll(async () => {
  t = await startTestStack({ nodes: 3 });
  ctl = new TestController(t);
  await eventually(
    'default service account',
    () => t.core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' }),
    60000,
  );
  // The controller installs the CRD at start.
  ctl.start();
  await eventually('EtcdCluster CRD served', async () => (await kubectl(t, 'get', 'etcdclusters')).code === 0, 60000);
  await ctl.stop();
});
afterAll(async () => {
  await ctl?.stop();
  await t?.stop();
  console.log(`crash boundaries covered (${covered.length}):\n  ${covered.join('\n  ')}`);
});

/** Runs act() with the worker killed after every activity of `workflowType`; returns the boundaries hit. */
async function withCrashes(
  phase: string,
  workflowType: string,
  act: () => Promise<void>,
  done: () => Promise<boolean>,
): Promise<string[]> {
  const env = crashEverywhere(t, phase, workflowType);
  const before = ctl.restarts;
  ctl.supervise(env);
  await act();
  await eventually(`${phase} finished through crashes`, done, 900000, 1000);
  // A crash after the last activity can finish the operation before the supervisor has restarted the worker.
  await eventually(
    `${phase}: every crash restarted`,
    async () => ctl.restarts - before >= crashedAt(env).length,
    30000,
  );
  await ctl.stop();
  const hit = crashedAt(env);
  expect(ctl.restarts - before).toBe(hit.length);
  covered.push(...hit.map((b) => `${phase}: ${b}`));
  return hit;
}

/** Converged, and the operation's last record says it succeeded (so every one of its steps ran). */
const finished = (name: string, size: number, opType: string) => async () => {
  const ops = (await clusters(t).get(name))?.status.lastOperations ?? [];
  if (ops.at(-1)?.type !== opType || ops.at(-1)?.result !== 'Succeeded') return false;
  return !!(await convergedNow(t, name, size));
};

test('create survives a worker crash after each of its activities', async () => {
  const hit = await withCrashes(
    'create',
    'createCluster',
    async () => {
      await clusters(t).create({
        apiVersion,
        kind,
        metadata: { name: 'crashy' },
        spec: { size: 3, tls: { enabled: false } },
      });
    },
    finished('crashy', 3, 'create'),
  );
  expect(hit).toEqual(
    expect.arrayContaining([
      'createCluster.bootstrapMembers',
      // Since bootstrap-waits-together one wait for all members (was waitMemberPodRunning and waitMemberHealthy each).
      'createCluster.waitMembersHealthy',
    ]),
  );
  const m = await converged(t, 'crashy', 3);
  expect(m.pods).toEqual(['crashy-0000', 'crashy-0001', 'crashy-0002']);
  await writeKeys(m.ips, 'crash', 30);
}, 900000);

test('scale up survives a worker crash after each of its activities', async () => {
  const hit = await withCrashes(
    'scale-up',
    'resizeCluster',
    async () => {
      await clusters(t).patchSpec('crashy', { size: 5 });
    },
    finished('crashy', 5, 'scale-up'),
  );
  expect(hit).toEqual(
    expect.arrayContaining([
      // Since join-pod-first the pod comes first, held until its learner is added (was addLearner, createMemberPod).
      'resizeCluster.createJoiningPod',
      'resizeCluster.waitHeldPodStarted',
      'resizeCluster.addLearner',
      'resizeCluster.releaseJoiningPod',
      'resizeCluster.promoteLearner',
    ]),
  );
  const m = await converged(t, 'crashy', 5);
  expect(await missingKeys(m.ips, 'crash', 30)).toEqual([]);
}, 900000);

test('scale down survives a worker crash after each of its activities', async () => {
  const hit = await withCrashes(
    'scale-down',
    'resizeCluster',
    async () => {
      await clusters(t).patchSpec('crashy', { size: 3 });
    },
    finished('crashy', 3, 'scale-down'),
  );
  // Since scale-down-one-step the health gate, leadership move and MemberRemove are one activity.
  expect(hit).toEqual(expect.arrayContaining(['resizeCluster.retireFromEtcd', 'resizeCluster.deleteMemberPod']));
  const m = await converged(t, 'crashy', 3);
  expect(await missingKeys(m.ips, 'crash', 30)).toEqual([]);
}, 900000);

test('member replacement survives a worker crash after each of its activities', async () => {
  const before = await converged(t, 'crashy', 3);
  const hit = await withCrashes(
    'replace',
    'replaceMember',
    async () => {
      await t.core.deleteNamespacedPod({ name: before.pods[0], namespace: 'default' });
    },
    async () =>
      (await finished('crashy', 3, 'replace-member')()) &&
      !(await converged(t, 'crashy', 3)).pods.includes(before.pods[0]),
  );
  expect(hit).toEqual(expect.arrayContaining(['replaceMember.removeMember', 'replaceMember.addLearner']));
  const m = await converged(t, 'crashy', 3);
  expect(await missingKeys(m.ips, 'crash', 30)).toEqual([]);
}, 900000);

test('destroy survives a worker crash after each of its activities', async () => {
  const hit = await withCrashes(
    'destroy',
    'destroyCluster',
    async () => {
      await clusters(t).delete('crashy');
    },
    async () => !(await clusters(t).get('crashy')),
  );
  expect(hit).toContain('destroyCluster.deleteClusterResources');
  expect(
    (await t.core.listNamespacedPod({ namespace: 'default', labelSelector: ownedSelector('crashy') })).items,
  ).toHaveLength(0);
}, 900000);
