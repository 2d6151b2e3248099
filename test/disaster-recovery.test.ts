// Backups and disaster recovery on the real stack, on a TLS cluster (issue 18: the backup tool over TLS, members restored
// with https peer URLs, members rejoining with their certificates): scheduled, verified snapshots with retention;
// quorum loss restored from the surviving member (the worker killed after every step of the first
// backup and of the restore); total loss restored from the newest valid backup of this cluster, skipping a corrupted one and
// another cluster's, the loss reported equal to the loss measured; a restored member keeps its data when its init containers run again.
// Then the same cluster backs up to the stack's real S3 server (versitygw) under load, and a new cluster is
// restored from that backup (issue 19), never from another cluster's newer backup in the same folder.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  CopyObjectCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Client, Connection } from '@temporalio/client';
import { etcdBinDir, pins, tsEntry } from '../local/toolchain.js';
import {
  clusterWriter,
  clusters,
  converged,
  convergedWithout,
  convergedNow,
  crashedAt,
  reportCrashes,
  crashEverywhere,
  etcdClient,
  membership,
  missingKeys,
  restoredCopy,
  s3Destination,
  TestController,
  startStackWithController,
  writeKeys,
} from './support/controller.js';
import { eventually, sleep, type TestStack } from './support/stack.js';
import { backupToolSelector, memberSelector } from '../api/etcdcluster.js';
import { backupScheduleId, backupTokenSecretName } from '../api/names.js';

const run = promisify(execFile);
let t: TestStack;
let ctl: TestController;
const name = 'dr';

interface Backup {
  name: string;
  revision: number;
  size: number;
  sha256: string;
  valid: boolean;
  problem?: string;
  cluster?: { uid?: string; etcdClusterId?: string };
  time: string;
  location?: string;
  compression?: string;
  compressedSize?: number;
  sample?: { revision: number; keys: number; entries: { key: string; modRevision: number; valueSha256: string }[] };
}

/** A client of the stack's S3 server, as the host sees it. */
const s3Client = () =>
  new S3Client({
    endpoint: t.stack.s3.endpoint,
    region: t.stack.s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: t.stack.s3.accessKeyId, secretAccessKey: t.stack.s3.secretAccessKey },
  });

let crashEnv: Record<string, string>;

beforeAll(async () => {
  ({ t, ctl } = await startStackWithController());
  // The worker is killed after every activity of the first backup and the first restore, each once.
  crashEnv = crashEverywhere(t, 'dr', 'backupCluster', 'recoverCluster');
  await ctl.stop();
  ctl.supervise(crashEnv);
});
afterAll(async () => {
  await ctl?.stop();
  reportCrashes(crashEnv ?? {}); // before the stack's folder goes
  await t?.stop();
});

/** A spec.backup change reaches the Schedule through the cluster workflow's next look: until then (and while a run
 *  started by the old interval is in flight) a scheduled backup can still land between a test's own backups. */
async function scheduleSettled(everySeconds: number): Promise<void> {
  const temporal = new Client({ connection: await Connection.connect({ address: t.stack.temporalAddress }) });
  try {
    await eventually(
      `backup Schedule every ${everySeconds} s, no scheduled run in flight`,
      async () => {
        const d = await temporal.schedule.getHandle(backupScheduleId({ namespace: 'default', name })).describe();
        return d.spec.intervals?.[0]?.every === everySeconds * 1000 && d.info.runningActions.length === 0;
      },
      120000,
      500,
    );
  } finally {
    await temporal.connection.close();
  }
}

async function toolURL(): Promise<string> {
  return eventually(
    'backup tool ready',
    async () => {
      const pods = await t.core.listNamespacedPod({
        namespace: 'default',
        labelSelector: backupToolSelector(name),
      });
      const p = pods.items.find((x) => x.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      return p ? `http://${p.status!.podIP}:19999` : undefined;
    },
    60000,
  );
}
/** A member's revision, asked on its own endpoint (with the users' client certificate: the cluster is TLS). */
async function revisionOf(url: string): Promise<string> {
  const client = etcdClient([url]);
  try {
    return (await client.maintenance.status()).header.revision;
  } finally {
    client.close();
  }
}

/** The backup tool answers only with its cluster's token (the controller's, Secret <cluster>-backup-token). */
async function toolAuth(cluster = name): Promise<{ headers: Record<string, string> }> {
  const s = await t.core.readNamespacedSecret({ name: backupTokenSecretName(cluster), namespace: 'default' });
  return { headers: { authorization: `Bearer ${Buffer.from(s.data!.token, 'base64').toString('utf8')}` } };
}
const backups = async () => (await (await fetch(`${await toolURL()}/v1/backups`, await toolAuth())).json()) as Backup[];

/** etcdutl's view of a snapshot the tool serves (decompressed when it sits in object storage). */
async function snapshotStatus(backup: string): Promise<{ revision: number; sha256: string }> {
  const res = await fetch(`${await toolURL()}/v1/backups/${backup}`, await toolAuth());
  const dir = mkdtempSync(join(tmpdir(), 'kec-snap-'));
  const file = join(dir, 'snap.db');
  const bytes = Buffer.from(await res.arrayBuffer());
  writeFileSync(file, bytes);
  try {
    const { stdout } = await run(join(etcdBinDir(pins.ETCD36_VERSION), 'etcdutl'), [
      'snapshot',
      'status',
      file,
      '-w',
      'json',
    ]);
    return { revision: JSON.parse(stdout).revision, sha256: createHash('sha256').update(bytes).digest('hex') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function cli(...args: string[]) {
  const [cmd, ...rest] = tsEntry('cli/main.ts', ...args);
  return run(cmd, rest, {
    env: {
      ...process.env,
      NODE_OPTIONS: '',
      KUBECONFIG: t.stack.kubeconfig,
      TEMPORAL_ADDRESS: t.stack.temporalAddress,
    },
  });
}

async function recovered(after: string) {
  return eventually(
    'disaster recovery finished',
    async () => {
      const c = await clusters(t).get(name);
      const rec = c?.status.lastRecovery as
        { time: string; source: string; revision: number; lostRevisions: number } | undefined;
      if (!rec || rec.time <= after) return undefined;
      if (!(await convergedNow(t, name, 3))) return undefined;
      return rec;
    },
    600000,
    1000,
  );
}

test('scheduled backups are verified and retention keeps exactly maxSnapshot; a snapshot downloads from 19999 and etcdutl accepts it', async () => {
  await clusters(t).createFromSpec(name, {
    size: 3,
    tls: { enabled: true }, // every case below recovers a TLS cluster
    backup: { maxSnapshot: 2, snapshotIntervalInSecond: 3, volumeSizeInMB: 64 },
  });
  const m = await converged(t, name, 3);
  expect(m.ips.every((u) => u.startsWith('https://'))).toBe(true);
  await writeKeys(m.ips, 'dr0', 30);
  const list = await eventually(
    'retention at 2 after several backups',
    async () => {
      const c = await clusters(t).get(name);
      const taken = (c?.status.lastBackup as { revision?: number } | undefined)?.revision ?? 0;
      const l = await backups();
      return taken >= 31 && l.length === 2 ? l : undefined;
    },
    300000,
    1000,
  );
  expect(list.every((b) => b.valid)).toBe(true);
  // Each backup names its cluster: the object UID and the etcd cluster ID.
  const c = await clusters(t).get(name);
  expect(
    list.every((b) => b.cluster?.uid === c?.metadata.uid && b.cluster?.etcdClusterId === c?.status.clusterID),
  ).toBe(true);
  console.log(`dr backups: acked 30, lost ${(await missingKeys(m.ips, 'dr0', 30)).length}`);
  expect(crashedAt(crashEnv)).toContain('backupCluster.takeBackup');
  expect(list[0].revision).toBeGreaterThanOrEqual(list[1].revision);
  expect((await snapshotStatus(list[0].name)).revision).toBeGreaterThanOrEqual(list[0].revision);
}, 900000);

test('two of three members lost: restored from the surviving member with every key, through a worker crash after each step of the restore', async () => {
  const m = await converged(t, name, 3);
  await writeKeys(m.ips, 'dr1', 50);
  // The survivor holds every acknowledged write only once it has applied the last one; killed earlier, the freshest
  // source is rightly a backup taken from the leader meanwhile (scheduled backups run on their own Schedule).
  await eventually(
    'every member applied the last write',
    async () => new Set(await Promise.all(m.ips.map(revisionOf))).size === 1,
    30000,
  );
  const t0 = new Date().toISOString();
  await Promise.all(
    m.pods
      .slice(0, 2)
      .map((p) => t.core.deleteNamespacedPod({ name: p, namespace: 'default', body: { gracePeriodSeconds: 0 } })),
  );
  const rec = await recovered(t0);
  expect(rec.source).toMatch(/surviving member/);
  expect(crashedAt(crashEnv)).toEqual(
    expect.arrayContaining([
      'recoverCluster.chooseRestoreSource',
      'recoverCluster.deleteAllMemberPods',
      'recoverCluster.bootstrapMembers',
    ]),
  );
  const after = await membership(t, name);
  expect(await missingKeys(after.ips, 'dr0', 30)).toEqual([]);
  const lost = [...(await missingKeys(after.ips, 'dr0', 30)), ...(await missingKeys(after.ips, 'dr1', 50))];
  console.log(
    `dr survivor: acked 80, lost ${lost.length}; restored from ${rec.source} at revision ${rec.revision}, ${rec.lostRevisions} revision(s) reported lost`,
  );
  expect(lost).toEqual([]);
  expect(rec.lostRevisions).toBe(0);
  const events = await t.core.listNamespacedEvent({
    namespace: 'default',
    fieldSelector: `involvedObject.name=${name}`,
  });
  expect(events.items.some((e) => e.reason === 'DisasterRecovery' && /surviving member/.test(e.message ?? ''))).toBe(
    true,
  );
}, 900000);

test(
  "all members lost: restored from the newest valid backup of this cluster (a corrupted one and another cluster's skipped), " +
    'loss reported = loss measured; a restored member keeps its data when its init containers rerun',
  async () => {
    await clusters(t).patchSpec(name, {
      backup: { maxSnapshot: 2, snapshotIntervalInSecond: 3600, volumeSizeInMB: 64 },
    });
    await scheduleSettled(3600); // the 3 s backups of the first test stopped: the two below are the newest
    let m = await converged(t, name, 3);
    await writeKeys(m.ips, 'dr2', 20);
    await cli('backup', name); // A: holds dr2
    await writeKeys(m.ips, 'dr3', 20);
    await cli('backup', name); // B: holds dr3, then corrupted below
    await writeKeys(m.ips, 'dr4', 20); // in no backup: lost with the cluster
    // The loss is measured against the last revision the controller saw before the failure.
    const rev = Number((await membership(t, name)).revision);
    await eventually(
      'controller saw the latest revision',
      async () => Number((await clusters(t).get(name))?.status.lastSeenRevision ?? 0) >= rev,
      60000,
    );
    const [b, a] = await backups();
    const pvc = await t.core.readNamespacedPersistentVolumeClaim({ name: `pvc-${name}`, namespace: 'default' });
    const pv = await t.core.readPersistentVolume({ name: pvc.spec!.volumeName! });
    const path = join(pv.spec!.hostPath!.path, b.name);
    const bytes = readFileSync(path);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    writeFileSync(path, bytes);
    expect((await backups()).find((x) => x.name === b.name)?.valid).toBe(false);
    // A valid, newer snapshot of another cluster of the same name (the tool's claim outlives a deleted cluster): never a source.
    const foreign = `etcd-snapshot-rev999999-other.db`;
    writeFileSync(join(pv.spec!.hostPath!.path, foreign), readFileSync(join(pv.spec!.hostPath!.path, a.name)));
    writeFileSync(
      join(pv.spec!.hostPath!.path, `${foreign}.json`),
      JSON.stringify({ ...a, name: foreign, revision: 999999, cluster: { uid: 'another-uid', etcdClusterId: '1' } }),
    );
    expect((await backups())[0]).toMatchObject({ name: foreign, valid: true });
    const t0 = new Date().toISOString();
    m = await membership(t, name);
    await Promise.all(
      m.pods.map((p) => t.core.deleteNamespacedPod({ name: p, namespace: 'default', body: { gracePeriodSeconds: 0 } })),
    );
    const rec = await recovered(t0);
    expect(rec.source).toContain(a.name);
    expect(rec.revision).toBe(a.revision);
    let after = await membership(t, name);
    expect(await missingKeys(after.ips, 'dr2', 20)).toEqual([]);
    // The documented loss: every write after backup A (dr3 was only in the corrupted B, dr4 in no backup).
    const lost = [
      ...(await missingKeys(after.ips, 'dr2', 20)),
      ...(await missingKeys(after.ips, 'dr3', 20)),
      ...(await missingKeys(after.ips, 'dr4', 20)),
    ];
    console.log(
      `dr total loss: acked 60, lost ${lost.length}; restored from ${rec.source} at revision ${rec.revision}, ${rec.lostRevisions} revision(s) reported lost`,
    );
    expect(lost).toHaveLength(40);
    expect(rec.lostRevisions).toBe(lost.length); // one put is one revision: the loss reported is the loss measured
    const events = await t.core.listNamespacedEvent({
      namespace: 'default',
      fieldSelector: `involvedObject.name=${name}`,
    });
    expect(events.items.some((e) => e.reason === 'BackupCorrupt' && e.message?.includes(b.name))).toBe(true);
    expect(events.items.some((e) => e.reason === 'BackupNotThisCluster' && e.message?.includes(foreign))).toBe(true);
    expect(
      events.items.some((e) => e.reason === 'DisasterRecovery' && /revision\(s\) lost/.test(e.message ?? '')),
    ).toBe(true);

    // Every member was restored from the backup and started together (static bootstrap, issue 17).
    const pods = (await t.core.listNamespacedPod({ namespace: 'default', labelSelector: memberSelector(name) })).items;
    expect(pods.map((p) => p.metadata?.annotations?.['etcd.coreos.com/restored-from'])).toEqual([
      a.name,
      a.name,
      a.name,
    ]);
    expect(events.items.some((e) => e.reason === 'MembersBootstrapped' && e.message?.includes(a.name))).toBe(true);
    // Idempotent restore: a restored member's sandbox is recreated (a node reboot) after its snapshot was pruned,
    // so its restore init containers run again: it keeps its data (and every write since the restore).
    const restarted = pods[0].metadata!.name!;
    await writeKeys(after.ips, 'dr5', 20);
    // A backup taken since the restore (the schedule's first run) may have pruned it already: retention keeps 2.
    for (const f of [a.name, `${a.name}.json`]) rmSync(join(pv.spec!.hostPath!.path, f), { force: true });
    await t.nodes.restartPod('default', restarted);
    after = await eventually(
      'restarted member serves again',
      async () => {
        const logs = await t.nodes.logs('default', restarted, 'place-data');
        return (logs.match(/data dir kept/g) ?? []).length === 1 ? convergedNow(t, name, 3) : undefined;
      },
      180000,
      1000,
    );
    expect(after.members).toContain(restarted);
    const kept = [...(await missingKeys(after.ips, 'dr2', 20)), ...(await missingKeys(after.ips, 'dr5', 20))];
    console.log(`dr restored member restarted: acked 40, lost ${kept.length}`);
    expect(kept).toEqual([]);
    expect(await t.nodes.logs('default', restarted, 'fetch-snapshot')).toMatch(/data dir holds a member: kept/);
  },
  900000,
);

test("a new cluster started from another cluster's claim (read through that cluster's backup tool) has every key of the backup", async () => {
  const m = await converged(t, name, 3);
  await writeKeys(m.ips, 'claimcopy', 20);
  await cli('backup', name);
  const src = await clusters(t).get(name);
  // The newest of this incarnation (the claim also holds the other cluster's backup planted above).
  const b = (await backups()).find((x) => x.cluster?.uid === src!.metadata.uid)!;
  await clusters(t).createFromSpec('dr-claim', {
    size: 1,
    backup: { snapshotIntervalInSecond: 3600 },
    restore: { cluster: name, uid: src!.metadata.uid },
  });
  const copy = await restoredCopy(t, 'dr-claim', 1, 300000);
  const from = copy.status.restoredFrom as { revision: number; source: string; backup: string };
  expect(from.source).toContain('of default/dr ');
  expect(from.revision).toBeGreaterThanOrEqual(b.revision);
  const missing = await missingKeys((await membership(t, 'dr-claim')).ips, 'claimcopy', 20);
  console.log(`claim restore into dr-claim from ${from.source}: written 20, missing ${missing.length}`);
  expect(missing).toEqual([]);
  await clusters(t).delete('dr-claim');
}, 420000);

test(
  'backups to S3 under load: the object names its cluster, etcdutl accepts it; restore --into a new cluster has every write up to it, ' +
    "a new etcd cluster ID, status.restoredFrom, and never another cluster's newer backup in the same folder",
  async () => {
    const s3 = t.stack.s3;
    const dest = await s3Destination(t, 'kec');
    // The API refuses a restore without a destination to read it from.
    await expect(
      clusters(t).create({
        apiVersion: 'coreos.com/v1',
        kind: 'EtcdCluster',
        metadata: { name: 'dr-bad' },
        spec: { size: 1, restore: { cluster: name } },
      }),
    ).rejects.toThrow(/spec.backup/);
    await clusters(t).patchSpec(name, { backup: { maxSnapshot: 2, snapshotIntervalInSecond: 3600, s3: dest } });
    const src = await clusters(t).get(name);
    await converged(t, name, 3);
    const writer = clusterWriter(t, name);
    await eventually('writes flowing', async () => writer.acked.length >= 20, 60000, 200);
    const ackedBefore = writer.acked.length;
    await cli('backup', name); // the tool is replaced for the new destination, then snapshots under load
    await sleep(1000);
    await writer.stop();
    const [b] = await backups();
    expect(b).toMatchObject({ valid: true, compression: 'gzip', cluster: { uid: src!.metadata.uid } });
    expect(b.location).toBe(`s3://${s3.bucket}/kec/${b.name}`);
    expect(b.name).toMatch(/^default\/dr\/etcd-snapshot-rev\d+-.*\.db\.gz$/);
    // Downloaded through the tool (decompressed): the sha256 recorded is the snapshot's, and etcdutl accepts it.
    const st = await snapshotStatus(b.name);
    expect(st.sha256).toBe(b.sha256);
    expect(st.revision).toBeGreaterThanOrEqual(b.revision);

    // Another cluster's newer backup (a copy with a higher revision and a foreign UID) in the same folder.
    const c = s3Client();
    const foreign = 'default/dr/etcd-snapshot-rev999999-other.db.gz';
    await c.send(
      new CopyObjectCommand({ Bucket: s3.bucket, Key: `kec/${foreign}`, CopySource: `${s3.bucket}/kec/${b.name}` }),
    );
    await c.send(
      new PutObjectCommand({
        Bucket: s3.bucket,
        Key: `kec/${foreign}.json`,
        Body: JSON.stringify({
          ...b,
          name: foreign,
          revision: 999999,
          cluster: { uid: 'another-uid', etcdClusterId: '1' },
        }),
      }),
    );
    c.destroy();
    expect((await backups())[0]).toMatchObject({ name: foreign, valid: true });

    await cli('restore', name, '--into', 'dr-copy');
    const copy = await restoredCopy(t, 'dr-copy', 3, 600000);
    const from = copy.status.restoredFrom as { revision: number; source: string; backup: string; time: string };
    expect(from).toMatchObject({ revision: b.revision, backup: b.name });
    expect(from.source).toContain(b.location);
    expect(copy.status.clusterID).toBeTruthy();
    expect(copy.status.clusterID).not.toBe((await clusters(t).get(name))?.status.clusterID);
    // Sequential writes: the copy holds exactly writes 0..k, with k at least the last one acked before the backup.
    const m = await membership(t, 'dr-copy');
    const lost = new Set(await writer.lost(m.ips));
    const kept = writer.acked.filter((i) => !lost.has(i));
    console.log(
      `s3 restore into dr-copy: acked ${writer.acked.length} (${ackedBefore} before the backup started), ` +
        `in the copy ${kept.length}, acked after the snapshot (not in it) ${lost.size}; restored from ${from.source}`,
    );
    expect(writer.acked.slice(0, ackedBefore).filter((i) => lost.has(i))).toEqual([]);
    expect(Math.min(...lost)).toBeGreaterThan(Math.max(...kept));

    // The copy backs up into its own folder, under its own identity (its UID, its new etcd cluster ID).
    const own = await eventually(
      "dr-copy's first scheduled backup",
      async () => {
        const l = (await (
          await fetch(`${await toolURL()}/v1/backups?cluster=default/dr-copy`, await toolAuth())
        ).json()) as Backup[];
        return l.length ? l : undefined;
      },
      120000,
      1000,
    );
    expect(own[0].cluster).toMatchObject({ uid: copy.metadata.uid, etcdClusterId: copy.status.clusterID });
    // Retention by count, then by age, prunes only this incarnation's backups: the foreign one stays.
    await cli('backup', name);
    await cli('backup', name);
    // (Again, a scheduled backup at the same moment could leave one more: checked after the age rule below.)
    const mine = async () => (await backups()).filter((x) => x.cluster?.uid === src!.metadata.uid);
    expect((await mine()).length).toBeGreaterThanOrEqual(2);
    expect((await mine()).length).toBeLessThanOrEqual(3);
    await clusters(t).patchSpec(name, { backup: { maxSnapshot: 2, maxAgeInSecond: 1, s3: dest } });
    // A scheduled backup may run at the same moment (hourly intervals fire at the top of the hour), and two
    // concurrent backups do not see each other: the next backup prunes what they left.
    await eventually(
      'retention by age: only the newest backup of this incarnation left',
      async () => (await cli('backup', name), (await mine()).length === 1),
      180000,
      100,
    );
    expect((await backups()).map((x) => x.name)).toContain(foreign);
  },
  900000,
);

test(
  'S3 unreachable during scheduled backups: each fails within seconds with the S3 error (status.lastBackup, BackupFailed ' +
    'Event), a member replacement meanwhile finishes, every acked write reads back; the next backup works again',
  async () => {
    const s3 = t.stack.s3;
    const dest = { endpoint: s3.podEndpoint, bucket: s3.bucket, prefix: 'kec', credentialsSecret: 's3-creds' };
    // A closed port: every connection refused (the tool is replaced for the new endpoint on the next run).
    const dead = { ...dest, endpoint: 'http://127.0.0.1:1' };
    await clusters(t).patchSpec(name, { backup: { maxSnapshot: 2, snapshotIntervalInSecond: 5, s3: dead } });
    const writer = clusterWriter(t, name);
    const before = await converged(t, name, 3);
    const victim = before.pods[0];
    await t.core.deleteNamespacedPod({ name: victim, namespace: 'default' });
    const failed = await eventually(
      'a scheduled backup failed on the unreachable endpoint',
      async () => {
        const lb = (await clusters(t).get(name))?.status.lastBackup as
          { result?: string; message?: string; workflowId?: string } | undefined;
        return lb?.result === 'Failed' && /ECONNREFUSED/.test(lb.message ?? '') ? lb : undefined;
      },
      300000,
      500,
    );
    // Failed by the destination rule (a few attempts), not by the 10 min deadline of takeBackup.
    expect(failed.message).toMatch(/backup failed after \d+ attempt\(s\): upload to s3:\/\/.* failed: .*ECONNREFUSED/);
    const events = await t.core.listNamespacedEvent({ namespace: 'default' });
    expect(events.items.some((e) => e.reason === 'BackupFailed' && e.message?.includes(failed.workflowId ?? '?'))).toBe(
      true,
    );
    const temporal = new Client({ connection: await Connection.connect({ address: t.stack.temporalAddress }) });
    const run = await temporal.workflow.getHandle(failed.workflowId!).describe();
    await temporal.connection.close();
    console.log(
      `s3 unreachable: ${failed.workflowId} failed in ${(run.closeTime!.getTime() - run.startTime.getTime()) / 1000} s: ` +
        failed.message,
    );
    const m = await convergedWithout(t, name, 3, victim, 'member replaced while backups fail', 180000);
    // The destination back: scheduled backups succeed again, each restored into a scratch data dir by the tool
    // (verifyIntervalInSecond 1): status.lastVerification.
    await clusters(t).patchSpec(name, {
      backup: { maxSnapshot: 2, snapshotIntervalInSecond: 5, verifyIntervalInSecond: 1, s3: dest },
    });
    const verified = await eventually(
      'a scheduled backup to the restored endpoint, verified',
      async () => {
        const x = await clusters(t).get(name);
        const v = x?.status.lastVerification as
          { result?: string; backup?: string; revision?: number; sampled?: number; message?: string } | undefined;
        return (x?.status.lastBackup as { result?: string } | undefined)?.result === 'Succeeded' && v ? v : undefined;
      },
      120000,
      500,
    );
    console.log(`s3 back: ${JSON.stringify(verified)}`);
    expect(verified).toMatchObject({ result: 'Succeeded', backup: expect.stringMatching(/^default\/dr\//) });
    expect(verified.revision).toBeGreaterThan(0);
    // Its sampled keys were read back from a throw-away etcd on the restored backup and matched.
    expect(verified.sampled).toBeGreaterThan(0);
    expect(verified.message).toMatch(/sampled key\(s\) match/);
    await writer.stop();
    const lost = await writer.lost(m.ips);
    console.log(`s3 unreachable: acked ${writer.acked.length}, lost ${lost.length}`);
    expect(lost).toEqual([]);
  },
  600000,
);

test(
  'a stored backup that does not hold what the cluster held is reported (status.lastVerification, BackupVerificationFailed ' +
    'Event naming it and the key that differs) while the cluster keeps serving; a good one verifies with its sample',
  async () => {
    // Still from the case above: S3, a backup every 5 s, each run first verifies the newest stored backup.
    const src = await clusters(t).get(name);
    const writer = clusterWriter(t, name);
    const [b] = (await backups()).filter((x) => x.cluster?.uid === src!.metadata.uid && x.sample?.entries.length);
    expect(b.sample!.keys).toBeGreaterThan(0);
    // The manifest's sample altered (one value hash): the backup no longer matches what the cluster held at its
    // revision. Its revision raised so it stays the newest stored backup: every run verifies it until it goes.
    const bad = `${b.name.replace(/-rev\d+-/, '-rev999998-')}`;
    const key = `kec/${bad}`;
    const [first, ...rest] = b.sample!.entries;
    const c = s3Client();
    await c.send(
      new CopyObjectCommand({ Bucket: t.stack.s3.bucket, Key: key, CopySource: `${t.stack.s3.bucket}/kec/${b.name}` }),
    );
    const tampered = { ...b, name: bad, revision: 999998, location: `s3://${t.stack.s3.bucket}/${key}` };
    tampered.sample = { ...b.sample!, entries: [{ ...first, valueSha256: '0'.repeat(64) }, ...rest] };
    await c.send(
      new PutObjectCommand({ Bucket: t.stack.s3.bucket, Key: `${key}.json`, Body: JSON.stringify(tampered) }),
    );
    const shown = JSON.stringify(Buffer.from(first.key, 'base64').toString('utf8'));
    type Verification = { result?: string; backup?: string; message?: string; mismatches?: string[]; sampled?: number };
    const lastVerification = async () =>
      (await clusters(t).get(name))?.status.lastVerification as Verification | undefined;
    const failed = await eventually(
      'the tampered backup reported as failing verification',
      async () => {
        const v = await lastVerification();
        return v?.result === 'Failed' && v.backup === bad ? v : undefined;
      },
      120000,
      500,
    );
    console.log(`verification of a tampered backup: ${JSON.stringify(failed)}`);
    expect(failed.message).toContain(`key ${shown} value differs`);
    expect(failed.mismatches).toEqual([`key ${shown} value differs (sha256)`]);
    const events = await t.core.listNamespacedEvent({
      namespace: 'default',
      fieldSelector: `involvedObject.name=${name}`,
    });
    expect(
      events.items.some(
        (e) => e.reason === 'BackupVerificationFailed' && e.message?.includes(bad) && e.message.includes(shown),
      ),
    ).toBe(true);
    // Gone again: the next verification is of a good backup, its sampled keys compared.
    await c.send(
      new DeleteObjectsCommand({
        Bucket: t.stack.s3.bucket,
        Delete: { Objects: [{ Key: key }, { Key: `${key}.json` }] },
      }),
    );
    c.destroy();
    const good = await eventually(
      'a good backup verified again',
      async () => {
        const v = await lastVerification();
        return v?.result === 'Succeeded' && v.backup !== bad ? v : undefined;
      },
      120000,
      500,
    );
    console.log(`verification of a good backup: ${good.message}`);
    expect(good.sampled).toBeGreaterThan(0);
    await writer.stop();
    const lost = await writer.lost((await converged(t, name, 3)).ips);
    console.log(`verification failing: acked ${writer.acked.length}, lost ${lost.length}`);
    expect(writer.acked.length).toBeGreaterThan(0);
    expect(lost).toEqual([]);
  },
  300000,
);

test(
  'all members lost with backups in S3: restored from S3, loss reported = loss measured; the cluster deleted and ' +
    "created again under the same name starts empty and its retention never prunes the old incarnation's backups",
  async () => {
    const dest = await s3Destination(t, 'kec');
    await clusters(t).patchSpec(name, { backup: { maxSnapshot: 2, snapshotIntervalInSecond: 3600, s3: dest } });
    await scheduleSettled(3600); // the 5 s backups of the test before stopped: the one below is the newest
    let m = await converged(t, name, 3);
    await writeKeys(m.ips, 'dr6', 20);
    await cli('backup', name); // holds dr6
    await writeKeys(m.ips, 'dr7', 20); // in no backup: lost with the cluster
    const old = await clusters(t).get(name);
    const [a] = (await backups()).filter((x) => x.cluster?.uid === old!.metadata.uid);
    expect(a.location).toMatch(/^s3:\/\//);
    const rev = Number((await membership(t, name)).revision);
    await eventually(
      'controller saw the latest revision',
      async () => Number((await clusters(t).get(name))?.status.lastSeenRevision ?? 0) >= rev,
      60000,
    );
    const t0 = new Date().toISOString();
    m = await membership(t, name);
    await Promise.all(
      m.pods.map((p) => t.core.deleteNamespacedPod({ name: p, namespace: 'default', body: { gracePeriodSeconds: 0 } })),
    );
    const rec = await recovered(t0);
    const after = await membership(t, name);
    const lost = [...(await missingKeys(after.ips, 'dr6', 20)), ...(await missingKeys(after.ips, 'dr7', 20))];
    console.log(
      `dr total loss from S3: acked 40, lost ${lost.length}; restored from ${rec.source} at revision ${rec.revision}, ` +
        `${rec.lostRevisions} revision(s) reported lost`,
    );
    expect(rec.source).toContain(a.name);
    expect(rec.revision).toBe(a.revision);
    expect(await missingKeys(after.ips, 'dr6', 20)).toEqual([]);
    expect(lost).toHaveLength(20);
    expect(rec.lostRevisions).toBe(lost.length);

    // Deleted and created again under the same name, backing up to the same folder.
    const c = s3Client();
    const objects = async () =>
      ((await c.send(new ListObjectsV2Command({ Bucket: t.stack.s3.bucket, Prefix: 'kec/' }))).Contents ?? [])
        .map((o) => o.Key!)
        .sort();
    // The old incarnation's backups as its tool lists them, by object key.
    const prefix = `s3://${t.stack.s3.bucket}/`;
    const oldBackups = (await backups())
      .filter((x) => x.cluster?.uid === old!.metadata.uid)
      .map((x) => x.location!.slice(prefix.length));
    expect(oldBackups.length).toBeGreaterThan(0);
    await clusters(t).delete(name);
    await eventually('cluster gone', async () => !(await clusters(t).get(name)), 180000);
    await clusters(t).createFromSpec(name, {
      size: 3,
      backup: { maxSnapshot: 1, snapshotIntervalInSecond: 3600, s3: dest },
    });
    const fresh = await converged(t, name, 3);
    const again = await clusters(t).get(name);
    expect(again!.metadata.uid).not.toBe(old!.metadata.uid);
    expect(again!.status.restoredFrom).toBeUndefined();
    expect(again!.status.lastRecovery).toBeUndefined();
    expect(await missingKeys(fresh.ips, 'dr6', 20)).toHaveLength(20); // nothing of the old incarnation
    await cli('backup', name);
    await cli('backup', name);
    const mine = (await backups()).filter((x) => x.cluster?.uid === again!.metadata.uid);
    expect(mine).toHaveLength(1); // retention by count applied to this incarnation...
    const now = await objects();
    console.log(`same-name cluster: the old incarnation's ${oldBackups.join(', ')} kept; its own: ${mine.length}`);
    for (const k of oldBackups) expect(now).toContain(k); // ...and never to the old one's
    c.destroy();
  },
  600000,
);
