// `npx tsx bench/backup-large.ts`: backup and restore of a large keyspace through the stack's S3 server (issue 19,
// item 7). Fills a cluster with BENCH_BACKUP_MIB (default 1024) of values (1 MiB each, half random, half one letter: gzip
// halves it), backs it up to S3 (the Schedule's first run, verification included unless
// BENCH_VERIFY=0), then restores it into a new cluster (spec.restore). Prints the backup and restore times and the
// peak RSS (VmHWM) of each backup tool process (found by its environment, in its container) and of the controller.
// Not part of npm test. BENCH_SIZE (members, default 1) sizes both clusters.
import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { Etcd3 } from 'etcd3';
import { clusters, convergedNow, converged, restoredCopy } from '../test/support/controller.js';
import { eventually } from '../test/support/stack.js';
import { benchWithController } from './harness.js';

const mib = Number(process.env.BENCH_BACKUP_MIB ?? 1024);
const size = Number(process.env.BENCH_SIZE ?? 1);
const verify = process.env.BENCH_VERIFY !== '0';
const tag = randomUUID().slice(0, 6);
const src = `big-${tag}`;
const dst = `big-copy-${tag}`;

/** Every process whose command line or environment contains `needle`, with its peak RSS (VmHWM, kB). */
function peakRss(needle: string, where: 'cmdline' | 'environ'): { pid: number; kb: number }[] {
  const out: { pid: number; kb: number }[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (!readFileSync(`/proc/${pid}/${where}`, 'utf8').split('\0').includes(needle)) continue;
      const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (hwm) out.push({ pid: Number(pid), kb: Number(hwm[1]) });
    } catch {
      /* gone, or not ours to read */
    }
  }
  return out;
}
const fmtMiB = (kb: number) => `${(kb / 1024).toFixed(0)} MiB`;

benchWithController(async ({ t, temporal }) => {
  const s3 = t.stack.s3;
  await t.core.createNamespacedSecret({
    namespace: 'default',
    body: {
      metadata: { name: 'bench-s3' },
      stringData: { accessKeyID: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    },
  });
  const dest = { endpoint: s3.podEndpoint, bucket: s3.bucket, prefix: 'bench', credentialsSecret: 'bench-s3' };
  const etcd = { quotaBackendBytes: 8 * 2 ** 30 };
  await clusters(t).createFromSpec(src, { size, etcd });
  const m = await converged(t, src, size, 300000);

  const t0 = Date.now();
  const client = new Etcd3({ hosts: m.ips, dialTimeout: 3000 });
  const zeros = Buffer.alloc(2 ** 19, 'a');
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = next++; i < mib; i = next++)
        await client.put(`big/${i}`).value(Buffer.concat([randomBytes(2 ** 19), zeros]));
    }),
  );
  const status = await client.maintenance.status();
  client.close();
  console.log(`filled ${mib} MiB in ${((Date.now() - t0) / 1000).toFixed(1)} s, db size ${status.dbSize} bytes`);

  // spec.backup: the Schedule's first run starts at once (and verifies what it stored).
  await clusters(t).patchSpec(src, {
    backup: { snapshotIntervalInSecond: 86400, verifyIntervalInSecond: verify ? 1 : 0, s3: dest },
  });
  const done = await eventually(
    'the first scheduled backup',
    async () => {
      const c = await clusters(t).get(src);
      const b = c?.status.lastBackup as { result?: string; workflowId?: string; message?: string } | undefined;
      return b?.result ? { b, v: c?.status.lastVerification } : undefined;
    },
    1800000,
    2000,
  );
  if (done.b.result !== 'Succeeded') throw new Error(`backup failed: ${done.b.message}`);
  const run = await temporal.workflow.getHandle(done.b.workflowId!).describe();
  const backupSeconds = (run.closeTime!.getTime() - run.startTime.getTime()) / 1000;
  console.log(`backup ${JSON.stringify(done.b)}\nverification ${JSON.stringify(done.v)}`);

  const r0 = Date.now();
  await clusters(t).createFromSpec(dst, {
    size,
    etcd,
    backup: { snapshotIntervalInSecond: 86400, s3: dest },
    restore: { cluster: src },
  });
  const copy = await restoredCopy(t, dst, size, 1800000, 2000);
  const restoreSeconds = (Date.now() - r0) / 1000;
  const ips = (await convergedNow(t, dst, size))!.ips;
  const check = new Etcd3({ hosts: ips, dialTimeout: 3000 });
  const keys = Number((await check.getAll().prefix('big/').count()) ?? 0);
  check.close();

  const srcTool = peakRss(`CLUSTER_NAME=${src}`, 'environ');
  const dstTool = peakRss(`CLUSTER_NAME=${dst}`, 'environ');
  const controller = peakRss(`--test-stack=${t.stack.logsDir}`, 'cmdline');
  const rows = [
    `| keyspace | ${mib} MiB in ${mib} values (db ${(Number(status.dbSize) / 2 ** 20).toFixed(0)} MiB), ${size} member(s) |`,
    `| backup (scheduled run: snapshot, gzip, multipart upload, read-back hashes${verify ? ', restore check' : ''}) | ${backupSeconds.toFixed(1)} s |`,
    `| restore into a new cluster (create → converged, ${keys} of ${mib} keys back) | ${restoreSeconds.toFixed(1)} s |`,
    `| peak RSS, source's backup tool | ${srcTool.map((p) => fmtMiB(p.kb)).join(', ') || '?'} |`,
    `| peak RSS, copy's backup tool (serves the download) | ${dstTool.map((p) => fmtMiB(p.kb)).join(', ') || '?'} |`,
    `| peak RSS, controller | ${fmtMiB(Math.max(0, ...controller.map((p) => p.kb)))} |`,
  ];
  console.log(`restored from ${String((copy.status.restoredFrom as { source?: string }).source)}`);
  console.log(rows.join('\n'));
});
