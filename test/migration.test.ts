// Adopting unmanaged etcd clusters (one legacy member, then three, the latter with the worker killed
// after every step) with the CLI, writes continuing throughout; a dry run changes nothing; a legacy
// cluster that does not answer is refused.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import { pins, tsEntry } from '../local/toolchain.js';
import {
  clusters,
  ContinuousWriter,
  converged,
  reportCrashes,
  crashEverywhere,
  membership,
  missingKeys,
  TestController,
  stackWithControllerPerFile,
  writeKeys,
} from './support/controller.js';
import { etcdPod, etcdPodsService } from './support/etcd-pods.js';
import { eventually, type TestStack } from './support/stack.js';
import { ownedSelector } from '../api/etcdcluster.js';

const run = promisify(execFile);
let t: TestStack;
let ctl: TestController;

stackWithControllerPerFile((s) => ({ t, ctl } = s));

async function cli(...args: string[]): Promise<{ code: number; out: string }> {
  const [cmd, ...rest] = tsEntry('cli/main.ts', ...args);
  try {
    const r = await run(cmd, rest, {
      env: {
        ...process.env,
        NODE_OPTIONS: '',
        KUBECONFIG: t.stack.kubeconfig,
        TEMPORAL_ADDRESS: t.stack.temporalAddress,
      },
    });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? 1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

async function legacyCluster(names: string[], sub: string, enableV2 = false): Promise<string[]> {
  await t.core.createNamespacedService({ namespace: 'default', body: etcdPodsService(sub) });
  for (const n of names)
    await t.core.createNamespacedPod({
      namespace: 'default',
      body: etcdPod(n, { version: pins.ETCD35_VERSION, cluster: names, subdomain: sub, enableV2 }),
    });
  const pods = await Promise.all(
    names.map((n) =>
      eventually(
        `${n} ready`,
        async () => {
          const p = await t.core.readNamespacedPod({ name: n, namespace: 'default' });
          return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
        },
        90000,
      ),
    ),
  );
  return pods.map((p: V1Pod) => `http://${p.status!.podIP}:2379`);
}

/** Endpoints a client would use during the move: the legacy members and the managed ones as they appear. */
const allEndpoints = (legacy: string[], cluster: string) => async () => {
  const pods = await t.core.listNamespacedPod({ namespace: 'default', labelSelector: ownedSelector(cluster) });
  return [...legacy, ...pods.items.filter((p) => p.status?.podIP).map((p) => `http://${p.status!.podIP}:2379`)];
};

test('a dry run prints the plan and changes nothing', async () => {
  // An old deployment that served etcd's v2 API and was written through it: data in the v2 store (see the 3.6 test below).
  const legacy = await legacyCluster(['solo-legacy'], 'solo-legacy', true);
  const v2 = await fetch(`${legacy[0]}/v2/keys/legacy-v2/config`, {
    method: 'PUT',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'value=1',
  });
  expect(v2.status).toBe(201);
  await writeKeys(legacy, 'legacy1', 40);
  const r = await cli('migrate', '--endpoints', legacy.join(','), '--name', 'adopted', '--size', '3', '--dry-run');
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/plan \(dry run, nothing changed\)/);
  expect(r.out).toMatch(/join adopted-0000 as a learner/);
  expect(await clusters(t).get('adopted')).toBeUndefined();
});

test('a single legacy member holding keys becomes a 3-member managed cluster; writes continue throughout', async () => {
  const legacy = [(await t.core.readNamespacedPod({ name: 'solo-legacy', namespace: 'default' })).status!.podIP!].map(
    (ip) => `http://${ip}:2379`,
  );
  const writer = new ContinuousWriter(allEndpoints(legacy, 'adopted'), 'adopt1');
  writer.start();
  const r = await cli('migrate', '--endpoints', legacy.join(','), '--name', 'adopted', '--size', '3');
  expect(r.out).toMatch(/done:/);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/solo-legacy/);
  const m = await converged(t, 'adopted', 3);
  await writer.stop();
  expect(m.pods).toEqual(['adopted-0000', 'adopted-0001', 'adopted-0002']);
  expect(m.members).toEqual(m.pods);
  expect(await missingKeys(m.ips, 'legacy1', 40)).toEqual([]);
  expect(writer.failed).toBe(0);
  expect(await writer.lost(m.ips)).toEqual([]);
  // The legacy pod is not deleted by us; an Event says it may be.
  expect((await t.core.readNamespacedPod({ name: 'solo-legacy', namespace: 'default' })).metadata?.name).toBe(
    'solo-legacy',
  );
  const events = await t.core.listNamespacedEvent({
    namespace: 'default',
    fieldSelector: 'involvedObject.name=adopted',
  });
  expect(events.items.find((e) => e.reason === 'Adopted')?.message).toMatch(/default\/solo-legacy .*may be deleted/);
  expect((await clusters(t).get('adopted'))?.status.phase).toBe('Running');
});

test("3.5 → 3.6 of the cluster adopted from a v2 user is refused by etcd's check: data in the v2 store; nothing changes", async () => {
  const before = await converged(t, 'adopted', 3);
  await clusters(t).patchSpec('adopted', { version: pins.ETCD36_VERSION });
  const held = await eventually(
    'upgrade refused',
    async () =>
      (await clusters(t).get('adopted'))?.status.conditions?.find(
        (k) => k.reason === 'UpgradeRefused' && k.message.includes('etcdutl'),
      ),
    120000,
    1000,
  );
  console.log(`refused: ${held.message}`);
  expect(held.message).toMatch(
    /etcdutl check v2store found custom content in the v2 store(?: and v2 requests in the WAL [^:]*)? on adopted-0000, adopted-0001, adopted-0002: migrate/,
  );
  expect(held.message).toMatch(/members stay on 3\.5\.33 and keep serving/);
  const events = await t.core.listNamespacedEvent({
    namespace: 'default',
    fieldSelector: 'involvedObject.name=adopted',
  });
  expect(events.items.some((e) => e.reason === 'V2StoreCheckFailed')).toBe(true);
  // Nothing changed: same members, all on 3.5, serving reads and writes.
  const after = await membership(t, 'adopted');
  expect(after.pods).toEqual(before.pods);
  expect(after.healthy).toBe(3);
  const c = await clusters(t).get('adopted');
  expect(((c?.status.memberStatuses ?? []) as { version: string }[]).map((m) => m.version)).toEqual(
    Array(3).fill(pins.ETCD35_VERSION),
  );
  await writeKeys(after.ips, 'after-refusal', 10);
  expect(await missingKeys(after.ips, 'legacy1', 40)).toEqual([]);
  expect(await missingKeys(after.ips, 'after-refusal', 10)).toEqual([]);
});

test('a 3-member legacy cluster is adopted likewise, through a worker crash after each step of the migration', async () => {
  const names = ['trio-legacy-0', 'trio-legacy-1', 'trio-legacy-2'];
  const legacy = await legacyCluster(names, 'trio-legacy');
  await writeKeys(legacy, 'legacy3', 40);
  const writer = new ContinuousWriter(allEndpoints(legacy, 'adopted3'), 'adopt3');
  writer.start();
  const env = crashEverywhere(t, 'migrate', 'migrateCluster');
  await ctl.stop();
  ctl.supervise(env);
  const r = await cli('migrate', '--endpoints', legacy.join(','), '--name', 'adopted3', '--size', '3');
  expect(r).toEqual({ code: 0, out: expect.stringMatching(/done:/) });
  const m = await converged(t, 'adopted3', 3);
  await writer.stop();
  await ctl.stop();
  ctl.supervise();
  const hit = reportCrashes(env, 'migrate');
  expect(hit).toEqual(
    expect.arrayContaining([
      'migrateCluster.inspectLegacyCluster',
      'migrateCluster.addLearner',
      'migrateCluster.removeMember',
      'migrateCluster.finishAdoption',
    ]),
  );
  expect(m.members).toEqual(['adopted3-0000', 'adopted3-0001', 'adopted3-0002']);
  expect(await missingKeys(m.ips, 'legacy3', 40)).toEqual([]);
  expect(writer.failed).toBe(0);
  expect(await writer.lost(m.ips)).toEqual([]);
}, 900000);

test('a legacy cluster whose endpoint does not answer is refused before anything changes', async () => {
  const r = await cli('migrate', '--endpoints', 'http://127.0.0.1:1', '--name', 'nowhere', '--size', '3');
  expect(r.code).not.toBe(0);
  expect(r.out).toMatch(/cannot adopt: endpoint\(s\) do not answer: http:\/\/127\.0\.0\.1:1/);
  expect(await clusters(t).get('nowhere')).toBeUndefined();
});

test('CLI errors name the problem and the fix', async () => {
  let r = await cli('status', 'no-such-cluster');
  expect(r.code).toBe(1);
  expect(r.out).toMatch(
    /EtcdCluster default\/no-such-cluster not found \(list them with `kubectl get etcdclusters -n default`/,
  );
  r = await cli('migrate', '--endpoints', 'http://127.0.0.1:1', '--bogus');
  expect(r.code).toBe(2);
  expect(r.out).toMatch(/Unknown option '--bogus'[\s\S]*usage: kube-etcd-controller/);
  r = await cli('frobnicate');
  expect(r.code).toBe(2);
  expect(r.out).toMatch(/unknown command "frobnicate"; use one of: backup, backups, restore, status/);
  const [cmd, ...rest] = tsEntry('cli/main.ts', 'cancel', 'adopted');
  const off = await run(cmd, rest, {
    env: { ...process.env, NODE_OPTIONS: '', KUBECONFIG: t.stack.kubeconfig, TEMPORAL_ADDRESS: '127.0.0.1:1' },
  }).then(
    () => '',
    (e) => `${(e as { stderr: string }).stderr}`,
  );
  expect(off).toMatch(/cannot reach Temporal at 127\.0\.0\.1:1 .*set TEMPORAL_ADDRESS/);
});
