// The seed walkthrough on the real stack, with data checked at every step: create, resize by apply
// and by `kubectl scale`, member recovery, controller recovery, destroy, pause, invalid specs, a cancelled
// join, an unknown version.
import { readFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import {
  clusters,
  clusterWriter,
  converged,
  convergedWithout,
  kubectl,
  membership,
  missingKeys,
  TestController,
  stackWithControllerPerFile,
  writeKeys,
  runCli,
} from './support/controller.js';
import { eventually, type TestStack } from './support/stack.js';
import { freePort } from '../local/stack.js';
import { kind, ownedSelector } from '../api/etcdcluster.js';

let t: TestStack;
let ctl: TestController;
const name = 'etcd-cluster';

let metricsPort = 0;
stackWithControllerPerFile((s) => ({ t, ctl } = s), {
  env: async () => {
    metricsPort = await freePort();
    // Wait deadlines capped at 60 s (KEC_WAIT_CAP_SECONDS), so the unknown-version upgrade fails within a minute.
    return { METRICS_PORT: String(metricsPort), KEC_WAIT_CAP_SECONDS: '60' };
  },
});

test('create: the seed example makes 3 members that serve reads and writes', async () => {
  const applied = await kubectl(t, 'apply', '-f', 'deploy/examples/example-etcd-cluster.yaml');
  expect(applied.stderr).toBe('');
  const m = await converged(t, name, 3);
  expect(m.pods).toEqual(['etcd-cluster-0000', 'etcd-cluster-0001', 'etcd-cluster-0002']);
  await writeKeys(m.ips, 'create', 50);
  expect(await missingKeys(m.ips, 'create', 50)).toEqual([]);
  const c = await clusters(t).get(name);
  expect(c?.status.conditions?.find((x) => x.type === 'Available')?.status).toBe('True');
  expect(c?.status.lastOperations?.[0]).toMatchObject({ type: 'create', result: 'Succeeded' });
  expect(
    (await t.core.readNamespacedService({ name: `${name}-client`, namespace: 'default' })).spec?.ports?.[0].port,
  ).toBe(2379);
  const events = await t.core.listNamespacedEvent({
    namespace: 'default',
    fieldSelector: `involvedObject.name=${name}`,
  });
  // A brand-new cluster starts all its members together (static bootstrap): no learner joins.
  expect(events.items.filter((e) => e.reason === 'MembersBootstrapped')).toHaveLength(1);
  expect(events.items.filter((e) => e.reason === 'MemberPromoted')).toHaveLength(0);
});

test('resize 3 → 5 by kubectl apply keeps every key', async () => {
  const manifest = readFileSync('deploy/examples/example-etcd-cluster.yaml', 'utf8').replace('size: 3', 'size: 5');
  const dir = t.stack.logsDir;
  const file = `${dir}/five.yaml`;
  (await import('node:fs')).writeFileSync(file, manifest);
  expect((await kubectl(t, 'apply', '-f', file)).code).toBe(0);
  const m = await converged(t, name, 5);
  expect(m.pods).toHaveLength(5);
  expect(await missingKeys(m.ips, 'create', 50)).toEqual([]);
  await writeKeys(m.ips, 'five', 20);
});

test('resize 5 → 3 by kubectl scale never removes the leader and keeps every key', async () => {
  const before = await membership(t, name);
  expect((await kubectl(t, 'scale', `etcdcluster/${name}`, '--replicas=3')).code).toBe(0);
  const m = await converged(t, name, 3);
  expect(m.pods).toContain(before.leader);
  expect(await missingKeys(m.ips, 'create', 50)).toEqual([]);
  expect(await missingKeys(m.ips, 'five', 20)).toEqual([]);
});

test('the controller serves Prometheus metrics and health endpoints', async () => {
  const text = await eventually(
    'metrics',
    async () => {
      const body = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      return /kec_members_ready\{cluster="etcd-cluster",namespace="default"\} 3/.test(body) ? body : undefined;
    },
    30000,
  );
  expect(text).toMatch(/kec_operations_total\{type="create",result="Succeeded"\} 1/);
  expect(text).toMatch(/kec_operations_total\{type="scale-up",result="Succeeded"\} 1/);
  expect(text).toMatch(/kec_operation_duration_seconds_count\{type="scale-down"\} 1/);
  expect(text).toMatch(/kec_clusters 1/);
  expect(text).toMatch(/kec_process_resident_memory_bytes \d+/); // process metrics from prom-client
  expect((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status).toBe(200);
});

test('member recovery: a deleted member pod is replaced by a new member while a scheduled backup that cannot succeed runs; keys intact', async () => {
  // The backup claim can never bind (its StorageClass does not exist): the Schedule's first run waits for a tool
  // that never starts, and fails at its (capped) deadline. The replacement must not wait for it.
  await t.core.createNamespacedPersistentVolumeClaim({
    namespace: 'default',
    body: {
      metadata: { name: `pvc-${name}` },
      spec: {
        accessModes: ['ReadWriteOnce'],
        storageClassName: 'no-such-storage-class',
        resources: { requests: { storage: '64Mi' } },
      },
    },
  });
  await clusters(t).patchSpec(name, { backup: { snapshotIntervalInSecond: 3600, volumeSizeInMB: 64 } });
  const temporal = new Client({ connection: await Connection.connect({ address: t.stack.temporalAddress }) });
  const schedule = temporal.schedule.getHandle(`default/${name}/backups`);
  const backupRun = await eventually(
    'the first scheduled backup running',
    async () => (await schedule.describe().catch(() => undefined))?.info.recentActions[0]?.action.workflow.workflowId,
    60000,
  );
  expect(backupRun).toMatch(new RegExp(`^default/${name}/backup-`));

  const before = await membership(t, name);
  const victim = before.pods[0];
  await t.core.deleteNamespacedPod({ name: victim, namespace: 'default' });
  expect((await temporal.workflow.getHandle(backupRun).describe()).status.name).toBe('RUNNING');
  const m = await convergedWithout(t, name, 3, victim, 'replacement', 120000);
  expect(m.pods.filter((p) => !before.pods.includes(p))).toHaveLength(1);
  expect(await missingKeys(m.ips, 'create', 50)).toEqual([]);

  // The backup's failure: in the status and as an Event; spec.backup removed → the Schedule goes.
  const c = await eventually(
    'the backup failure in status.lastBackup',
    async () => {
      const x = await clusters(t).get(name);
      return (x?.status.lastBackup as { result?: string } | undefined)?.result === 'Failed' && x;
    },
    180000,
  );
  expect(c.status.lastBackup).toMatchObject({ workflowId: backupRun });
  expect(c.status.backupSchedule).toBe(`default/${name}/backups`);
  const events = await t.core.listNamespacedEvent({ namespace: 'default' });
  expect(events.items.some((e) => e.reason === 'BackupFailed' && e.message?.includes(backupRun))).toBe(true);
  // A spec.backup change rolls out to the backup tool's Deployment (applied again for the spec's new generation).
  await clusters(t).patchSpec(name, { backup: { maxSnapshot: 3 } });
  const env = await eventually(
    'MAX_SNAPSHOT=3 on the backup tool',
    async () => {
      const got = await kubectl(
        t,
        'get',
        'deployment',
        `${name}-backup-tool`,
        '-o',
        'jsonpath={.spec.template.spec.containers[0].env}',
      );
      return /"name":"MAX_SNAPSHOT","value":"3"/.test(got.stdout) && got.stdout;
    },
    60000,
  );
  expect(env).toContain('"name":"BACKUP_DIR"');
  await clusters(t).patchSpec(name, { backup: null });
  await eventually('schedule deleted', async () => !(await schedule.describe().catch(() => undefined)), 60000);
  await t.core.deleteNamespacedPersistentVolumeClaim({ name: `pvc-${name}`, namespace: 'default' });
  await temporal.connection.close();
});

test('convergence: a client Service, the disruption budget and the NetworkPolicy deleted by hand come back; writes go on and read back', async () => {
  const writer = clusterWriter(t, name);
  await eventually('writes acknowledged', async () => writer.acked.length >= 20, 60000);
  // spec.networkPolicy: the members' policy is applied (peers from members; clients from members, the tool, the
  // controller's pods and the listed sources). The stack's runtime does not enforce it: what is checked is the object.
  await clusters(t).patchSpec(name, {
    networkPolicy: { enabled: true, clients: [{ ipBlock: { cidr: '10.0.0.0/8' } }] },
  });
  type Rule = { ports?: { protocol: string; port: number }[]; from?: object[] };
  const policy = async () => {
    const got = await kubectl(t, 'get', 'networkpolicy', name, '-o', 'json');
    return got.code === 0 ? (JSON.parse(got.stdout) as { spec: { podSelector: object; ingress: Rule[] } }) : undefined;
  };
  const np = await eventually('NetworkPolicy applied', policy, 60000);
  const members = { podSelector: { matchLabels: { app: 'etcd', etcd_cluster: name } } };
  const tcp = (port: number) => [{ protocol: 'TCP', port }];
  expect(np.spec.podSelector).toEqual(members.podSelector);
  expect(np.spec.ingress).toEqual([
    { ports: tcp(2380), from: [members] },
    {
      ports: tcp(2379),
      from: [
        members,
        { podSelector: { matchLabels: { app: 'etcd-backup-tool', etcd_cluster: name } } },
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-etcd-controller' } },
          podSelector: { matchLabels: { app: 'kube-etcd-controller' } },
        },
        { ipBlock: { cidr: '10.0.0.0/8' } },
      ],
    },
    { ports: tcp(2381) },
  ]);
  expect((await kubectl(t, 'delete', 'networkpolicy', name)).code).toBe(0);
  const svc = `${name}-client`;
  const uid = (await t.core.readNamespacedService({ name: svc, namespace: 'default' })).metadata?.uid;
  await t.core.deleteNamespacedService({ name: svc, namespace: 'default' });
  expect((await kubectl(t, 'delete', 'poddisruptionbudget', name)).code).toBe(0);
  const back = await eventually(
    'client Service back',
    async () => {
      const s = await t.core.readNamespacedService({ name: svc, namespace: 'default' }).catch(() => undefined);
      return s?.metadata?.uid !== uid && s;
    },
    60000,
  );
  expect(back.spec?.ports?.map((p) => p.port)).toEqual([2379]);
  expect(back.metadata?.ownerReferences?.[0]).toMatchObject({ kind, name });
  // Server-side apply by the controller's field manager.
  expect(back.metadata?.managedFields?.map((f) => `${f.manager}/${f.operation}`)).toContain(
    'kube-etcd-controller/Apply',
  );
  await eventually('disruption budget back', async () => (await kubectl(t, 'get', 'pdb', name)).code === 0, 60000);
  await eventually('NetworkPolicy back', policy, 60000);
  // Turned off in the spec: the policy is deleted.
  await clusters(t).patchSpec(name, { networkPolicy: null });
  await eventually('NetworkPolicy removed', async () => !(await policy()), 60000);
  const acked = writer.acked.length;
  await eventually('writes go on', async () => writer.acked.length >= acked + 20, 60000);
  await writer.stop();
  expect(writer.failed).toBe(0);
  expect(await writer.lost((await membership(t, name)).ips)).toEqual([]);
});

test('controller recovery: with the controller down a member is lost; the restarted controller recovers it', async () => {
  await ctl.kill();
  const before = await membership(t, name);
  const victim = before.pods[1];
  await t.core.deleteNamespacedPod({ name: victim, namespace: 'default' });
  await eventually('pod gone', async () => !(await membership(t, name)).pods.includes(victim), 60000);
  // Nothing acts while the controller is down: still 2 pods and 3 etcd members.
  const during = await membership(t, name);
  expect(during.pods).toHaveLength(2);
  expect(during.members).toHaveLength(3);
  ctl.start();
  const m = await convergedWithout(t, name, 3, victim, 'recovered', 180000);
  expect(await missingKeys(m.ips, 'create', 50)).toEqual([]);
});

test('pause: while spec.paused is true nothing changes; on resume the cluster heals', async () => {
  await clusters(t).patchSpec(name, { paused: true });
  await eventually('phase Paused', async () => (await clusters(t).get(name))?.status.phase === 'Paused', 60000);
  const before = await membership(t, name);
  await t.core.deleteNamespacedPod({ name: before.pods[0], namespace: 'default' });
  await new Promise((r) => setTimeout(r, 15000));
  const during = await membership(t, name);
  expect(during.pods).toHaveLength(2);
  expect(during.members).toHaveLength(3);
  await clusters(t).patchSpec(name, { paused: false });
  const m = await converged(t, name, 3);
  expect(await missingKeys(m.ips, 'create', 50)).toEqual([]);
});

test('invalid specs are refused by the API with a message that names the field', async () => {
  const attempt = async (spec: Record<string, unknown>) => {
    try {
      await clusters(t).createFromSpec('bad', spec);
      return '';
    } catch (e) {
      return String((e as { body?: unknown }).body ?? (e as Error).message);
    }
  };
  expect(await attempt({ size: 0 })).toMatch(/spec\.size.*should be greater than or equal to 1/);
  expect(await attempt({ size: 10 })).toMatch(/spec\.size.*should be less than or equal to 9/);
  expect(await attempt({ size: 3, version: 'latest' })).toMatch(/spec\.version.*should match/);
  // A size change on the existing cluster that the schema refuses leaves it untouched.
  const bad = await kubectl(t, 'patch', 'etcdcluster', name, '--type=merge', '-p', '{"spec":{"size":-1}}');
  expect(bad.code).not.toBe(0);
  expect(bad.stderr).toMatch(/spec\.size/);
  expect((await clusters(t).get(name))?.spec.size).toBe(3);
});

test('a spec the controller cannot run is held with a condition and an event; the cluster keeps serving', async () => {
  await clusters(t).createFromSpec('old-version', { size: 1, version: '3.3.27' });
  const c = await eventually(
    'InvalidSpec condition',
    async () => {
      const x = await clusters(t).get('old-version');
      return x?.status?.conditions?.some((k) => k.reason === 'InvalidSpec') ? x : undefined;
    },
    60000,
  );
  expect(c.status.conditions?.find((k) => k.reason === 'InvalidSpec')?.message).toMatch(
    /spec\.version 3\.3\.27 is not supported/,
  );
  expect(
    (await t.core.listNamespacedPod({ namespace: 'default', labelSelector: ownedSelector('old-version') })).items,
  ).toHaveLength(0);
  await clusters(t).delete('old-version');
  const m = await membership(t, name);
  expect(await missingKeys(m.ips, 'create', 50)).toEqual([]);
});

type Op = { type: string; result: string; message?: string };
const lastOp = async (type: string, result: string) =>
  (((await clusters(t).get(name))?.status.lastOperations as Op[] | undefined) ?? []).find(
    (o) => o.type === type && o.result === result,
  );

test('a join whose image cannot start never adds its learner; `cancel` of the CLI removes its pod; keys intact', async () => {
  const before = await membership(t, name);
  // An image no node can pull holds the join at its pod's start: the pod runs first, its etcd held, and only a
  // started pod's member is added to etcd.
  await clusters(t).patchSpec(name, { size: 4, repository: 'example.invalid/etcd' });
  const joining = await eventually(
    'the join held at its pod start',
    async () => {
      const op = (await clusters(t).get(name))?.status.currentOperation as { step?: string } | null;
      const pod = /^wait for pod (\S+) to start/.exec(op?.step ?? '')?.[1];
      if (!pod) return undefined;
      const p = await t.core.readNamespacedPod({ name: pod, namespace: 'default' }).catch(() => undefined);
      const waiting = p?.status?.containerStatuses?.find((c) => c.name === 'etcd')?.state?.waiting?.reason ?? '';
      return /ImagePull|ErrImage/.test(waiting) ? pod : undefined;
    },
    120000,
  );
  expect((await membership(t, name)).learners).toBe(0);
  // The user changes their mind: the old spec back, and the running join cancelled.
  await clusters(t).patchSpec(name, { size: 3, repository: 'quay.io/coreos/etcd' });
  expect((await cli('cancel', name)).out).toMatch(/cancel requested/);
  await eventually('scale-up Cancelled', () => lastOp('scale-up', 'Cancelled'), 120000);
  const m = await converged(t, name, 3);
  expect(m.learners).toBe(0);
  expect(m.members).toEqual(before.members);
  const pods = await t.core.listNamespacedPod({ namespace: 'default', labelSelector: ownedSelector(name) });
  expect(pods.items.map((p) => p.metadata!.name)).not.toContain(joining);
  const events = await t.core.listNamespacedEvent({
    namespace: 'default',
    fieldSelector: `involvedObject.name=${name}`,
  });
  const added = events.items.filter((e) => e.reason === 'MemberAdded').map((e) => e.message ?? '');
  expect(added.filter((msg) => msg.includes(joining))).toEqual([]);
  expect(await missingKeys(m.ips, 'create', 50)).toEqual([]);
});

test('an unknown version fails its upgrade within its deadline, naming pod and image; the cluster serves; fixed, it converges', async () => {
  const writer = clusterWriter(t, name);
  await eventually('writes acknowledged', async () => writer.acked.length >= 20, 60000);
  await clusters(t).patchSpec(name, { version: '3.5.99' });
  const failed = await eventually('upgrade Failed', () => lastOp('upgrade', 'Failed'), 180000);
  expect(failed.message).toMatch(/etcd-cluster-\d{4} did not come back healthy on 3\.5\.99: .*/);
  // The kubelet's wording (containerd's "failed to pull and unpack image", or its Event).
  expect(failed.message).toMatch(/[Ff]ailed to pull (and unpack )?image "quay\.io\/coreos\/etcd:v3\.5\.99"/);
  const acked = writer.acked.length;
  await eventually('writes go on', async () => writer.acked.length >= acked + 20, 60000);
  await clusters(t).patchSpec(name, { version: '3.5.33' });
  const m = await converged(t, name, 3);
  await writer.stop();
  expect(writer.failed).toBe(0);
  expect(await writer.lost(m.ips)).toEqual([]);
  expect(await missingKeys(m.ips, 'create', 50)).toEqual([]);
  expect((await clusters(t).get(name))?.status.currentVersion).toBe('3.5.33');
});

test('destroy: deleting the EtcdCluster removes its pods, services and claims', async () => {
  expect((await kubectl(t, 'delete', '-f', 'deploy/examples/example-etcd-cluster.yaml')).code).toBe(0);
  await eventually('cluster gone', async () => !(await clusters(t).get(name)), 120000);
  const pods = await t.core.listNamespacedPod({ namespace: 'default', labelSelector: ownedSelector(name) });
  const svcs = await t.core.listNamespacedService({ namespace: 'default', labelSelector: ownedSelector(name) });
  const pvcs = await t.core.listNamespacedPersistentVolumeClaim({
    namespace: 'default',
    labelSelector: ownedSelector(name),
  });
  expect([pods.items.length, svcs.items.length, pvcs.items.length]).toEqual([0, 0, 0]);
});

const cli = (...args: string[]) => runCli(t, ...args);
