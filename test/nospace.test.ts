// etcd space upkeep on the real stack, one cluster with a 1 MiB quota and compaction off, under a writer:
// (1) scheduled defragmentation once compaction left most of a member's file free: one member at a time,
// leader last, no failed client request; (2) NOSPACE: reported (Alarm condition), never "restored" although
// backups and automatic restore are on; the controller compacts, defragments one member at a time (leader
// last) and disarms; writes resume and every acknowledged write reads back.
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { pins } from '../local/toolchain.js';
import {
  clusters,
  clusterWriter,
  ContinuousWriter,
  converged,
  convergedNow,
  membership,
  missingKeys,
  stackWithControllerPerFile,
  writeKeys,
  type ClusterView,
} from './support/controller.js';
import { etcdctl } from './support/etcdctl.js';
import { eventually, sleep, type TestStack } from './support/stack.js';

let t: TestStack;
const name = 'full';
type MemberStatus = {
  name: string;
  leader: boolean;
  dbSize?: number;
  dbSizeInUse?: number;
  lastDefragmentation?: { time: string; ms: number; beforeBytes: number; afterBytes: number };
};
const get = async () => (await clusters(t).get(name))!;
const alarmOf = async () => (await get()).status.conditions?.find((c) => c.type === 'Alarm');
const memberStatuses = (c: ClusterView) => c.status.memberStatuses as MemberStatus[];
const succeeded = (c: ClusterView, workflow: string) =>
  ((c.status.lastOperations ?? []) as unknown as { workflowId: string; result: string }[]).filter(
    (o) => o.workflowId.endsWith(workflow) && o.result === 'Succeeded',
  ).length;
const events = async (reason: string) =>
  (await t.core.listNamespacedEvent({ namespace: 'default', fieldSelector: `involvedObject.name=${name}` })).items
    .filter((e) => e.reason === reason)
    .map((e) => e.message ?? '');

stackWithControllerPerFile((s) => ({ t } = s));

/** Defragmentations per member from the status, printed; the leader's is the last one. */
function defragsOf(c: ClusterView, label: string) {
  const ms = memberStatuses(c).filter((m) => m.lastDefragmentation);
  for (const m of ms) {
    const d = m.lastDefragmentation!;
    console.log(
      `${label}: defragmented ${m.name}${m.leader ? ' (leader now)' : ''} in ${d.ms} ms: ${d.beforeBytes} → ${d.afterBytes} bytes at ${d.time}`,
    );
  }
  return ms;
}

test('scheduled defragmentation under a writer fails no request; NOSPACE is recovered by the controller: compact, defragment, disarm, nothing lost', async () => {
  // Compaction off, so only the test (phase 1) and the runbook (phase 2) compact; a 1 MiB quota fills in a few dozen writes.
  await clusters(t).createFromSpec(name, {
    size: 3,
    version: pins.ETCD36_VERSION,
    etcd: {
      autoCompactionRetention: '0',
      quotaBackendBytes: 1 << 20,
      defragFreeBytes: 200_000,
      flags: { metrics: 'extensive', 'election-timeout': '1500', 'heartbeat-interval': '150' },
    },
    backup: { maxSnapshot: 2, snapshotIntervalInSecond: 3600 },
  });
  const m = await converged(t, name, 3);
  await writeKeys(m.ips, 'before', 50);
  // Flags passed through appear on the members; metrics (extensive: gRPC histograms) on the metrics port, behind a Service.
  for (const p of m.pods) {
    const cmd = (await t.core.readNamespacedPod({ name: p, namespace: 'default' })).spec!.containers[0].command!;
    expect(cmd).toEqual(
      expect.arrayContaining(['--metrics=extensive', '--election-timeout=1500', '--heartbeat-interval=150']),
    );
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
  const scheduled = await eventually(
    'scheduled defragmentation done',
    async () => succeeded(await get(), '/defragment') > 0 && get(),
    120000,
    1000,
  );
  const failedDuringDefrag = writer.errors - errorsBefore;
  console.log(
    `scheduled defragmentation under a writer: ${failedDuringDefrag} failed client request(s), ${writer.acked.length} writes acknowledged so far`,
  );
  const first = defragsOf(scheduled, 'scheduled');
  expect(first.length).toBeGreaterThan(0);
  expect(failedDuringDefrag).toBe(0);
  // One Event per member defragmented; the members' stats may show the compaction at different looks, so the
  // scheduled defragmentation can take them in more than one run.
  const defragmented = await events('Defragmented');
  for (const x of first) expect(defragmented.some((e) => e.includes(` ${x.name}`))).toBe(true);
  for (const x of memberStatuses(scheduled)) expect(x.dbSize).toBeGreaterThan(0);

  // 2. Overwrite a few keys with 50 KB values until etcd refuses: history (never compacted) fills the quota.
  const last: Record<string, number> = {};
  let refused = '';
  let refusedAt = -1;
  for (let i = 0; i < 500 && !refused; i++) {
    try {
      await client.put(`fill/${i % 4}`).value(`${i}:${big}`);
      last[`fill/${i % 4}`] = i;
    } catch (e) {
      refused = (e as Error).message;
      refusedAt = i;
    }
  }
  const full = Date.now();
  console.log(
    `NOSPACE after ${Object.keys(last).length ? Math.max(...Object.values(last)) + 1 : 0} writes: ${refused}`,
  );
  expect(refused).toMatch(/database space exceeded/);

  // The controller frees space by itself: a fresh write succeeds again.
  await eventually(
    'writes accepted again',
    async () => {
      await client.put('probe').value('1');
      return true;
    },
    180000,
    250,
  );
  const recovered = Date.now();
  console.log(`NOSPACE: writes accepted again ${((recovered - full) / 1000).toFixed(1)} s after the first refusal`);
  const c = await eventually(
    'NOSPACE runbook recorded',
    async () => {
      const x = await get();
      return succeeded(x, '/nospace') > 0 && !(await alarmOf()) && x;
    },
    60000,
    1000,
  );
  const second = defragsOf(c, 'NOSPACE').filter((x) => Date.parse(x.lastDefragmentation!.time) >= full);
  expect(second).toHaveLength(3);
  // One member at a time, the leader (as it was then) last in both runs.
  const leaderDefrags = (await events('Defragmented')).filter((e) => e.includes('(leader)'));
  console.log(`leader defragmentations: ${leaderDefrags.join(' | ')}`);
  expect(leaderDefrags.length).toBeGreaterThanOrEqual(1); // the scheduled run may not have needed the leader
  for (const e of leaderDefrags) expect(e).toMatch(/^(\d+)\/\1 /);
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
  console.log(
    `writer: ${writer.acked.length} acknowledged, ${writer.failed} failed (during NOSPACE), ${lost.length} lost`,
  );
  expect(lost).toEqual([]);
  expect(await missingKeys(m.ips, 'before', 50)).toEqual([]);
  expect(await missingKeys(m.ips, 'after', 50)).toEqual([]);
  const values = await client.getAll().prefix('fill/').strings();
  client.close();
  // Every acknowledged value reads back; the refused write is ambiguous (seen applied once: the client retried a put
  // whose first attempt raised the alarm), so its key holds either.
  const read = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Number(v.split(':')[0])]));
  const ambiguous = `fill/${refusedAt % 4}`;
  expect([last[ambiguous], refusedAt]).toContain(read[ambiguous]);
  expect({ ...read, [ambiguous]: last[ambiguous] }).toEqual(last);

  // A flag the controller owns is refused with its reason; the running cluster is left as it is.
  await clusters(t).patchSpec(name, { etcd: { flags: { 'data-dir': '/elsewhere' } } });
  const held = await eventually(
    'InvalidSpec',
    async () => (await get()).status.conditions?.find((x) => x.type === 'Degraded' && x.reason === 'InvalidSpec'),
    60000,
    1000,
  );
  console.log(`refused flag: ${held.message}`);
  expect(held.message).toMatch(/--data-dir is owned by the controller/);
  expect((await events('InvalidSpec')).some((e) => e.includes('--data-dir is owned by the controller'))).toBe(true);
  expect((await membership(t, name)).pods).toEqual(m.pods);
  await clusters(t).patchSpec(name, { etcd: { flags: { 'data-dir': null } } });
  await eventually(
    'spec accepted again',
    async () => (await get()).status.conditions?.find((x) => x.type === 'Degraded' && x.reason === 'AsExpected'),
    60000,
    1000,
  );

  // A changed flag rolls out under a writer: each member is replaced by one started with the spec's flags, the leader last.
  const roll = new ContinuousWriter(async () => (await membership(t, name)).ips, 'roll');
  roll.start();
  const rollStart = Date.now();
  // The new members also run etcd's periodic corruption check (used by the CORRUPT test below).
  await clusters(t).patchSpec(name, {
    etcd: { autoCompactionRetention: '1m', flags: { 'election-timeout': '2000', 'corrupt-check-time': '2s' } },
  });
  const reconfiguredOps = async () =>
    ((await get()).status.lastOperations ?? []).filter((o) => o.type === 'reconfigure-member');
  // Done when every member was replaced (a placement move may follow: not waited for).
  const rolled = await eventually(
    'every member started with the new flags',
    async () => {
      const now = await membership(t, name);
      if (now.pods.length !== 3 || now.pods.some((p) => m.pods.includes(p))) return undefined;
      const cmds = await Promise.all(
        now.pods.map(
          async (p) => (await t.core.readNamespacedPod({ name: p, namespace: 'default' })).spec!.containers[0].command!,
        ),
      );
      return (
        cmds.every((c) => c.includes('--election-timeout=2000') && c.includes('--auto-compaction-retention=1m')) && now
      );
    },
    420000,
    1000,
  );
  const rollTime = (Date.now() - rollStart) / 1000;
  await roll.stop();
  // The last old member leaves etcd before its operation ends (its pod deletion is awaited after): wait for its record.
  const reconfigured = await eventually(
    'three reconfigure-member operations recorded',
    async () => {
      const ops = await reconfiguredOps();
      return ops.length >= 3 && ops;
    },
    60000,
    1000,
  );
  const rollLost = await roll.lost(rolled.ips);
  console.log(
    `flag change rolled over ${reconfigured.length} member(s) in ${rollTime.toFixed(1)} s: ` +
      `writer ${roll.acked.length} acknowledged, ${roll.failed} failed, ${rollLost.length} lost`,
  );
  expect(reconfigured.map((o) => o.result)).toEqual(['Succeeded', 'Succeeded', 'Succeeded']);
  expect(rolled.pods.length).toBe(3);
  expect(rollLost).toEqual([]);
  expect(await missingKeys(rolled.ips, 'before', 50)).toEqual([]);
  expect(await missingKeys(rolled.ips, 'after', 50)).toEqual([]);
}, 900000);

/** Changes every copy of `marker` in a file in place (same length), as bit rot would: etcd wrote it, the disk changed it. */
function rot(file: string, marker: string): number {
  const buf = readFileSync(file);
  const fd = openSync(file, 'r+');
  let n = 0;
  try {
    for (let at = buf.indexOf(marker); at >= 0; at = buf.indexOf(marker, at + 1), n++)
      writeSync(fd, Buffer.from('X'), 0, 1, at + marker.length - 1);
  } finally {
    closeSync(fd);
  }
  return n;
}

test("CORRUPT for real: a follower's backend file changed on disk, etcd's corruption check names it, the controller replaces it from the healthy members; every acknowledged write reads back", async () => {
  const before = await converged(t, name, 3);
  const writer = new ContinuousWriter(async () => (await membership(t, name)).ips, 'corrupt');
  writer.start();
  const client = new Etcd3({ hosts: before.ips, dialTimeout: 3000 });
  const marker = `corrupt-probe-${Date.now()}-${'q'.repeat(40)}`;
  await client.put('corrupt-probe').value(marker);
  // A follower: the leader's periodic check (--corrupt-check-time) compares the followers' hashes with its own.
  const follower = before.pods.find((p) => p !== before.leader)!;
  const db = join(await t.nodes.emptyDirPath('default', follower, 'etcd-data'), 'data', 'member', 'snap', 'db');
  await eventually(
    "the value in the follower's backend file",
    async () => readFileSync(db).includes(marker),
    30000,
    200,
  );
  const rotted = rot(db, marker);
  const at = Date.now();
  console.log(`changed ${rotted} cop(ies) of the value in ${follower}'s ${db}`);
  expect(rotted).toBeGreaterThan(0);

  const after = await eventually(
    `${follower} replaced`,
    async () => {
      const c = await get();
      const replaced = (c.status.lastOperations ?? []).some(
        (o) => o.type === 'replace-member' && o.result === 'Succeeded',
      );
      return replaced && (await convergedNow(t, name, 3).catch(() => undefined));
    },
    240000,
    1000,
  );
  console.log(
    `CORRUPT: ${follower} replaced, cluster healthy again ${((Date.now() - at) / 1000).toFixed(1)} s after the change`,
  );
  await writer.stop();
  expect(after.pods).not.toContain(follower);
  expect(after.pods.filter((p) => before.pods.includes(p))).toEqual(before.pods.filter((p) => p !== follower));
  const dead = (await events('MemberDead')).filter((e) => e.startsWith(follower));
  console.log(`MemberDead: ${dead.join(' | ')}`);
  expect(dead[0]).toMatch(/etcd raised a CORRUPT alarm/);
  expect((await events('AlarmDisarmed')).some((e) => /disarmed CORRUPT for member/.test(e))).toBe(true);
  // Never a restore (the healthy majority is the source), and no alarm is left.
  const c = await get();
  expect((c.status.lastOperations ?? []).filter((o) => o.type === 'recover')).toEqual([]);
  expect(c.status.lastRecovery).toBeUndefined();
  expect(await alarmOf()).toBeUndefined();
  const probe = new Etcd3({ hosts: after.ips, dialTimeout: 3000 });
  expect(await probe.get('corrupt-probe').string()).toBe(marker);
  probe.close();
  client.close();
  const lost = await writer.lost(after.ips);
  console.log(
    `writer: ${writer.acked.length} acknowledged, ${writer.failed} failed (CORRUPT refuses every request), ${lost.length} lost`,
  );
  expect(lost).toEqual([]);
  expect(await missingKeys(after.ips, 'before', 50)).toEqual([]);
}, 400000);
