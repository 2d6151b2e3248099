// etcd space upkeep on the real stack, one cluster with a 1 MiB quota and compaction off, under a writer:
// (1) scheduled defragmentation once compaction left most of a member's file free: one member at a time,
// leader last, no failed client request; (2) NOSPACE: reported (Alarm condition), never "restored" although
// backups and automatic restore are on; the controller compacts, defragments one member at a time (leader
// last) and disarms; writes resume and every acknowledged write reads back.
import { Etcd3 } from 'etcd3';
import { pins } from '../local/toolchain.js';
import { clusters, clusterWriter, converged, membership, missingKeys, TestController, startStackWithController, writeKeys, type ClusterView } from './support/controller.js';
import { etcdctl } from './support/etcdctl.js';
import { eventually, sleep, type TestStack } from './support/stack.js';

let t: TestStack;
let ctl: TestController;
const name = 'full';
type MemberStatus = { name: string; leader: boolean; dbSize?: number; dbSizeInUse?: number; lastDefragmentation?: { time: string; ms: number; beforeBytes: number; afterBytes: number } };
const get = async () => (await clusters(t).get(name))!;
const alarmOf = async () => (await get()).status.conditions?.find((c) => c.type === 'Alarm');
const memberStatuses = (c: ClusterView) => c.status.memberStatuses as MemberStatus[];
const succeeded = (c: ClusterView, workflow: string) => ((c.status.lastOperations ?? []) as unknown as { workflowId: string; result: string }[])
  .filter((o) => o.workflowId.endsWith(workflow) && o.result === 'Succeeded').length;
const events = async (reason: string) => (await t.core.listNamespacedEvent({ namespace: 'default', fieldSelector: `involvedObject.name=${name}` }))
  .items.filter((e) => e.reason === reason).map((e) => e.message ?? '');

beforeAll(async () => { ({ t, ctl } = await startStackWithController()); });
afterAll(async () => { await ctl?.stop(); await t?.stop(); });

/** Defragmentations per member from the status, printed; the leader's is the last one. */
function defragsOf(c: ClusterView, label: string) {
  const ms = memberStatuses(c).filter((m) => m.lastDefragmentation);
  for (const m of ms) {
    const d = m.lastDefragmentation!;
    console.log(`${label}: defragmented ${m.name}${m.leader ? ' (leader now)' : ''} in ${d.ms} ms: ${d.beforeBytes} → ${d.afterBytes} bytes at ${d.time}`);
  }
  return ms;
}

test('scheduled defragmentation under a writer fails no request; NOSPACE is recovered by the controller: compact, defragment, disarm, nothing lost', async () => {
  // Compaction off, so only the test (phase 1) and the runbook (phase 2) compact; a 1 MiB quota fills in a few dozen writes.
  await clusters(t).create({ apiVersion: 'coreos.com/v1', kind: 'EtcdCluster', metadata: { name }, spec: {
    size: 3, version: pins.ETCD36_VERSION, etcd: { autoCompactionRetention: '0', quotaBackendBytes: 1 << 20, defragFreeBytes: 200_000,
      flags: { metrics: 'extensive', 'election-timeout': '1500', 'heartbeat-interval': '150' } },
    backup: { maxSnapshot: 2, snapshotIntervalInSecond: 3600 } } });
  const m = await converged(t, name, 3);
  await writeKeys(m.ips, 'before', 50);
  // Flags passed through appear on the members; metrics (extensive: gRPC histograms) on the metrics port, behind a Service.
  for (const p of m.pods) {
    const cmd = (await t.core.readNamespacedPod({ name: p, namespace: 'default' })).spec!.containers[0].command!;
    expect(cmd).toEqual(expect.arrayContaining(['--metrics=extensive', '--election-timeout=1500', '--heartbeat-interval=150']));
  }
  const metrics = await (await fetch(`http://${new URL(m.ips[0]).hostname}:2381/metrics`)).text();
  expect(metrics).toMatch(/^etcd_server_has_leader 1$/m);
  expect(metrics).toMatch(/grpc_server_handling_seconds_bucket/);
  const svc = await t.core.readNamespacedService({ name: `${name}-metrics`, namespace: 'default' });
  expect(svc.metadata?.labels).toMatchObject({ etcd_cluster: name, etcd_metrics: 'true' });
  expect(svc.spec?.ports?.[0]).toMatchObject({ name: 'metrics', port: 2381 });
  const writer = clusterWriter(t, name);
  const client = new Etcd3({ hosts: m.ips, dialTimeout: 3000 });
  const big = 'x'.repeat(50_000);

  // 1. History of one key, compacted by hand: most of each member's file is free, worth a defragmentation.
  for (let i = 0; i < 7; i++) await client.put('frag').value(`${i}:${big}`);
  const rev = (await client.maintenance.status()).header.revision;
  await etcdctl(m.ips, ['compact', rev, '--physical']);
  const errorsBefore = writer.errors;
  const scheduled = await eventually('scheduled defragmentation done', async () => succeeded(await get(), '/defragment') > 0 && get(), 120000, 1000);
  const failedDuringDefrag = writer.errors - errorsBefore;
  console.log(`scheduled defragmentation under a writer: ${failedDuringDefrag} failed client request(s), ${writer.acked.length} writes acknowledged so far`);
  const first = defragsOf(scheduled, 'scheduled');
  expect(first.length).toBeGreaterThan(0);
  expect(failedDuringDefrag).toBe(0);
  expect(await events('Defragmented')).toHaveLength(first.length);
  for (const x of memberStatuses(scheduled)) expect(x.dbSize).toBeGreaterThan(0);

  // 2. Overwrite a few keys with 50 KB values until etcd refuses: history (never compacted) fills the quota.
  const last: Record<string, number> = {};
  let refused = '';
  for (let i = 0; i < 500 && !refused; i++) {
    try { await client.put(`fill/${i % 4}`).value(`${i}:${big}`); last[`fill/${i % 4}`] = i; } catch (e) { refused = (e as Error).message; }
  }
  const full = Date.now();
  console.log(`NOSPACE after ${Object.keys(last).length ? Math.max(...Object.values(last)) + 1 : 0} writes: ${refused}`);
  expect(refused).toMatch(/database space exceeded/);

  // The controller frees space by itself: a fresh write succeeds again.
  await eventually('writes accepted again', async () => { await client.put('probe').value('1'); return true; }, 180000, 250);
  const recovered = Date.now();
  console.log(`NOSPACE: writes accepted again ${((recovered - full) / 1000).toFixed(1)} s after the first refusal`);
  const c = await eventually('NOSPACE runbook recorded', async () => { const x = await get(); return succeeded(x, '/nospace') > 0 && !(await alarmOf()) && x; }, 60000, 1000);
  const second = defragsOf(c, 'NOSPACE').filter((x) => Date.parse(x.lastDefragmentation!.time) >= full);
  expect(second).toHaveLength(3);
  // One member at a time, the leader (as it was then) last.
  const order = second.sort((a, b) => Date.parse(a.lastDefragmentation!.time) - Date.parse(b.lastDefragmentation!.time)).map((x) => x.name);
  const defragEvents = (await events('Defragmented')).slice(-3);
  expect(defragEvents.find((e) => e.includes('(leader)'))).toContain(order[2]);
  for (const x of second) expect(x.lastDefragmentation!.afterBytes).toBeLessThan(1 << 20);
  expect(await events('Compacted')).toHaveLength(1);
  expect((await events('AlarmDisarmed'))[0]).toMatch(/disarmed \d+ NOSPACE alarm/);
  expect(c.status.lastCompaction).toMatchObject({ revision: expect.any(String) });

  // Nothing was restored or replaced.
  expect(c.status.lastRecovery).toBeUndefined();
  expect((c.status.lastOperations ?? []).filter((o) => o.type === 'recover')).toEqual([]);
  expect((await membership(t, name)).pods).toEqual(m.pods);

  await writeKeys(m.ips, 'after', 50);
  await sleep(2000);
  await writer.stop();
  const lost = await writer.lost(m.ips);
  console.log(`writer: ${writer.acked.length} acknowledged, ${writer.failed} failed (during NOSPACE), ${lost.length} lost`);
  expect(lost).toEqual([]);
  expect(await missingKeys(m.ips, 'before', 50)).toEqual([]);
  expect(await missingKeys(m.ips, 'after', 50)).toEqual([]);
  const values = await client.getAll().prefix('fill/').strings();
  client.close();
  expect(Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Number(v.split(':')[0])]))).toEqual(last);

  // A flag the controller owns is refused with its reason; the running cluster is left as it is.
  await clusters(t).patchSpec(name, { etcd: { flags: { 'data-dir': '/elsewhere' } } });
  const held = await eventually('InvalidSpec', async () => (await get()).status.conditions?.find((x) => x.type === 'Degraded' && x.reason === 'InvalidSpec'), 60000, 1000);
  console.log(`refused flag: ${held.message}`);
  expect(held.message).toMatch(/--data-dir is owned by the controller/);
  expect((await events('InvalidSpec')).some((e) => e.includes('--data-dir is owned by the controller'))).toBe(true);
  expect((await membership(t, name)).pods).toEqual(m.pods);
  await clusters(t).patchSpec(name, { etcd: { flags: { 'data-dir': null } } });
  await eventually('spec accepted again', async () => (await get()).status.conditions?.find((x) => x.type === 'Degraded' && x.reason === 'AsExpected'), 60000, 1000);
}, 600000);
