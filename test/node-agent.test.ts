// The node agent on the real control plane: pods scheduled by kube-scheduler run as real etcd
// processes in their own network namespaces.
import { AppsV1Api, type V1Pod } from '@kubernetes/client-node';
import { etcdPod as sharedEtcdPod, type EtcdPodOpts } from './support/etcd-pods.js';
import { isAlive } from '../local/process.js';
import { pins } from '../local/toolchain.js';
import { clientUrl, etcdctl } from './support/etcdctl.js';
import { eventually, startTestStack, type TestStack } from './support/stack.js';

let t: TestStack;
const ns = 'default';
beforeAll(async () => {
  t = await startTestStack({ nodes: 3, runtime: 'agent' }); // the node agent's own test
  await eventually(
    'default service account',
    () => t.core.readNamespacedServiceAccount({ name: 'default', namespace: ns }),
    60000,
  );
  await eventually(
    '3 Ready nodes',
    async () => {
      const nodes = await t.core.listNode();
      return (
        nodes.items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
          .length === 3
      );
    },
    60000,
  );
});
afterAll(async () => {
  await t?.stop();
});

const etcdPod = (name: string, o: Partial<EtcdPodOpts> = {}) =>
  sharedEtcdPod(name, { version: pins.ETCD34_VERSION, subdomain: 'etcd-test', httpProbe: true, ...o });

async function readyPod(name: string, timeoutMs = 90000): Promise<V1Pod> {
  return eventually(
    `pod ${name} Ready`,
    async () => {
      const p = await t.core.readNamespacedPod({ name, namespace: ns });
      return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
    },
    timeoutMs,
  );
}

async function gone(name: string): Promise<void> {
  await eventually(
    `pod ${name} deleted`,
    async () => {
      try {
        await t.core.readNamespacedPod({ name, namespace: ns });
        return false;
      } catch (e) {
        return (e as { code?: number }).code === 404;
      }
    },
    60000,
  );
}

test('a pod running etcd 3.4 becomes Ready and answers etcdctl endpoint health', async () => {
  await t.core.createNamespacedPod({ namespace: ns, body: etcdPod('solo', { subdomain: 'solo' }) });
  const pod = await readyPod('solo');
  expect(pod.status?.podIP).toMatch(/^10\./);
  expect(pod.status?.containerStatuses?.[0].state?.running).toBeDefined();
  const health = await etcdctl(clientUrl(pod.status!.podIP!), ['endpoint', 'health']);
  expect(health).toContain('is healthy');
  const status = await etcdctl(clientUrl(pod.status!.podIP!), ['endpoint', 'status', '-w', 'json']);
  expect(JSON.parse(status)[0].Status.version).toBe(pins.ETCD34_VERSION);
});

test('an image change restarts the container on the new etcd version and keeps its data', async () => {
  const ip = (await readyPod('solo')).status!.podIP!;
  await etcdctl(clientUrl(ip), ['put', 'upgrade-key', 'kept']);
  const pod = await t.core.readNamespacedPod({ name: 'solo', namespace: ns });
  pod.spec!.containers[0].image = `quay.io/coreos/etcd:v${pins.ETCD35_VERSION}`;
  await t.core.replaceNamespacedPod({ name: 'solo', namespace: ns, body: pod });
  const upgraded = await eventually(
    'solo restarted on 3.5',
    async () => {
      const p = await t.core.readNamespacedPod({ name: 'solo', namespace: ns });
      const cs = p.status?.containerStatuses?.[0];
      return cs?.ready && cs.restartCount === 1 && cs.image.endsWith(pins.ETCD35_VERSION) ? p : undefined;
    },
    90000,
  );
  expect(upgraded.status?.podIP).toBe(ip);
  const status = JSON.parse(await etcdctl(clientUrl(ip), ['endpoint', 'status', '-w', 'json']));
  expect(status[0].Status.version).toBe(pins.ETCD35_VERSION);
  expect(await etcdctl(clientUrl(ip), ['get', 'upgrade-key', '--print-value-only'])).toBe('kept');
});

test('deleting a pod ends its process', async () => {
  const info = await t.agent.pod(ns, 'solo');
  expect(info?.pid).toBeGreaterThan(0);
  await t.core.deleteNamespacedPod({ name: 'solo', namespace: ns });
  await gone('solo');
  expect(isAlive(info!.pid!)).toBe(false);
});

test('three pods on three nodes form one etcd cluster through their DNS names and agree on a key', async () => {
  const members = ['trio-0', 'trio-1', 'trio-2'];
  for (const m of members)
    await t.core.createNamespacedPod({
      namespace: ns,
      body: etcdPod(m, { version: pins.ETCD35_VERSION, cluster: members, subdomain: 'trio', antiAffinity: true }),
    });
  const pods = await Promise.all(members.map((m) => readyPod(m, 120000)));
  expect(new Set(pods.map((p) => p.spec?.nodeName)).size).toBe(3);
  const ips = pods.map((p) => p.status!.podIP!);
  const list = JSON.parse(await etcdctl(clientUrl(ips[0]), ['member', 'list', '-w', 'json']));
  expect(list.members).toHaveLength(3);
  expect(list.members.map((m: { peerURLs: string[] }) => m.peerURLs[0]).sort()).toEqual(
    members.map((m) => `http://${m}.trio.${ns}.svc:2380`),
  );
  await etcdctl(clientUrl(ips[0]), ['put', 'shared', 'agreed']);
  for (const ip of ips) {
    expect(await etcdctl(clientUrl(ip), ['get', 'shared', '--print-value-only', '--consistency=l'])).toBe('agreed');
  }
});

test("cutting one member's network makes it unreachable from the other two; restoring it heals", async () => {
  const [p0, p1, p2] = await Promise.all(['trio-0', 'trio-1', 'trio-2'].map((m) => readyPod(m)));
  const via = await t.agent.podNetwork(ns, 'trio-1');
  await t.agent.cutNetwork(ns, 'trio-0');
  await expect(etcdctl(clientUrl(p0.status!.podIP!), ['endpoint', 'health'], { via, timeoutSec: 2 })).rejects.toThrow();
  // The other two keep quorum and accept a write the cut member cannot see.
  await etcdctl([clientUrl(p1.status!.podIP!), clientUrl(p2.status!.podIP!)], ['put', 'during-cut', 'yes']);
  await t.agent.restoreNetwork(ns, 'trio-0');
  const seen = await eventually(
    'cut member caught up',
    async () =>
      (await etcdctl(clientUrl(p0.status!.podIP!), ['get', 'during-cut', '--print-value-only', '--consistency=s'])) ===
      'yes',
    60000,
  );
  expect(seen).toBe(true);
  for (const m of ['trio-0', 'trio-1', 'trio-2']) await t.core.deleteNamespacedPod({ name: m, namespace: ns });
});

test("a PersistentVolumeClaim gets a PV and its data survives the pod's deletion and re-creation", async () => {
  await t.core.createNamespacedPersistentVolumeClaim({
    namespace: ns,
    body: {
      metadata: { name: 'keep-data' },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
    },
  });
  await eventually(
    'claim bound',
    async () =>
      (await t.core.readNamespacedPersistentVolumeClaim({ name: 'keep-data', namespace: ns })).status?.phase ===
      'Bound',
    60000,
  );
  await t.core.createNamespacedPod({
    namespace: ns,
    body: etcdPod('durable', { version: pins.ETCD36_VERSION, subdomain: 'durable', claim: 'keep-data' }),
  });
  let ip = (await readyPod('durable')).status!.podIP!;
  await etcdctl(clientUrl(ip), ['put', 'durable-key', 'survives']);
  await t.core.deleteNamespacedPod({ name: 'durable', namespace: ns });
  await gone('durable');
  await t.core.createNamespacedPod({
    namespace: ns,
    body: etcdPod('durable', { version: pins.ETCD36_VERSION, subdomain: 'durable', claim: 'keep-data' }),
  });
  ip = (await readyPod('durable')).status!.podIP!;
  expect(await etcdctl(clientUrl(ip), ['get', 'durable-key', '--print-value-only'])).toBe('survives');
  await t.core.deleteNamespacedPod({ name: 'durable', namespace: ns });
});

test("a Deployment's pods run through the real controller-manager and scheduler", async () => {
  const apps = t.kc.makeApiClient(AppsV1Api);
  await apps.createNamespacedDeployment({
    namespace: ns,
    body: {
      metadata: { name: 'sleeper' },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'sleeper' } },
        template: {
          metadata: { labels: { app: 'sleeper' } },
          spec: {
            automountServiceAccountToken: false,
            terminationGracePeriodSeconds: 1,
            containers: [{ name: 'main', image: 'busybox', command: ['sh', '-c', 'echo started; exec sleep 3600'] }],
          },
        },
      },
    },
  });
  await eventually(
    '2 ready replicas',
    async () => (await apps.readNamespacedDeployment({ name: 'sleeper', namespace: ns })).status?.readyReplicas === 2,
    90000,
  );
  const pods = await t.core.listNamespacedPod({ namespace: ns, labelSelector: 'app=sleeper' });
  expect(pods.items.every((p) => p.status?.phase === 'Running')).toBe(true);
  expect(await t.agent.logs(ns, pods.items[0].metadata!.name!, 'main')).toContain('started');
  await apps.deleteNamespacedDeployment({ name: 'sleeper', namespace: ns });
});

test('an unknown image leaves the pod Pending with an ErrImagePull reason', async () => {
  await t.core.createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name: 'no-such-image' },
      spec: {
        automountServiceAccountToken: false,
        containers: [{ name: 'x', image: 'example.com/nope:1' }],
      },
    },
  });
  const pod = await eventually(
    'ErrImagePull',
    async () => {
      const p = await t.core.readNamespacedPod({ name: 'no-such-image', namespace: ns });
      return p.status?.containerStatuses?.[0].state?.waiting?.reason === 'ErrImagePull' ? p : undefined;
    },
    60000,
  );
  expect(pod.status?.phase).toBe('Pending');
  expect(pod.status?.containerStatuses?.[0].state?.waiting?.message).toContain('image catalog');
});

test('a crashed container is restarted in place (restartCount 1, same pod IP, data kept)', async () => {
  await t.core.createNamespacedPod({
    namespace: ns,
    body: etcdPod('crashy', { version: pins.ETCD35_VERSION, subdomain: 'crashy' }),
  });
  const ip = (await readyPod('crashy')).status!.podIP!;
  await etcdctl(clientUrl(ip), ['put', 'crash-key', 'kept']);
  const before = await t.agent.pod(ns, 'crashy');
  await t.agent.crash(ns, 'crashy');
  const p = await eventually(
    'restarted',
    async () => {
      const x = await t.core.readNamespacedPod({ name: 'crashy', namespace: ns });
      const cs = x.status?.containerStatuses?.[0];
      return cs?.restartCount === 1 && cs.ready ? x : undefined;
    },
    60000,
  );
  expect(p.status?.podIP).toBe(ip);
  expect((await t.agent.pod(ns, 'crashy'))?.pid).not.toBe(before?.pid);
  expect(await etcdctl(clientUrl(ip), ['get', 'crash-key', '--print-value-only'])).toBe('kept');
});

test('a killed node agent adopts its running pods on restart: same process, no duplicate', async () => {
  const before = await t.agent.pod(ns, 'crashy');
  await t.stack.restart('node-agent', { crash: true });
  const after = await eventually('pod known again', () => t.agent.pod(ns, 'crashy'), 30000);
  expect(after.pid).toBe(before!.pid);
  expect(isAlive(before!.pid!)).toBe(true);
  await new Promise((r) => setTimeout(r, 3000));
  const p = await t.core.readNamespacedPod({ name: 'crashy', namespace: ns });
  expect(p.status?.containerStatuses?.[0].restartCount).toBe(1);
  expect(p.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
});

test("a stopped node goes NotReady and its pods' processes end; started again, they run again", async () => {
  const info = (await t.agent.pod(ns, 'crashy'))!;
  await t.agent.stopNode(info.node);
  expect(isAlive(info.pid!)).toBe(false);
  await eventually(
    'node NotReady',
    async () => {
      const n = await t.core.readNode({ name: info.node });
      return n.status?.conditions?.find((c) => c.type === 'Ready')?.status !== 'True';
    },
    90000,
    1000,
  );
  await t.agent.startNode(info.node);
  await eventually(
    'node Ready',
    async () =>
      (await t.core.readNode({ name: info.node })).status?.conditions?.find((c) => c.type === 'Ready')?.status ===
      'True',
    60000,
  );
  const p = await readyPod('crashy');
  expect(await etcdctl(clientUrl(p.status!.podIP!), ['get', 'crash-key', '--print-value-only'])).toBe('kept');
  await t.core.deleteNamespacedPod({ name: 'crashy', namespace: ns });
});
