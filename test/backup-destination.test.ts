// Pure: the backup tool's destination settings (issue 19). Credentials only by Secret reference, never by value.
// The claim's storage (gzip, older uncompressed files still read) and key-sample choice, on a temp dir.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backupToolEnv } from '../activities/owned.js';
import { ClaimDestination } from '../backup-tool/claim.js';
import { lowest } from '../backup-tool/sample.js';
import { s3ConfigFromEnv } from '../backup-tool/s3.js';
import type { BackupRecord } from '../workflows/types.js';

const ref = { namespace: 'prod', name: 'main', uid: 'u-1' };

test('the claim stays the default destination: no S3 settings at all', () => {
  const env = backupToolEnv(ref, { maxSnapshot: 3 });
  expect(env.map((e) => e.name)).not.toContain('S3_BUCKET');
  expect(s3ConfigFromEnv(Object.fromEntries(env.map((e) => [e.name, e.value])))).toBeUndefined();
});

test('S3: settings as values, credentials and CA only as secretKeyRef; the tool reads them back', () => {
  const env = backupToolEnv(ref, {
    maxAgeInSecond: 60,
    s3: { endpoint: 'https://s3.example', bucket: 'b-1', prefix: '/team/', credentialsSecret: 'creds', caSecret: 'ca' },
  });
  const by = Object.fromEntries(env.map((e) => [e.name, e]));
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'S3_CA']) {
    expect(by[k].value).toBeUndefined();
    expect(by[k].valueFrom?.secretKeyRef?.name).toBe(k === 'S3_CA' ? 'ca' : 'creds');
  }
  expect(by.MAX_AGE_SECONDS.value).toBe('60');
  const cfg = s3ConfigFromEnv({ ...Object.fromEntries(env.map((e) => [e.name, e.value ?? ''])), S3_CA: 'PEM' });
  expect(cfg).toEqual({
    endpoint: 'https://s3.example',
    bucket: 'b-1',
    prefix: 'team',
    region: 'us-east-1',
    forcePathStyle: true,
    ca: 'PEM',
  });
});

/** A file that passes the tool's snapshot check: a bbolt meta magic at offset 16 and etcd's trailing sha256. */
function fakeSnapshot(seed: number): Buffer {
  const body = Buffer.alloc(64 * 1024, seed);
  body.writeUInt32LE(0xed0cdaed, 16);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

const recordOf = (name: string, bytes: Buffer, revision: number): BackupRecord => ({
  name,
  revision,
  size: bytes.length,
  sha256: createHash('sha256').update(bytes).digest('hex'),
  etcdVersion: '3.6.14',
  time: new Date(revision * 1000).toISOString(),
  member: 'm',
  reason: 'test',
  valid: true,
  cluster: { uid: 'u-1' },
});

const readAll = async (s: NodeJS.ReadableStream) => {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
};

test('the claim stores gzip like S3; backups written before (uncompressed .db) stay listed and restorable', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kec-claim-'));
  try {
    const claim = new ClaimDestination(dir);
    // Written by an older tool: the snapshot itself and its record.
    const old = fakeSnapshot(1);
    writeFileSync(join(dir, 'etcd-snapshot-rev5-a.db'), old);
    writeFileSync(
      join(dir, 'etcd-snapshot-rev5-a.db.json'),
      JSON.stringify(recordOf('etcd-snapshot-rev5-a.db', old, 5)),
    );
    // Written now: staged, then stored compressed.
    const fresh = fakeSnapshot(2);
    const staged = join(dir, '.staged.partial');
    writeFileSync(staged, fresh);
    const stored = await claim.put(staged, recordOf('etcd-snapshot-rev9-b.db', fresh, 9));
    expect(stored).toMatchObject({ name: 'etcd-snapshot-rev9-b.db.gz', compression: 'gzip' });
    const onDisk = readFileSync(join(dir, stored.name));
    expect(onDisk.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(onDisk.length).toBe(stored.compressedSize);
    expect(onDisk.length).toBeLessThan(fresh.length / 10);

    const listed = await claim.list();
    expect(listed.map((r) => [r.name, r.valid])).toEqual([
      ['etcd-snapshot-rev9-b.db.gz', true],
      ['etcd-snapshot-rev5-a.db', true],
    ]);
    // Downloads (what a restore's init container fetches) are the snapshot itself, old and new alike.
    expect((await readAll(claim.open(listed[0]))).equals(fresh)).toBe(true);
    expect((await readAll(claim.open(listed[1]))).equals(old)).toBe(true);

    // A corrupted compressed file is listed invalid (never a restore source).
    onDisk[Math.floor(onDisk.length / 2)] ^= 0xff;
    writeFileSync(join(dir, stored.name), onDisk);
    expect((await claim.list())[0]).toMatchObject({ valid: false, problem: expect.stringMatching(/sha256 differs/) });
    claim.remove(['etcd-snapshot-rev5-a.db']);
    expect((await claim.list()).map((r) => r.name)).toEqual(['etcd-snapshot-rev9-b.db.gz']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('key samples keep the lowest ranks, whatever order the keys come in', () => {
  const pick = lowest(3);
  for (const r of ['d', 'a', 'f', 'c', 'b', 'e']) pick.offer(r, Buffer.from(r));
  expect(pick.keys().map(String)).toEqual(['a', 'b', 'c']);
});
