// Key samples (issue 19): when a backup is taken, a few of its keys are read from the member it was taken from at
// exactly the snapshot's revision; a later verification restores the stored backup, starts a throw-away etcd on
// it (loopback, random ports, in the tool's pod) and compares those keys. Sampling streams the key space in
// keys-only pages and keeps only the lowest hashes, so memory stays flat whatever the size of the keyspace.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import type { Etcd3 } from 'etcd3';
import type { KeySample } from '../workflows/types.js';

/** How many keys a sample holds (fewer when the keyspace is smaller). */
export const sampleSize = 64;
const page = 1000;
const all = Buffer.from([0]);

const rank = (salt: string, key: Buffer) => createHash('sha256').update(salt).update(key).digest('hex');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Keeps the n smallest ranks seen (a sorted array: n is small). */
export function lowest(n: number) {
  const kept: { rank: string; key: Buffer }[] = [];
  return {
    offer(r: string, key: Buffer) {
      if (kept.length === n && r >= kept[n - 1].rank) return;
      const i = kept.findIndex((k) => k.rank > r);
      kept.splice(i < 0 ? kept.length : i, 0, { rank: r, key });
      if (kept.length > n) kept.pop();
    },
    keys: () => kept.map((k) => k.key),
  };
}

/**
 * The sample of a snapshot at `revision`, read member-locally (serializable) from the member the snapshot came from:
 * its MVCC history at that revision is exactly what the snapshot holds. The salt (the backup's name) picks different
 * keys for each backup, so successive verifications cover more of the keyspace. Fails when `revision` is compacted.
 */
export async function takeSample(c: Etcd3, revision: number, salt: string): Promise<KeySample> {
  const pick = lowest(sampleSize);
  let keys = 0;
  for (let from = all; ;) {
    const res = await c.kv.range({
      key: from,
      range_end: all,
      revision,
      serializable: true,
      keys_only: true,
      limit: page,
    });
    for (const kv of res.kvs) pick.offer(rank(salt, kv.key), kv.key);
    keys += res.kvs.length;
    if (!res.more || !res.kvs.length) break;
    from = Buffer.concat([res.kvs[res.kvs.length - 1].key, Buffer.from([0])]);
  }
  const entries: KeySample['entries'] = [];
  for (const key of pick.keys()) {
    const kv = (await c.kv.range({ key, revision, serializable: true })).kvs[0];
    if (kv)
      entries.push({
        key: key.toString('base64'),
        modRevision: Number(kv.mod_revision),
        valueSha256: sha256(kv.value),
      });
  }
  return { revision, keys, salt, entries };
}

/** A key for messages: as text when printable, else base64. */
const shown = (b64: string) => {
  const s = Buffer.from(b64, 'base64').toString('utf8');
  return /^[\x20-\x7e]*$/.test(s) ? JSON.stringify(s) : `base64:${b64}`;
};

/** What differs between the sample recorded at backup time and the restored etcd (empty when nothing does). */
export async function compareSample(c: Etcd3, sample: KeySample): Promise<string[]> {
  const diffs: string[] = [];
  const count = await c.kv.range({ key: all, range_end: all, count_only: true });
  if (Number(count.header.revision) !== sample.revision)
    diffs.push(`revision ${count.header.revision}, recorded ${sample.revision}`);
  if (Number(count.count) !== sample.keys) diffs.push(`${count.count} keys, recorded ${sample.keys}`);
  for (const e of sample.entries) {
    const kv = (await c.kv.range({ key: Buffer.from(e.key, 'base64') })).kvs[0];
    if (!kv) diffs.push(`key ${shown(e.key)} missing`);
    else if (Number(kv.mod_revision) !== e.modRevision)
      diffs.push(`key ${shown(e.key)} mod_revision ${kv.mod_revision}, recorded ${e.modRevision}`);
    else if (sha256(kv.value) !== e.valueSha256) diffs.push(`key ${shown(e.key)} value differs (sha256)`);
  }
  return diffs;
}

/** A free loopback port (asked of the kernel, then released for etcd to take). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** The peer/client URLs of a throw-away member: etcdutl restore must name the same peer URL etcd then serves. */
export async function scratchURLs(): Promise<{ peer: string; client: string }> {
  return { peer: `http://127.0.0.1:${await freePort()}`, client: `http://127.0.0.1:${await freePort()}` };
}

/** `etcdutl snapshot restore` arguments for a throw-away member named `verify`. */
export const scratchRestoreArgs = (file: string, dataDir: string, peer: string) => [
  'snapshot',
  'restore',
  file,
  '--data-dir',
  dataDir,
  '--name',
  'verify',
  '--initial-cluster',
  `verify=${peer}`,
  '--initial-advertise-peer-urls',
  peer,
];

/** Starts etcd on a restored data dir, loopback only; the caller kills it (stopScratch). */
export function startScratch(etcdBin: string, dataDir: string, urls: { peer: string; client: string }): ChildProcess {
  const p = spawn(
    etcdBin,
    [
      '--name=verify',
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${urls.client}`,
      `--advertise-client-urls=${urls.client}`,
      `--listen-peer-urls=${urls.peer}`,
      `--initial-advertise-peer-urls=${urls.peer}`,
      `--initial-cluster=verify=${urls.peer}`,
      '--log-level=error',
      '--unsafe-no-fsync', // scratch: thrown away after the check
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let said = '';
  p.stderr!.on('data', (d: Buffer) => (said = (said + d.toString()).slice(-500)));
  (p as ChildProcess & { said: () => string }).said = () => said;
  return p;
}

export const scratchSaid = (p: ChildProcess) => (p as ChildProcess & { said?: () => string }).said?.() ?? '';

/** Kills the throw-away etcd and waits for it to be gone (before its data dir is removed). */
export async function stopScratch(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    p.once('exit', () => resolve());
    p.kill('SIGKILL');
  });
}
