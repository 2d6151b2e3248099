// Issue 12 on the real stack: automatic restore only when the data of a majority of voters is
// provably gone. Every test runs a writer that records acknowledged writes and reads them all back.
import { Client, Connection } from '@temporalio/client';
import {
  clusters,
  clusterWriter,
  type ContinuousWriter,
  converged,
  missingKeys,
  stackWithControllerPerFile,
  writeKeys,
} from './support/controller.js';
import { clientUrl, etcdctl } from './support/etcdctl.js';
import { eventually, sleep, type TestStack } from './support/stack.js';
import { memberSelector } from '../api/etcdcluster.js';

let t: TestStack;

stackWithControllerPerFile((s) => ({ t } = s));

// A backup tool and a short grace: the old rule would have restored in every outage below.
const backup = { snapshotIntervalInSecond: 3600, volumeSizeInMB: 64, autoRestoreGraceSeconds: 10 };

async function started(name: string, spec: Record<string, unknown> = {}) {
  await clusters(t).createFromSpec(name, { size: 3, backup, ...spec });
  const m = await converged(t, name, 3);
  // Faults come after the first backup: the old rule would then have had a snapshot to restore.
  await eventually('first backup taken', async () => (await clusters(t).get(name))?.status.lastBackup, 120000);
  const writer = clusterWriter(t, name);
  await eventually('writes acknowledged', async () => writer.acked.length >= 50, 60000);
  return { m, writer };
}

const podUids = async (name: string) =>
  Object.fromEntries(
    (await t.core.listNamespacedPod({ namespace: 'default', labelSelector: memberSelector(name) })).items.map((p) => [
      p.metadata!.name!,
      p.metadata!.uid!,
    ]),
  );
/** No disaster recovery ran: none in status, no DisasterRecovery Event. Returns the cluster's Events. */
async function expectNothingRestored(name: string) {
  expect((await clusters(t).get(name))?.status.lastRecovery).toBeUndefined();
  const ev = await events(name);
  expect(ev.some((e) => e.reason === 'DisasterRecovery')).toBe(false);
  return ev;
}
const events = async (name: string) =>
  (await t.core.listNamespacedEvent({ namespace: 'default', fieldSelector: `involvedObject.name=${name}` })).items;

/** Every voter shown unreachable, the hold (QuorumLost, phase Failed) says what the controller waits for. */
async function heldUnreachable(name: string) {
  const c = await eventually(
    'QuorumLost hold with per-voter evidence',
    async () => {
      const s = (await clusters(t).get(name))?.status;
      const ms = (s?.memberStatuses ?? []) as { name: string; evidence?: string }[];
      const degraded = s?.conditions?.find((x) => x.type === 'Degraded');
      return degraded?.reason === 'QuorumLost' && ms.length === 3 && ms.every((x) => x.evidence === 'unreachable')
        ? s
        : undefined;
    },
    60000,
  );
  expect(c.phase).toBe('Failed');
}

/** Keeps writing a little after recovery, then reads every acknowledged write back. */
async function finish(name: string, writer: ContinuousWriter, t0: number) {
  const m = await converged(t, name, 3, 300000);
  const recoveredS = (Date.now() - t0) / 1000;
  // The cluster serves writes again (a fresh client); the shared writer can stall on a connection to a
  // replaced pod address, so its progress is reported, not required, and its stop is bounded.
  await writeKeys(m.ips, `${name}-after`, 20);
  const before = writer.acked.length;
  const progressed = await eventually(
    'writer progress after recovery',
    async () => writer.acked.length >= before + 20,
    30000,
  ).then(
    () => true,
    () => false,
  );
  const stopped = await Promise.race([writer.stop().then(() => true), sleep(30000).then(() => false)]);
  const lost = await writer.lost(m.ips);
  console.log(
    `${name}: acked ${writer.acked.length}, lost ${lost.length} (failed while unavailable: ${writer.failed}); back to 3 healthy members ${recoveredS.toFixed(1)} s after the fault${progressed && stopped ? '' : '; the writer stalled after recovery'}`,
  );
  return { m, lost };
}

test('every member cut off for longer than the grace, then healed: held with QuorumLost naming them, nothing restored or deleted, 0 lost', async () => {
  const name = 'cut';
  const { m, writer } = await started(name);
  const uids = await podUids(name);
  const t0 = Date.now();
  await Promise.all(m.pods.map((p) => t.nodes.cutNetwork('default', p)));
  try {
    await heldUnreachable(name);
    await sleep(Math.max(0, t0 + 3 * backup.autoRestoreGraceSeconds * 1000 - Date.now())); // three times the grace
  } finally {
    await Promise.all(m.pods.map((p) => t.nodes.restoreNetwork('default', p)));
  }
  console.log(
    `cut: every member's network cut for ${((Date.now() - t0) / 1000).toFixed(1)} s (grace ${backup.autoRestoreGraceSeconds} s)`,
  );
  const { lost } = await finish(name, writer, t0);
  expect(lost).toEqual([]);
  expect(await podUids(name)).toEqual(uids);
  const ev = await expectNothingRestored(name);
  const holds = ev.filter((e) => e.reason === 'QuorumLost').map((e) => e.message ?? '');
  expect(holds.some((h) => m.pods.every((p) => h.includes(`${p} (unreachable)`)) && /Waiting for/.test(h))).toBe(true);
}, 900000);

test('the controller cannot reach the members while they serve each other: held, nothing restored or deleted, 0 lost', async () => {
  const name = 'blind';
  const { m, writer } = await started(name);
  const uids = await podUids(name);
  const inside = (await t.nodes.pods()).find((p) => p.name === m.pods[0])!;
  const via = await t.nodes.podNetwork('default', m.pods[0]);
  const t0 = Date.now();
  // Only the host's path to the members goes (the controller, and this test's writer, run on the host);
  // the members keep their peer traffic on the pod network.
  await Promise.all(m.pods.map((p) => t.nodes.cutHostPath('default', p)));
  let n = 0;
  try {
    await heldUnreachable(name);
    // They serve each other all along: a write through a member's own network namespace needs a quorum.
    while (Date.now() < t0 + 3 * backup.autoRestoreGraceSeconds * 1000) {
      await etcdctl(clientUrl(inside.ip!), ['put', `${name}-inside/${n}`, `v${n}`], { via }).then(
        () => {
          n++;
        },
        () => undefined,
      );
      await sleep(250);
    }
  } finally {
    await Promise.all(m.pods.map((p) => t.nodes.restoreHostPath('default', p)));
  }
  console.log(
    `blind: the host cut from every member for ${((Date.now() - t0) / 1000).toFixed(1)} s (grace ${backup.autoRestoreGraceSeconds} s); ` +
      `${n} writes acknowledged inside the pod network meanwhile`,
  );
  expect(n).toBeGreaterThan(0);
  const { m: after, lost } = await finish(name, writer, t0);
  const lostInside = await missingKeys(after.ips, `${name}-inside`, n);
  console.log(`blind (inside writes): acked ${n}, lost ${lostInside.length}`);
  expect(lost).toEqual([]);
  expect(lostInside).toEqual([]);
  expect(await podUids(name)).toEqual(uids);
  await expectNothingRestored(name);
}, 900000);

test('every member process killed at once: back with all data, nothing restored or deleted, 0 lost', async () => {
  const name = 'crash';
  const { m, writer } = await started(name);
  const uids = await podUids(name);
  const t0 = Date.now();
  await Promise.all(m.pods.map((p) => t.nodes.crash('default', p)));
  const { lost } = await finish(name, writer, t0);
  expect(lost).toEqual([]);
  expect(await podUids(name)).toEqual(uids);
  await expectNothingRestored(name);
}, 900000);

test("emptyDir, 2 of 3 member pods deleted: the majority's data is gone, restored from the survivor, 0 lost", async () => {
  const name = 'gone';
  const { m, writer } = await started(name);
  // The two followers go: the survivor led, so it holds every acknowledged write.
  const victims = m.pods.filter((p) => p !== m.leader);
  const t0 = Date.now();
  await Promise.all(
    victims.map((p) => t.core.deleteNamespacedPod({ name: p, namespace: 'default', body: { gracePeriodSeconds: 0 } })),
  );
  const rec = await eventually(
    'disaster recovery finished',
    async () =>
      (await clusters(t).get(name))?.status.lastRecovery as { source: string; lostRevisions: number } | undefined,
    300000,
    1000,
  );
  expect(rec.source).toBe(`surviving member ${m.leader}`);
  expect(rec.lostRevisions).toBe(0);
  const { lost } = await finish(name, writer, t0);
  expect(lost).toEqual([]);
  const ev = await events(name);
  const holds = ev.filter((e) => e.reason === 'QuorumLost').map((e) => e.message ?? '');
  expect(holds.some((h) => victims.every((p) => h.includes(`${p} (data-gone)`)))).toBe(true);
}, 900000);

test('claims, 2 of 3 member pods deleted: their data may exist, so they are restarted in place on their claims, nothing restored, 0 lost', async () => {
  const name = 'claims';
  const { m, writer } = await started(name, {
    pod: { persistentVolumeClaimSpec: { resources: { requests: { storage: '64Mi' } } } },
  });
  const claimUids = async () =>
    Object.fromEntries(
      (
        await t.core.listNamespacedPersistentVolumeClaim({
          namespace: 'default',
          labelSelector: memberSelector(name),
        })
      ).items.map((c) => [c.metadata!.name!, c.metadata!.uid!]),
    );
  const claims = await claimUids();
  const victims = m.pods.filter((p) => p !== m.leader);
  const t0 = Date.now();
  await Promise.all(
    victims.map((p) => t.core.deleteNamespacedPod({ name: p, namespace: 'default', body: { gracePeriodSeconds: 0 } })),
  );
  const { m: after, lost } = await finish(name, writer, t0);
  expect(lost).toEqual([]);
  expect(after.pods).toEqual(m.pods);
  expect(await claimUids()).toEqual(claims);
  const ev = await expectNothingRestored(name);
  for (const p of victims)
    expect(ev.some((e) => e.reason === 'MemberRestarting' && e.message?.startsWith(p))).toBe(true);

  // One member silent past the 45 s grace while the others keep quorum: its data may exist, so it is
  // recreated in place on its claim, never replaced (which would delete the claim).
  const silent = after.pods.find((p) => p !== after.leader)!;
  await writeKeys(after.ips, `${name}-silent`, 20);
  await t.nodes.cutNetwork('default', silent);
  await eventually(
    `${silent} restarted in place`,
    async () =>
      (await events(name)).some(
        (e) => e.reason === 'MemberRestarting' && e.message?.startsWith(`${silent}: unreachable`),
      ),
    180000,
    1000,
  );
  const again = await converged(t, name, 3, 300000);
  const lostSilent = await missingKeys(again.ips, `${name}-silent`, 20);
  console.log(`claims (silent member ${silent} recreated in place): acked 20, lost ${lostSilent.length}`);
  expect(lostSilent).toEqual([]);
  expect(again.pods).toEqual(m.pods);
  expect(await claimUids()).toEqual(claims);
  expect((await events(name)).some((e) => e.reason === 'MemberDead')).toBe(false);
}, 900000);

test('5 members, 2 pods deleted: heals back to 5 one member at a time (gate: healthy voters after the change ≥ quorum), 0 lost', async () => {
  const name = 'five';
  await clusters(t).createFromSpec(name, { size: 5 });
  const m = await converged(t, name, 5, 300000);
  const writer = clusterWriter(t, name);
  await eventually('writes acknowledged', async () => writer.acked.length >= 50, 60000);
  const victims = m.pods.filter((p) => p !== m.leader).slice(0, 2);
  const t0 = Date.now();
  await Promise.all(
    victims.map((p) => t.core.deleteNamespacedPod({ name: p, namespace: 'default', body: { gracePeriodSeconds: 0 } })),
  );
  const after = await converged(t, name, 5, 600000);
  const healedS = (Date.now() - t0) / 1000;
  await writer.stop();
  const lost = await writer.lost(after.ips);
  console.log(
    `five: acked ${writer.acked.length}, lost ${lost.length} (failed: ${writer.failed}); back to 5 healthy members ${healedS.toFixed(1)} s after 2 of 5 pods were deleted`,
  );
  expect(lost).toEqual([]);
  for (const p of victims) expect(after.members).not.toContain(p);
}, 900000);

test('cluster workflow terminated during an outage: the new run (Temporal forgot) creates nothing over the pods; outage ends: same cluster, 0 lost', async () => {
  const name = 'forgot';
  const { m, writer } = await started(name);
  const uids = await podUids(name);
  const id = (await clusters(t).get(name))?.status.clusterID;
  expect(id).toBeTruthy();
  const connection = await Connection.connect({ address: t.stack.temporalAddress });
  const t0 = Date.now();
  await Promise.all(m.pods.map((p) => t.nodes.cutNetwork('default', p)));
  try {
    const handle = new Client({ connection }).workflow.getHandle(`default/${name}`);
    const before = (await handle.describe()).runId;
    await handle.terminate('test: the cluster workflow is terminated during an outage');
    // The watcher starts a fresh run (relist every 20 s): it must hold, not create.
    await eventually(
      'a new cluster workflow run',
      async () => {
        const d = await new Client({ connection }).workflow.getHandle(`default/${name}`).describe();
        return d.runId !== before && d.status.name === 'RUNNING';
      },
      90000,
      1000,
    );
    await sleep(20000);
    const s = (await clusters(t).get(name))?.status;
    expect(s?.conditions?.find((x) => x.type === 'Degraded')?.reason).toBe('QuorumLost');
    expect(s?.currentOperation).toBeFalsy(); // a merge patch of null removes the field
  } finally {
    await Promise.all(m.pods.map((p) => t.nodes.restoreNetwork('default', p)));
    await connection.close();
  }
  const { lost } = await finish(name, writer, t0);
  expect(lost).toEqual([]);
  expect(await podUids(name)).toEqual(uids);
  expect((await clusters(t).get(name))?.status.clusterID).toBe(id);
  expect((await events(name)).filter((e) => /^create started/.test(e.message ?? ''))).toHaveLength(1);
}, 900000);
