// The backup tool (image kube-etcd-controller/backup-tool, one per cluster with spec.backup): takes
// snapshots from the member with the highest revision, keeps them on its claim, serves them on 19999.
//   POST /v1/backupnow?members=NAME,NAME[&reason=...][&namespace=&cluster=&uid=]  take a snapshot now (returns its
//        record; the record names the cluster, with the etcd cluster ID the member reported). Only with
//        `Authorization: Bearer <BACKUP_TOKEN>` (the controller's; else 401). Members are named, never given by URL:
//        their addresses come from this tool's own cluster (CLUSTER_NAMESPACE/CLUSTER_NAME); endpoints= is refused.
//   GET  /v1/backups[?cluster=ns/name]                 list (newest first): name, revision, size, sha256, version, time, valid
//   GET  /v1/backups/<name>                            download (the snapshot itself, decompressed)
//   GET  /healthz
// Env: BACKUP_DIR (default /var/etcd-backup), PORT (19999), MAX_SNAPSHOT (keep the newest N; 0 = all),
// MAX_AGE_SECONDS (0 = no limit); retention only ever prunes backups of the cluster incarnation just backed up.
// With S3_BUCKET set (see s3.ts) backups go to object storage, BACKUP_DIR only stages the snapshot, and
// names are <namespace>/<cluster>/<file>.db.gz; ?cluster= lists another cluster's (restore into a new cluster).
// CLUSTER_NAMESPACE, CLUSTER_NAME: the cluster this tool serves (its default listing, the members it may snapshot).
// BACKUP_TOKEN: what callers that change things must present. ETCD_TLS_DIR: the cluster is TLS, its client
// certificate (ca.crt, tls.crt, tls.key) is there.
// Verification (issue 19): every staged snapshot goes through `etcdutl snapshot status` before it is stored (when
// etcdutl is on PATH or at ETCDUTL); and at most every VERIFY_INTERVAL_SECONDS (0 = never) the backup just stored is
// read back from its destination and restored with etcdutl into a scratch data dir, its revision and key count
// compared with the record: the outcome is the record's `verification`.
import { createHash, timingSafeEqual } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { execFile } from 'node:child_process';
import { createServer, type ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import { Etcd3 } from 'etcd3';
import { noop } from 'cockatiel';
import { pino } from 'pino';
import { identityFrom } from '../activities/backup-identity.js';
import { advertiseClientURL, memberIndex } from '../api/names.js';
import type { BackupIdentity, BackupRecord, BackupVerification } from '../workflows/types.js';
import { S3Destination, s3ConfigFromEnv } from './s3.js';

const dir = process.env.BACKUP_DIR ?? '/var/etcd-backup';
const port = Number(process.env.PORT ?? 19999);
const maxSnapshot = Number(process.env.MAX_SNAPSHOT ?? 0);
const maxAgeSeconds = Number(process.env.MAX_AGE_SECONDS ?? 0);
const s3Config = s3ConfigFromEnv(process.env);
const s3 = s3Config && new S3Destination(s3Config);
const self = { namespace: process.env.CLUSTER_NAMESPACE ?? '', name: process.env.CLUSTER_NAME ?? '' };
const log = pino({ name: 'backup-tool' });
const etcdutlBin = process.env.ETCDUTL ?? 'etcdutl';
const verifyIntervalMs = Number(process.env.VERIFY_INTERVAL_SECONDS ?? 0) * 1000;
let lastVerifiedAt = 0;
const run = promisify(execFile);

const token = process.env.BACKUP_TOKEN ?? '';
const tlsDir = process.env.ETCD_TLS_DIR;
const credentials = tlsDir
  ? {
      rootCertificate: readFileSync(join(tlsDir, 'ca.crt')),
      certChain: readFileSync(join(tlsDir, 'tls.crt')),
      privateKey: readFileSync(join(tlsDir, 'tls.key')),
    }
  : undefined;

const client = (url: string) =>
  new Etcd3({
    hosts: [url],
    dialTimeout: 3000,
    faultHandling: { global: noop, host: () => noop },
    ...(credentials ? { credentials } : {}),
  });

/** A member of this tool's cluster by name → its client URL (its stable DNS name); anything else is refused. */
function memberURL(name: string): string {
  if (memberIndex(self.name, name) < 0)
    throw new Error(`${name} is not a member name of ${self.namespace}/${self.name}`);
  return advertiseClientURL(self, name, !!credentials);
}

/** The controller's token, compared in constant time. */
function authorized(header: string | undefined): boolean {
  const given = Buffer.from(/^Bearer (.+)$/.exec(header ?? '')?.[1] ?? '');
  const want = Buffer.from(token);
  return want.length > 0 && given.length === want.length && timingSafeEqual(given, want);
}

/** Reads a file in 1 MiB chunks: sha256 of all of it, sha256 of all but its last 32 bytes, those bytes, its head. */
function digestFile(file: string): { sha256: string; bodySha256: Buffer; tail: Buffer; head: Buffer; size: number } {
  const size = statSync(file).size;
  const all = createHash('sha256');
  const body = createHash('sha256');
  const buf = Buffer.alloc(2 ** 20);
  const head = Buffer.alloc(Math.min(4096, size));
  const fd = openSync(file, 'r');
  try {
    for (let pos = 0; pos < size;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n <= 0) break;
      const chunk = buf.subarray(0, n);
      all.update(chunk);
      body.update(chunk.subarray(0, Math.max(0, Math.min(n, size - 32 - pos))));
      if (pos < head.length) chunk.copy(head, pos, 0, Math.min(n, head.length - pos));
      pos += n;
    }
    const tail = Buffer.alloc(Math.min(32, size));
    readSync(fd, tail, 0, tail.length, size - tail.length);
    return { sha256: all.digest('hex'), bodySha256: body.digest(), tail, head, size };
  } finally {
    closeSync(fd);
  }
}

/** etcd appends the SHA-256 of the database as the last 32 bytes: a torn or altered file fails this. */
export function verifySnapshot(file: string): string | undefined {
  const d = digestFile(file);
  if (d.size < 32 + 4096) return `file too small (${d.size} bytes)`;
  if (!d.bodySha256.equals(d.tail)) return 'integrity hash mismatch (corrupted snapshot)';
  if (d.head.readUInt32LE(16) !== 0xed0cdaed) return 'not a bbolt database'; // meta page magic after the 16-byte page header
  return undefined;
}

function list(): BackupRecord[] {
  if (!existsSync(dir)) return [];
  const out: BackupRecord[] = [];
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.json'))) {
    try {
      const rec = JSON.parse(readFileSync(join(dir, f), 'utf8')) as BackupRecord;
      const file = join(dir, rec.name);
      if (!existsSync(file)) continue;
      const problem = statSync(file).size !== rec.size ? 'size changed since it was written' : verifySnapshot(file);
      out.push({ ...rec, valid: !problem, problem });
    } catch {
      /* a half-written record is never listed */
    }
  }
  // Newest first by revision, then time: never by sorting names as text.
  return out.sort((a, b) => b.revision - a.revision || Date.parse(b.time) - Date.parse(a.time));
}

/** The destination refused or could not be reached (the snapshot itself was fine): the caller decides whether to try
 *  again (HTTP 502 with `destination: true`), so a dead endpoint fails the backup in seconds, not at its deadline. */
class DestinationError extends Error {}

/** The S3 error's text: the SDK's code and message, or the socket error (ECONNREFUSED, ENOTFOUND, timeouts). */
function s3Reason(e: unknown): string {
  const err = e as Error & { code?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  const status = err.$metadata?.httpStatusCode ? ` (HTTP ${err.$metadata.httpStatusCode})` : '';
  const code = err.code ?? err.Code ?? (err.name !== 'Error' ? err.name : '');
  const msg = err.message || String(e);
  return `${code && !msg.includes(code) ? `${code}: ` : ''}${msg}${status}`;
}

interface SnapshotStatus {
  hash: number;
  revision: number;
  totalKey: number;
  totalSize: number;
}

/** Runs etcdutl; a failure says etcdutl's own last words (stderr). */
async function etcdutl(args: string[], timeout: number): Promise<string> {
  try {
    return (await run(etcdutlBin, args, { timeout })).stdout;
  } catch (e) {
    const said = String((e as { stderr?: string }).stderr || (e as Error).message).trim();
    throw new Error(`etcdutl ${args.slice(0, 2).join(' ')}: ${said.slice(-300)}`, { cause: e });
  }
}

/** `etcdutl snapshot status` of a snapshot or a member's db file; undefined when etcdutl is not installed. */
async function etcdutlStatus(file: string): Promise<SnapshotStatus | undefined> {
  try {
    return JSON.parse(await etcdutl(['snapshot', 'status', file, '-w', 'json'], 300_000)) as SnapshotStatus;
  } catch (e) {
    if (((e as Error).cause as NodeJS.ErrnoException)?.code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * Restores a stored backup into a scratch data dir (read back from its destination, as a recovery would), then
 * compares the restored database's revision and key count with what the snapshot held when it was taken.
 */
async function verifyStored(rec: BackupRecord, taken: SnapshotStatus): Promise<BackupVerification> {
  const time = new Date().toISOString();
  const scratch = join(dir, `.verify-${Date.now()}`);
  // On the claim the stored file itself is read; from S3 it is downloaded (decompressed) first.
  const file = s3 ? join(scratch, 'snapshot.db') : join(dir, rec.name);
  try {
    mkdirSync(scratch, { recursive: true });
    if (s3) await pipeline(await s3.download(rec.name), createWriteStream(file));
    const { sha256 } = digestFile(file);
    if (sha256 !== rec.sha256) throw new Error(`read back with sha256 ${sha256}, recorded ${rec.sha256}`);
    const data = join(scratch, 'data');
    await etcdutl(['snapshot', 'restore', file, '--data-dir', data], 600_000);
    const got = (await etcdutlStatus(join(data, 'member', 'snap', 'db')))!;
    if (got.revision !== taken.revision || got.totalKey !== taken.totalKey)
      throw new Error(
        `restored revision ${got.revision} with ${got.totalKey} keys, the snapshot held revision ` +
          `${taken.revision} with ${taken.totalKey}`,
      );
    const message = `restored into a scratch member: revision ${got.revision}, ${got.totalKey} keys`;
    log.info({ name: rec.name }, message);
    return { result: 'Succeeded', backup: rec.name, revision: got.revision, keys: got.totalKey, time, message };
  } catch (e) {
    log.warn({ name: rec.name, err: (e as Error).message }, 'backup verification failed');
    return { result: 'Failed', backup: rec.name, revision: rec.revision, time, message: (e as Error).message };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The stored backup restored on its schedule (VERIFY_INTERVAL_SECONDS); only when etcdutl checked the snapshot. */
async function maybeVerify(rec: BackupRecord, taken: SnapshotStatus | undefined): Promise<BackupRecord> {
  if (!taken || verifyIntervalMs <= 0 || Date.now() - lastVerifiedAt < verifyIntervalMs) return rec;
  lastVerifiedAt = Date.now();
  return { ...rec, verification: await verifyStored(rec, taken) };
}

async function backupNow(endpoints: string[], reason: string, who: URLSearchParams): Promise<BackupRecord> {
  if (!endpoints.length) throw new Error('no endpoints');
  let best: { url: string; revision: number; version: string; clusterId: string } | undefined;
  for (const url of endpoints) {
    const c = client(url);
    try {
      const s = await c.maintenance.status();
      const revision = Number(s.header.revision);
      if (!best || revision > best.revision)
        best = { url, revision, version: s.version, clusterId: s.header.cluster_id };
    } catch (e) {
      log.warn({ url, err: (e as Error).message }, 'member did not answer');
    } finally {
      c.close();
    }
  }
  if (!best) throw new Error(`no member answered among ${endpoints.join(', ')}`);
  mkdirSync(dir, { recursive: true });
  const time = new Date().toISOString();
  const name = `etcd-snapshot-rev${best.revision}-${time.replace(/[:.]/g, '')}.db`;
  const tmp = join(dir, `.${name}.partial`);
  const c = client(best.url);
  try {
    const toBytes = new Transform({
      writableObjectMode: true,
      transform(msg: { blob: Buffer }, _e, cb) {
        cb(null, msg.blob);
      },
    });
    await pipeline(
      (await c.maintenance.snapshot()) as unknown as NodeJS.ReadableStream,
      toBytes,
      createWriteStream(tmp),
    );
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`snapshot from ${best.url} failed: ${(e as Error).message}`, { cause: e });
  } finally {
    c.close();
  }
  const problem = verifySnapshot(tmp);
  if (problem) {
    rmSync(tmp, { force: true });
    throw new Error(`snapshot from ${best.url} is bad: ${problem}`);
  }
  // etcdutl's own reading of the file (revision, keys), before it is stored.
  const taken = await etcdutlStatus(tmp).catch((e: Error) => {
    rmSync(tmp, { force: true });
    throw new Error(`snapshot from ${best.url} is bad: ${e.message}`);
  });
  // etcdutl's revision is the newest key revision in the file: below the member's header revision when no key was
  // ever written (revision 1, no keys) or a compaction dropped the newest tombstone. Said, not refused.
  if (taken && taken.revision < best.revision)
    log.info(
      { name, snapshotRevision: taken.revision, memberRevision: best.revision },
      'snapshot key revision below the member revision',
    );
  const { size, sha256 } = digestFile(tmp);
  const cluster: BackupIdentity = identityFrom(who, best.clusterId);
  const rec: BackupRecord = {
    name,
    revision: best.revision,
    size,
    sha256,
    etcdVersion: best.version,
    time,
    member: best.url,
    reason,
    valid: true,
    cluster,
  };
  if (s3) {
    const folder = S3Destination.clusterDir(cluster.namespace ?? self.namespace, cluster.name ?? self.name);
    try {
      const stored = await s3.put(tmp, `${folder}/${name}.gz`, rec);
      log.info(
        { name: stored.name, revision: best.revision, size, compressedSize: stored.compressedSize, reason },
        `snapshot uploaded to ${s3.describe()}`,
      );
      await prune(cluster.uid).catch((e) => log.warn({ err: (e as Error).message }, 'retention failed'));
      return await maybeVerify(stored, taken);
    } catch (e) {
      throw new DestinationError(`upload to ${s3.describe()} failed: ${s3Reason(e)}`, { cause: e });
    } finally {
      rmSync(tmp, { force: true });
    }
  }
  renameSync(tmp, join(dir, name));
  writeFileSync(join(dir, `.${name}.json.partial`), JSON.stringify(rec));
  renameSync(join(dir, `.${name}.json.partial`), join(dir, `${name}.json`)); // listed only once complete
  log.info({ name, revision: best.revision, size, member: best.url, reason }, 'snapshot saved');
  await prune(cluster.uid);
  return maybeVerify(rec, taken);
}

/** Backups of this cluster's folder (S3) or claim, newest first. */
async function listed(folder?: string): Promise<BackupRecord[]> {
  return s3 ? s3.list(folder ?? S3Destination.clusterDir(self.namespace, self.name)) : list();
}

/** A snapshot taken for a disaster recovery is what the new seed's init container downloads: kept out of retention
 *  for an hour, so scheduled backups taken meanwhile (every few seconds in tests) never prune it mid-restore. */
const inUseForRecoveryMs = 60 * 60 * 1000;
const inUseForRecovery = (b: BackupRecord) =>
  /^disaster recovery/.test(b.reason ?? '') && Date.now() - Date.parse(b.time) < inUseForRecoveryMs;

/**
 * Retention by count (MAX_SNAPSHOT) and age (MAX_AGE_SECONDS), only among backups of the incarnation just
 * backed up (same object UID): another cluster's or a previous incarnation's backups are never pruned here.
 * The newest one always stays.
 */
async function prune(uid: string | undefined): Promise<void> {
  if (!uid || (maxSnapshot <= 0 && maxAgeSeconds <= 0)) return;
  const mine = (await listed()).filter((r) => r.cluster?.uid === uid && !inUseForRecovery(r));
  const tooOld = (r: BackupRecord) => maxAgeSeconds > 0 && Date.now() - Date.parse(r.time) > maxAgeSeconds * 1000;
  const old = mine.slice(1).filter((r, i) => (maxSnapshot > 0 && i + 1 >= maxSnapshot) || tooOld(r));
  if (s3) await s3.remove(old.map((r) => r.name));
  for (const r of old) {
    if (!s3) {
      rmSync(join(dir, r.name), { force: true });
      rmSync(join(dir, `${r.name}.json`), { force: true });
    }
    log.info({ name: r.name, revision: r.revision, time: r.time }, 'snapshot pruned (retention)');
  }
}

const send = (res: ServerResponse, code: number, body: unknown) =>
  res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));

createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname === '/healthz') return send(res, 200, { ok: true, dir, destination: s3?.describe() ?? dir });
  if (url.pathname === '/v1/backups' && req.method === 'GET') {
    const other = url.searchParams.get('cluster');
    if (other && !/^[a-z0-9-]+\/[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(other))
      return send(res, 400, { error: 'cluster must be <namespace>/<name>' });
    // A claim holds only this tool's cluster: never answer for another with this one's backups.
    if (other && !s3 && other !== `${self.namespace}/${self.name}`)
      return send(res, 400, { error: `this tool's claim holds only ${self.namespace}/${self.name}'s backups` });
    listed(other ?? undefined).then(
      (l) => send(res, 200, l),
      (e) => send(res, 502, { error: (e as Error).message }),
    );
    return;
  }
  if (url.pathname === '/v1/backupnow' && req.method === 'POST') {
    if (!authorized(req.headers.authorization)) return send(res, 401, { error: 'unauthorized' });
    if (url.searchParams.has('endpoints'))
      return send(res, 400, { error: "endpoints are this tool's own cluster's: name members (members=)" });
    let endpoints: string[];
    try {
      endpoints = (url.searchParams.get('members') ?? '').split(',').filter(Boolean).map(memberURL);
    } catch (e) {
      return send(res, 400, { error: (e as Error).message });
    }
    backupNow(endpoints, url.searchParams.get('reason') ?? 'on demand', url.searchParams).then(
      (r) => send(res, 200, r),
      (e) =>
        send(res, e instanceof DestinationError ? 502 : 500, {
          error: (e as Error).message,
          ...(e instanceof DestinationError ? { destination: true } : {}),
        }),
    );
    return;
  }
  const o = /^\/v1\/backups\/([a-z0-9-]+\/[-a-z0-9]+\/[^/]+\.db\.gz)$/.exec(url.pathname);
  if (s3 && o && req.method === 'GET') {
    s3.download(o[1]).then(
      (body) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        pipeline(body, res).catch((e) => log.warn({ name: o[1], err: (e as Error).message }, 'download failed'));
      },
      (e) => send(res, /NoSuchKey|NotFound/.test((e as Error).name) ? 404 : 502, { error: (e as Error).message }),
    );
    return;
  }
  const m = /^\/v1\/backups\/([^/]+)$/.exec(url.pathname);
  if (m && req.method === 'GET') {
    const rec = list().find((r) => r.name === m[1]);
    if (!rec) return send(res, 404, { error: `no backup ${m[1]}` });
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': rec.size,
      'x-etcd-revision': rec.revision,
      'x-sha256': rec.sha256,
    });
    createReadStream(join(dir, rec.name)).pipe(res);
    return;
  }
  send(res, 404, { error: 'not found' });
}).listen(port, '0.0.0.0', () =>
  log.info({ port, dir, maxSnapshot, maxAgeSeconds, destination: s3?.describe() ?? dir }, 'backup tool listening'),
);
