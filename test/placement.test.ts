// Member placement on 3 nodes (issue 20): a resize never leaves a majority on one node, and a cluster
// squeezed onto 2 schedulable nodes warns, then spreads out once a node frees up. Under writes, every
// acknowledged write read back.
import { PolicyV1Api } from '@kubernetes/client-node';
import {
  clusters,
  clusterWriter,
  type ContinuousWriter,
  converged,
  kubectl,
  stackWithControllerPerFile,
} from './support/controller.js';
import { eventually, type TestStack } from './support/stack.js';
import { memberSelector } from '../api/etcdcluster.js';

let t: TestStack;

stackWithControllerPerFile((s) => ({ t } = s), { beforeStop: () => kubectl(t, 'uncordon', 'node-3') });

/** Member pod → node. */
async function nodesOf(cluster: string): Promise<Record<string, string>> {
  const pods = (await t.core.listNamespacedPod({ namespace: 'default', labelSelector: memberSelector(cluster) })).items;
  return Object.fromEntries(
    pods.filter((p) => !p.metadata?.deletionTimestamp).map((p) => [p.metadata!.name!, p.spec?.nodeName ?? '']),
  );
}
const spreadCondition = async (cluster: string) =>
  (await clusters(t).get(cluster))?.status.conditions?.find((c) => c.type === 'MembersSpread');

async function expectNothingLost(cluster: string, writer: ContinuousWriter): Promise<void> {
  await writer.stop();
  const m = await converged(t, cluster, 3);
  const lost = await writer.lost(m.ips);
  console.log(`${cluster}: acked ${writer.acked.length}, failed ${writer.failed}, lost ${lost.length}`);
  expect(writer.acked.length).toBeGreaterThan(0);
  expect(lost).toEqual([]);
}

test('resize 3 → 4 → 3 on 3 nodes ends with the 3 members on 3 different nodes', async () => {
  const name = 'spread';
  await clusters(t).createFromSpec(name, { size: 3, version: '3.5.33' });
  await converged(t, name, 3);
  expect(new Set(Object.values(await nodesOf(name))).size).toBe(3);
  // Drains take one member at a time: the cluster's disruption budget.
  const pdb = await t.kc.makeApiClient(PolicyV1Api).readNamespacedPodDisruptionBudget({ name, namespace: 'default' });
  expect(pdb.spec).toMatchObject({ maxUnavailable: 1, selector: { matchLabels: { app: 'etcd', etcd_cluster: name } } });
  const writer = clusterWriter(t, name);
  await clusters(t).patchSpec(name, { size: 4 });
  await converged(t, name, 4);
  const atFour = await nodesOf(name);
  await clusters(t).patchSpec(name, { size: 3 });
  await converged(t, name, 3);
  const atThree = await nodesOf(name);
  console.log(`at 4: ${JSON.stringify(atFour)}; at 3: ${JSON.stringify(atThree)}`);
  expect(new Set(Object.values(atFour)).size).toBe(3);
  expect(new Set(Object.values(atThree)).size).toBe(3);
  expect(await spreadCondition(name)).toMatchObject({ status: 'True' });
  await expectNothingLost(name, writer);
  await clusters(t).delete(name);
});

test('3 members on 2 schedulable nodes: warned in status and Events; uncordoned, the members spread out', async () => {
  const name = 'squeezed';
  expect((await kubectl(t, 'cordon', 'node-3')).code).toBe(0);
  // The scheduler must see the cordon's taint before the first member is placed.
  await eventually(
    'node-3 tainted unschedulable',
    async () =>
      (await t.core.readNode({ name: 'node-3' })).spec?.taints?.some(
        (x) => x.key === 'node.kubernetes.io/unschedulable',
      ),
    30000,
  );
  await clusters(t).createFromSpec(name, { size: 3, version: '3.5.33' });
  await converged(t, name, 3);
  const squeezed = await nodesOf(name);
  expect(new Set(Object.values(squeezed))).toEqual(new Set(['node-1', 'node-2']));
  const warned = await eventually(
    'MembersSpread False',
    async () => {
      const c = await spreadCondition(name);
      return c?.status === 'False' ? c : undefined;
    },
    60000,
  );
  console.log(`squeezed: ${JSON.stringify(squeezed)}; condition: ${warned.message}`);
  expect(warned).toMatchObject({ reason: 'MajorityOnOneNode' });
  expect(warned.message).toMatch(/no other schedulable node can take a member/);
  const events = await t.core.listNamespacedEvent({
    namespace: 'default',
    fieldSelector: `involvedObject.name=${name}`,
  });
  expect(events.items.some((e) => e.reason === 'MajorityOnOneNode' && e.type === 'Warning')).toBe(true);

  const writer = clusterWriter(t, name);
  expect((await kubectl(t, 'uncordon', 'node-3')).code).toBe(0);
  await eventually(
    'members on 3 nodes',
    async () =>
      (await spreadCondition(name))?.status === 'True' && new Set(Object.values(await nodesOf(name))).size === 3,
    240000,
    1000,
  );
  await converged(t, name, 3);
  const spread = await nodesOf(name);
  const ops = (await clusters(t).get(name))?.status.lastOperations ?? [];
  console.log(`spread: ${JSON.stringify(spread)}; operations: ${ops.map((o) => `${o.type} ${o.result}`).join(', ')}`);
  expect(ops.filter((o) => o.type === 'move-member')).toEqual([expect.objectContaining({ result: 'Succeeded' })]);
  await expectNothingLost(name, writer);
});
