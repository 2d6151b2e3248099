// The controller deployed from deploy/ as a pod: it talks to the apiserver with its own
// ServiceAccount token (so deploy/rbac.yaml is really what it may do) and to Temporal through the
// in-cluster name the manifest uses, and it manages a cluster end to end.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { clusters, converged, kubectl, missingKeys, writeKeys } from './support/controller.js';
import { eventually, startTestStack, type TestStack } from './support/stack.js';
import { ownedSelector } from '../api/etcdcluster.js';

const ns = 'kube-etcd-controller';
let t: TestStack;

beforeAll(async () => {
  t = await startTestStack({ nodes: 3 });
});
afterAll(async () => {
  await t?.stop();
});

async function controllerPods() {
  return (await t.core.listNamespacedPod({ namespace: ns, labelSelector: 'app=kube-etcd-controller' })).items.filter(
    (p) => !p.metadata?.deletionTimestamp,
  );
}

/** Everything the controller pods have logged so far (all restarts). */
async function controllerLog(): Promise<string> {
  const logs = await Promise.all(
    (await controllerPods()).map((p) => t.nodes.logs(ns, p.metadata!.name!, 'controller').catch(() => '')),
  );
  return logs.join('\n');
}

async function apply(...files: string[]) {
  const r = await kubectl(t, 'apply', ...files.flatMap((f) => ['-f', f]));
  expect(r.stderr).toBe('');
  return r.stdout;
}

test('without a verb it needs, the controller pod refuses to start and names the missing verb', async () => {
  // deploy/rbac.yaml with "delete pods" taken away.
  const rbac = readFileSync('deploy/rbac.yaml', 'utf8');
  const crippled = rbac.replace(
    'verbs: [get, list, watch, create, delete, patch]',
    'verbs: [get, list, watch, create, patch]',
  );
  expect(crippled).not.toBe(rbac);
  const file = join(t.stack.logsDir, 'rbac-without-delete-pods.yaml');
  writeFileSync(file, crippled);
  await apply('deploy/controller.yaml', file);
  const log = await eventually(
    'the controller to explain why it cannot start',
    async () => {
      const l = await controllerLog();
      return l.includes('controller cannot start') ? l : undefined;
    },
    180000,
    1000,
  );
  expect(log).toMatch(/RBAC: the controller's account may not delete pods\. Apply deploy\/rbac\.yaml/);
  // It got that far through the in-cluster names: apiserver via the `kubernetes` service.
  expect(log).toContain('Kubernetes reachable');
});

test('installed from the kustomize base (deploy/) it runs as a pod and manages a cluster end to end', async () => {
  const r = await kubectl(t, 'apply', '-k', 'deploy'); // what the README tells users: CRD, RBAC, controller
  expect(r.stderr).toBe('');
  // Replace the crash-looping pod rather than wait out its back-off.
  for (const p of await controllerPods())
    await t.core.deleteNamespacedPod({ namespace: ns, name: p.metadata!.name!, body: { gracePeriodSeconds: 0 } });
  await eventually(
    'controller pod ready',
    async () => {
      const pods = await controllerPods();
      return pods.length === 1 && pods[0].status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    },
    180000,
    1000,
  );
  const log = await controllerLog();
  expect(log).toContain('RBAC allows every verb the controller uses');
  expect(log).toContain('kube-etcd-controller started');

  // The seed's walkthrough, driven by the in-cluster controller.
  await eventually('EtcdCluster CRD served', async () => (await kubectl(t, 'get', 'etcdclusters')).code === 0, 60000);
  await eventually(
    'default service account',
    () => t.core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' }),
    60000,
  );
  await apply('deploy/examples/example-etcd-cluster.yaml');
  let m = await converged(t, 'etcd-cluster', 3);
  await writeKeys(m.ips, 'in-cluster', 50);
  expect((await kubectl(t, 'scale', 'etcdcluster', 'etcd-cluster', '--replicas=4')).code).toBe(0);
  m = await converged(t, 'etcd-cluster', 4);
  expect(await missingKeys(m.ips, 'in-cluster', 50)).toEqual([]);
  // Its log lines carry the cluster and workflow of the activity that wrote them.
  const lines = (await controllerLog())
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(
    lines.some(
      (l) =>
        l.cluster === 'default/etcd-cluster' && l.workflowId === 'default/etcd-cluster/resize-3-to-4' && l.activity,
    ),
  ).toBe(true);

  await kubectl(t, 'delete', '-f', 'deploy/examples/example-etcd-cluster.yaml');
  await eventually(
    'cluster and its pods gone',
    async () =>
      !(await clusters(t).get('etcd-cluster')) &&
      (await t.core.listNamespacedPod({ namespace: 'default', labelSelector: ownedSelector('etcd-cluster') })).items
        .length === 0,
    120000,
    1000,
  );
});
