// The local stack itself: real kube-apiserver, controller-manager, scheduler and Temporal server.
import { fileURLToPath } from 'node:url';
import { ApiextensionsV1Api, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { httpOk } from '../local/stack.js';
import { eventually, startTestStack, type TestStack } from './support/stack.js';

let t: TestStack;
beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  t = await startTestStack({ nodes: 0, ui: true });
});
afterAll(async () => { await t?.stop(); });

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
      group: 'example.com', scope: 'Namespaced', names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
      versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', x_kubernetes_preserve_unknown_fields: true } } }],
    },
  };
  await ext.createCustomResourceDefinition({ body: crd });
  await eventually('CRD Established', async () => {
    const got = await ext.readCustomResourceDefinition({ name: 'widgets.example.com' });
    return got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
  }, 30000);
});

test('the garbage collector deletes a dependent when its owner is deleted', async () => {
  const owner = await t.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'owner' }, data: { a: '1' } } });
  await t.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'dependent', ownerReferences: [
    { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata!.uid! }] }, data: { b: '2' } } });
  await t.core.deleteNamespacedConfigMap({ name: 'owner', namespace: 'default' });
  await eventually('dependent garbage-collected', async () => {
    try { await t.core.readNamespacedConfigMap({ name: 'dependent', namespace: 'default' }); return false; } catch (e) { return (e as { code?: number }).code === 404; }
  }, 60000);
});

test('a Temporal workflow with one activity runs on a worker against the dev server', async () => {
  const connection = await NativeConnection.connect({ address: t.stack.temporalAddress });
  const worker = await Worker.create({
    connection, taskQueue: 'stack-test',
    workflowsPath: fileURLToPath(new URL('./fixtures/hello-workflows.ts', import.meta.url)),
    activities: { greet: async (name: string) => `hello, ${name}` },
  });
  const client = new Client({ connection: await Connection.connect({ address: t.stack.temporalAddress }) });
  const result = await worker.runUntil(client.workflow.execute('hello', { taskQueue: 'stack-test', workflowId: 'stack-test-hello', args: ['etcd'] }));
  expect(result).toBe('hello, etcd');
  await client.connection.close();
  await connection.close();
});

test('the Temporal Web UI answers HTTP 200', async () => {
  const res = await fetch(t.stack.uiUrl!);
  expect(res.status).toBe(200);
});
