// Records the histories that test/replay.test.ts replays against the current workflow code.
//
//   npx tsx test/replay/capture.ts            (about 10 min on 2 cores; needs the toolchain)
//
// It starts a test stack with the controller (as the end-to-end tests do) and drives one cluster
// through a realistic life: create 3 members (etcd 3.5) → resize 3 → 4 → 3 → a member pod deleted
// (replacement) → spec.backup to the stack's S3 server added (the backup Schedule's first run) → a new cluster
// restored from that backup (spec.restore) → a resize cancelled with the
// cancelOperation signal while a learner joins (the join undone) → 2 of 3 pods deleted (disaster recovery from the survivor) → upgrade
// 3.5 → 3.6 → a second, TLS cluster with claims: certificates and CA rotated on request, switched to plain, deleted →
// the cluster deleted (destroy). Then it saves every run of every workflow of the
// namespace (the cluster loop and each child) to test/replay/histories/<label>/<type>--<workflow id>.json.gz
// (gzipped JSON from historyToJSON, ~10x smaller: the cluster loop alone is 1.3 MB of JSON),
// <label> being CAPTURE_LABEL or the current commit. Keep the sets of earlier commits: each pins the
// histories that clusters started on that code may still have (the first, 9ac77fa, was recorded before
// any patch). Only this label's folder is replaced.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { pins } from '../../local/toolchain.js';
import {
  clusters,
  converged,
  convergedWithout,
  kubectl,
  membership,
  s3Destination,
  startStackWithController,
} from '../support/controller.js';
import { eventually } from '../support/stack.js';
import { clusterWorkflowId } from '../../api/names.js';
import { rotateCertsAnnotation } from '../../api/etcdcluster.js';
import { cancelOperationSignal } from '../../api/workflows.js';

const label =
  process.env.CAPTURE_LABEL ?? execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
const out = join(dirname(fileURLToPath(import.meta.url)), 'histories', label);
const name = 'replay';
const log = (msg: string) => console.log(`[capture ${new Date().toISOString().slice(11, 19)}] ${msg}`);

const { t, ctl } = await startStackWithController();
const connection = await Connection.connect({ address: t.stack.temporalAddress });
const client = new Client({ connection });
try {
  type Status = {
    phase?: string;
    currentVersion?: string;
    lastBackup?: unknown;
    lastRecovery?: unknown;
    currentOperation?: { type: string; step?: string } | null;
    lastOperations?: { type: string; result: string }[];
  };
  const status = async () => ((await clusters(t).get(name))?.status ?? {}) as Status;
  const lastOp = async () => ((await status()).lastOperations ?? []).at(-1);

  log('create 3 members on 3.5');
  await clusters(t).createFromSpec(name, { size: 3, version: pins.ETCD35_VERSION });
  await converged(t, name, 3);

  log('resize 3 → 4 → 3');
  await clusters(t).patchSpec(name, { size: 4 });
  await converged(t, name, 4);
  await clusters(t).patchSpec(name, { size: 3 });
  await converged(t, name, 3);

  log('delete a member pod: replacement');
  const victim = (await membership(t, name)).pods[0];
  await t.core.deleteNamespacedPod({ name: victim, namespace: 'default' });
  await convergedWithout(t, name, 3, victim, 'replacement', 180000);

  log('spec.backup to S3: one scheduled backup');
  const backup = {
    maxSnapshot: 2,
    snapshotIntervalInSecond: 3600,
    s3: await s3Destination(t, 'replay'),
  };
  await clusters(t).patchSpec(name, { backup });
  await eventually('a scheduled backup', async () => (await status()).lastBackup, 180000);

  log('a new cluster restored from that backup (spec.restore)');
  const copy = `${name}-copy`;
  await clusters(t).createFromSpec(copy, { size: 3, version: pins.ETCD35_VERSION, backup, restore: { cluster: name } });
  await eventually('copy restored', async () => (await clusters(t).get(copy))?.status?.restoredFrom, 300000);
  await converged(t, copy, 3);
  await clusters(t).delete(copy);
  await eventually('copy gone', async () => !(await clusters(t).get(copy)), 180000);

  log('resize 3 → 5, cancelled while a learner joins');
  await clusters(t).patchSpec(name, { size: 5 });
  // Past addLearner: the cancel takes the undo branch (learner removed, then its pod). Asked of the resize itself: the
  // status shows a step only after 2 s (step-status-after-2s), by when this join may be over.
  const resize = client.workflow.getHandle(`default/${name}/resize-3-to-5`);
  await eventually(
    'a learner joining',
    async () =>
      /^release |catch up/.test((await resize.query<{ step: string }>('progress').catch(() => undefined))?.step ?? ''),
    120000,
    50,
  );
  // Signalled until the resize ends: a cancel only counts while the operation runs.
  const cluster = client.workflow.getHandle(clusterWorkflowId({ namespace: 'default', name }));
  await eventually(
    'resize finished',
    async () => {
      await cluster.signal(cancelOperationSignal);
      return (await lastOp())?.type === 'scale-up';
    },
    120000,
    300,
  );
  log(`resize ended: ${(await lastOp())?.result}`);
  await clusters(t).patchSpec(name, { size: 3 });
  await converged(t, name, 3);

  log('2 of 3 member pods deleted: disaster recovery from the survivor');
  const pods = (await membership(t, name)).pods;
  await Promise.all(
    pods
      .slice(0, 2)
      .map((p) => t.core.deleteNamespacedPod({ name: p, namespace: 'default', body: { gracePeriodSeconds: 0 } })),
  );
  await eventually('recovered', async () => (await status()).lastRecovery, 300000);
  await converged(t, name, 3);

  log('upgrade 3.5 → 3.6');
  await clusters(t).patchSpec(name, { version: pins.ETCD36_VERSION });
  await eventually(
    'upgraded',
    async () => {
      const s = await status();
      return s.phase === 'Running' && s.currentVersion === pins.ETCD36_VERSION;
    },
    300000,
  );

  log('a TLS cluster with claims: certificates and CA rotated on request, then switched to plain');
  const tlsName = `${name}-tls`;
  const claims = { persistentVolumeClaimSpec: { resources: { requests: { storage: '64Mi' } } } };
  await clusters(t).createFromSpec(tlsName, {
    size: 3,
    version: pins.ETCD35_VERSION,
    tls: { enabled: true },
    pod: claims,
  });
  await converged(t, tlsName, 3);
  await kubectl(t, 'annotate', 'etcdcluster', tlsName, `${rotateCertsAnnotation}=ca-capture`);
  await eventually(
    'rotated',
    async () => ((await clusters(t).get(tlsName))?.status.tls as { rotations?: number } | undefined)?.rotations === 1,
    300000,
  );
  await clusters(t).patchSpec(tlsName, { tls: { enabled: false } });
  await eventually(
    'switched to plain',
    async () => {
      const op = (await clusters(t).get(tlsName))?.status.lastOperations?.at(-1);
      return (
        op?.type === 'switch-tls' &&
        op.result === 'Succeeded' &&
        (await membership(t, tlsName)).ips.every((u) => u.startsWith('http://'))
      );
    },
    300000,
  );
  await clusters(t).delete(tlsName);
  await eventually('TLS cluster gone', async () => !(await clusters(t).get(tlsName)), 180000);

  log('delete the cluster');
  await clusters(t).delete(name);
  await eventually('cluster gone', async () => !(await clusters(t).get(name)), 180000);
  await eventually(
    'every workflow closed',
    async () => {
      for await (const w of client.workflow.list()) if (w.status.name === 'RUNNING') return false;
      return true;
    },
    60000,
  );

  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  let total = 0;
  const seen = new Map<string, number>();
  for await (const w of client.workflow.list()) {
    const history = await client.workflow.getHandle(w.workflowId, w.runId).fetchHistory();
    const base = `${w.type}--${w.workflowId.replace(/[^A-Za-z0-9.-]+/g, '_')}`;
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    const file = `${base}${n ? `--${n + 1}` : ''}.json.gz`;
    const gz = gzipSync(historyToJSON(history), { level: 9 });
    writeFileSync(join(out, file), gz);
    total += gz.length;
    log(`${file}: ${history.events?.length} events, ${Math.round(gz.length / 1024)} KB`);
  }
  log(`saved ${seen.size} workflow(s), ${Math.round(total / 1024)} KB in ${out}`);
} finally {
  await connection.close();
  await ctl.stop();
  await t.stop();
}
