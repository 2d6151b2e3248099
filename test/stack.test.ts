// The local stack itself: real kube-apiserver, controller-manager, scheduler and Temporal server.
import { fileURLToPath } from 'node:url';
import {
  ApiextensionsV1Api,
  KubernetesObjectApi,
  PatchStrategy,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { pino } from 'pino';
import { httpOk } from '../local/stack.js';
import { ensureCrd } from '../controller/crd.js';
import { eventually, startTestStack, type TestStack } from './support/stack.js';
import { apiVersion, kind } from '../api/etcdcluster.js';

let t: TestStack;
beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  t = await startTestStack({ nodes: 0, ui: true });
});
afterAll(async () => {
  await t?.stop();
});

test('kube-apiserver answers /readyz', async () => {
  expect(await httpOk(`${t.stack.apiserverUrl}/readyz`)).toBe(true);
});

test('a namespace and a CustomResourceDefinition can be created; the CRD becomes Established', async () => {
  await t.core.createNamespace({ body: { metadata: { name: 'stack-test' } } });
  const ns = await t.core.readNamespace({ name: 'stack-test' });
  expect(ns.status?.phase).toBe('Active');
  const ext = t.kc.makeApiClient(ApiextensionsV1Api);
  const crd: V1CustomResourceDefinition = {
    metadata: { name: 'widgets.example.com' },
    spec: {
      group: 'example.com',
      scope: 'Namespaced',
      names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: 'object', x_kubernetes_preserve_unknown_fields: true } },
        },
      ],
    },
  };
  await ext.createCustomResourceDefinition({ body: crd });
  await eventually(
    'CRD Established',
    async () => {
      const got = await ext.readCustomResourceDefinition({ name: 'widgets.example.com' });
      return got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
    },
    30000,
  );
});

test('the garbage collector deletes a dependent when its owner is deleted', async () => {
  const owner = await t.core.createNamespacedConfigMap({
    namespace: 'default',
    body: { metadata: { name: 'owner' }, data: { a: '1' } },
  });
  await t.core.createNamespacedConfigMap({
    namespace: 'default',
    body: {
      metadata: {
        name: 'dependent',
        ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata!.uid! }],
      },
      data: { b: '2' },
    },
  });
  await t.core.deleteNamespacedConfigMap({ name: 'owner', namespace: 'default' });
  await eventually(
    'dependent garbage-collected',
    async () => {
      try {
        await t.core.readNamespacedConfigMap({ name: 'dependent', namespace: 'default' });
        return false;
      } catch (e) {
        return (e as { code?: number }).code === 404;
      }
    },
    60000,
  );
});

test('a Temporal workflow with one activity runs on a worker against the dev server', async () => {
  const connection = await NativeConnection.connect({ address: t.stack.temporalAddress });
  const worker = await Worker.create({
    connection,
    taskQueue: 'stack-test',
    workflowsPath: fileURLToPath(new URL('./fixtures/hello-workflows.ts', import.meta.url)),
    activities: { greet: async (name: string) => `hello, ${name}` },
  });
  const client = new Client({ connection: await Connection.connect({ address: t.stack.temporalAddress }) });
  const result = await worker.runUntil(
    client.workflow.execute('hello', { taskQueue: 'stack-test', workflowId: 'stack-test-hello', args: ['etcd'] }),
  );
  expect(result).toBe('hello, etcd');
  await client.connection.close();
  await connection.close();
});

test('the Temporal Web UI answers HTTP 200', async () => {
  const res = await fetch(t.stack.uiUrl!);
  expect(res.status).toBe(200);
});

describe("the controller's CRD (deploy/crd.yaml, applied as the controller does at start)", () => {
  const log = pino({ level: 'silent' });
  const objects = () => KubernetesObjectApi.makeApiClient(t.kc);
  const cluster = (name: string, spec: Record<string, unknown> = {}) => ({
    apiVersion,
    kind,
    metadata: { name, namespace: 'default' },
    spec,
  });
  const refusal = async (p: Promise<unknown>) =>
    p.then(
      () => 'accepted',
      (e) => String((e as { body?: unknown }).body ?? e),
    );

  test('the apiserver refuses names too long or not DNS-safe, and adding claims to a live cluster, saying what to change', async () => {
    await ensureCrd(t.kc, log);
    expect(await refusal(objects().create(cluster('a'.repeat(52))))).toContain('use at most 51 characters');
    expect(await refusal(objects().create(cluster('9lives')))).toContain('must start with a letter');
    await objects().create(cluster('c'.repeat(51)));
    const claims = { pod: { persistentVolumeClaimSpec: { resources: { requests: { storage: '64Mi' } } } } };
    expect(
      await refusal(
        objects().patch(
          cluster('c'.repeat(51), claims),
          undefined,
          undefined,
          'test',
          undefined,
          PatchStrategy.MergePatch,
        ),
      ),
    ).toContain('cannot be added or removed once the cluster exists');
    await objects().delete(cluster('c'.repeat(51)));
  });

  test('spec.restore (issue 19): needs spec.backup, is fixed after creation; s3.caSecret needs an https endpoint', async () => {
    await ensureCrd(t.kc, log);
    const s3 = { bucket: 'etcd-backups', credentialsSecret: 'creds' };
    expect(await refusal(objects().create(cluster('r1', { restore: { cluster: 'src' } })))).toContain(
      'set spec.backup',
    );
    expect(
      await refusal(
        objects().create(cluster('r1', { backup: { s3: { ...s3, endpoint: 'http://s3:9000', caSecret: 'ca' } } })),
      ),
    ).toContain('https endpoint');
    await objects().create(cluster('r1', { backup: { s3 }, restore: { cluster: 'src' } }));
    const patch = (spec: Record<string, unknown>) =>
      objects().patch(cluster('r1', spec), undefined, undefined, 'test', undefined, PatchStrategy.MergePatch);
    expect(await refusal(patch({ restore: { cluster: 'other' } }))).toContain('cannot be added, changed or removed');
    expect(await refusal(patch({ size: 5 }))).toBe('accepted');
    await objects().delete(cluster('r1'));
  });

  test('an older controller leaves a newer installed CRD as it is', async () => {
    const ext = t.kc.makeApiClient(ApiextensionsV1Api);
    const installed = await ext.readCustomResourceDefinition({ name: 'etcdclusters.coreos.com' });
    const spec = installed.spec.versions[0].schema!.openAPIV3Schema!.properties!.spec;
    spec.properties = { ...spec.properties, fromTheFuture: { type: 'string' } };
    await ext.replaceCustomResourceDefinition({ name: 'etcdclusters.coreos.com', body: installed });
    await ensureCrd(t.kc, log);
    const after = await ext.readCustomResourceDefinition({ name: 'etcdclusters.coreos.com' });
    expect(after.spec.versions[0].schema!.openAPIV3Schema!.properties!.spec.properties).toHaveProperty('fromTheFuture');
  });
});

test('the S3 server (versitygw) serves the stack bucket to its root keys only (issue 19)', async () => {
  const { S3Client, ListObjectsV2Command } = await import('@aws-sdk/client-s3');
  const s3 = t.stack.s3;
  const client = (secretAccessKey: string) =>
    new S3Client({
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey },
    });
  const ok = client(s3.secretAccessKey);
  const bad = client('not-the-secret');
  try {
    expect((await ok.send(new ListObjectsV2Command({ Bucket: s3.bucket }))).KeyCount ?? 0).toBe(0);
    await expect(bad.send(new ListObjectsV2Command({ Bucket: s3.bucket }))).rejects.toThrow();
  } finally {
    ok.destroy();
    bad.destroy();
  }
  expect(s3.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
});
