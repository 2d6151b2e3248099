// The backup tool (image kube-etcd-controller/backup-tool, one per cluster with spec.backup): takes
// snapshots from the member with the highest revision, keeps them on its claim (gzip; older uncompressed files stay
// readable) or in S3, serves them on 19999.
//   POST /v1/backupnow?members=NAME,NAME[&reason=...][&namespace=&cluster=&uid=]  take a snapshot now (returns its
//        record; the record names the cluster, with the etcd cluster ID the member reported). Only with
//        `Authorization: Bearer <BACKUP_TOKEN>` (the controller's; else 401). Members are named, never given by URL:
//        their addresses come from this tool's own cluster (CLUSTER_NAMESPACE/CLUSTER_NAME); endpoints= is refused.
//   GET  /v1/backups[?cluster=ns/name]                 list (newest first): name, revision, size, sha256, version, time, valid
//   GET  /v1/backups/<name>                            download (the snapshot itself, decompressed)
//   GET  /healthz                                      the only path without the token (listings and downloads need it)
// Env: BACKUP_DIR (default /var/etcd-backup), PORT (19999), MAX_SNAPSHOT (keep the newest N; 0 = all),
// MAX_AGE_SECONDS (0 = no limit); retention only ever prunes backups of the cluster incarnation just backed up.
// With S3_BUCKET set (see s3.ts) backups go to object storage, BACKUP_DIR only stages the snapshot, and
// names are <namespace>/<cluster>/<file>.db.gz; ?cluster= lists another cluster's (restore into a new cluster).
// CLUSTER_NAMESPACE, CLUSTER_NAME: the cluster this tool serves (its default listing, the members it may snapshot).
// BACKUP_TOKEN: what every caller but /healthz's must present. ETCD_TLS_DIR: the cluster is TLS, its client
// certificate (ca.crt, tls.crt, tls.key) is there. ETCD_AUTH_DIR: the cluster uses etcd auth (spec.auth); the root
// user's username and password files are there (read at each use, never logged).
// Verification (issue 19): every staged snapshot goes through `etcdutl snapshot status` before it is stored (when
// etcdutl is on PATH or at ETCDUTL), and a sample of its keys is read at its revision from the member it came from
// (sample.ts); at most every VERIFY_INTERVAL_SECONDS (0 = never) the newest backup already stored (else the one just
// stored) is read back from its destination, restored into a scratch data dir and served by a throw-away etcd (ETCD,
// default etcd on PATH), and its sampled keys compared: the outcome is the record's `verification`.
import { timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { execFile, type ChildProcess } from 'node:child_process';
import { createServer, type ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
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
import { intEnv } from '../api/env.js';
import type { BackupIdentity, BackupRecord, BackupVerification, KeySample } from '../workflows/types.js';
import { S3Destination, s3ConfigFromEnv } from './s3.js';
import { ClaimDestination, digestFile, verifySnapshot } from './claim.js';
import { hashing } from './hashing.js';
import {
  compareSample,
  scratchRestoreArgs,
  scratchSaid,
  scratchURLs,
  startScratch,
  stopScratch,
  takeSample,
} from './sample.js';

const dir = process.env.BACKUP_DIR ?? '/var/etcd-backup';
const port = intEnv(process.env, 'PORT', 19999, { max: 65535 });
const maxSnapshot = intEnv(process.env, 'MAX_SNAPSHOT', 0, { min: 0 });
const maxAgeSeconds = intEnv(process.env, 'MAX_AGE_SECONDS', 0, { min: 0 });
const s3Config = s3ConfigFromEnv(process.env);
const s3 = s3Config && new S3Destination(s3Config);
const self = { namespace: process.env.CLUSTER_NAMESPACE ?? '', name: process.env.CLUSTER_NAME ?? '' };
const log = pino({ name: 'backup-tool' });
const etcdutlBin = process.env.ETCDUTL ?? 'etcdutl';
const etcdBin = process.env.ETCD ?? 'etcd';
const claim = new ClaimDestination(dir);
const verifyIntervalMs = intEnv(process.env, 'VERIFY_INTERVAL_SECONDS', 0, { min: 0 }) * 1000;
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

const authDir = process.env.ETCD_AUTH_DIR;
/** The root user's credentials from the mounted Secret (it may appear or change while the tool runs); none without. */
function rootAuth(): { username: string; password: string } | undefined {
  if (!authDir) return undefined;
  try {
    const [username, password] = ['username', 'password'].map((k) => readFileSync(join(authDir, k), 'utf8'));
    return username && password ? { username, password } : undefined;
  } catch {
    return undefined;
  }
}

const client = (url: string, tls = !!credentials, auth?: { username: string; password: string }) =>
  new Etcd3({
    hosts: [url],
    dialTimeout: 3000,
    faultHandling: { global: noop, host: () => noop },
    ...(tls && credentials ? { credentials } : {}),
    ...(auth ? { auth } : {}),
  });

/** A member's snapshot as a stream of { blob } messages. etcd3's maintenance.snapshot() passes its metadata (the auth
 *  token) where the request goes, so with auth on etcd refuses it ("user name is empty"): the call is made here. */
function snapshotStream(c: Etcd3): Promise<NodeJS.ReadableStream> {
  type Pool = {
    withConnection(
      service: string,
      fn: (x: {
        resource: unknown;
        client: { snapshot(req: object, meta: unknown): NodeJS.ReadableStream };
        metadata: unknown;
      }) => NodeJS.ReadableStream,
    ): Promise<NodeJS.ReadableStream>;
    markFailed(resource: unknown, err: unknown): void;
  };
  const pool = (c as unknown as { pool: Pool }).pool;
  return pool.withConnection('Maintenance', ({ resource, client, metadata }) => {
    const stream = client.snapshot({}, metadata);
    stream.on('error', (err) => pool.markFailed(resource, err));
    return stream;
  });
}

/** `fn` with a client of `url` as root when the tool has the credentials; again without them when etcd says auth is not
 *  enabled (spec.auth set, auth not yet or no longer on). A snapshot restored by a scratch etcd keeps the cluster's
 *  users, so the scratch is asked the same way. */
async function asked<T>(url: string, tls: boolean, fn: (c: Etcd3) => Promise<T>): Promise<T> {
  const auth = rootAuth();
  const c = client(url, tls, auth);
  try {
    return await fn(c);
  } catch (e) {
    if (!auth || !/authentication is not enabled/.test(String(e))) throw e;
  } finally {
    c.close();
  }
  const plain = client(url, tls);
  try {
    return await fn(plain);
  } finally {
    plain.close();
  }
}

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

/** A stored backup's snapshot, decompressed, streamed from its destination. */
async function opened(rec: BackupRecord): Promise<Readable> {
  return s3 ? s3.download(rec.name) : claim.open(rec);
}

/** etcd 3.4's data is not opened by the tool's etcd (3.6): those backups are checked up to the restore. */
const sampleComparable = (rec: BackupRecord) => !/^3\.[0-4]\./.test(rec.etcdVersion ?? '');

/**
 * Restores a stored backup as a recovery would: read back from its destination (sha256 checked), restored with
 * etcdutl into a scratch data dir, then a throw-away etcd started on it (loopback, random ports, killed after) and
 * the keys sampled when the backup was taken compared (value sha256, mod_revision), with the revision and key count.
 * Backups without a sample (taken before samples) are checked up to the restore, and the result says so.
 */
async function verifyStored(rec: BackupRecord): Promise<BackupVerification> {
  const time = new Date().toISOString();
  const started = Date.now();
  const scratch = join(dir, `.verify-${Date.now()}`);
  const file = join(scratch, 'snapshot.db');
  const data = join(scratch, 'data');
  let etcd: ChildProcess | undefined;
  const failed = (message: string, mismatches?: string[]): BackupVerification => {
    log.warn({ name: rec.name, err: message, mismatches }, 'backup verification failed');
    return {
      result: 'Failed',
      backup: rec.name,
      revision: rec.revision,
      time,
      message,
      ...(mismatches ? { mismatches } : {}),
    };
  };
  try {
    if (rec.valid === false) return failed(`not restorable: ${rec.problem}`);
    mkdirSync(scratch, { recursive: true });
    const read = hashing();
    await pipeline(await opened(rec), read, createWriteStream(file));
    const sha256 = read.digest();
    if (sha256 !== rec.sha256) return failed(`read back with sha256 ${sha256}, recorded ${rec.sha256}`);
    const urls = await scratchURLs();
    await etcdutl(scratchRestoreArgs(file, data, urls.peer), 600_000);
    rmSync(file, { force: true }); // the restored db is in the data dir now
    const got = (await etcdutlStatus(join(data, 'member', 'snap', 'db')))!;
    const restored = `revision ${got.revision}, ${got.totalKey} keys`;
    const sample = rec.sample;
    if (!sample || !sampleComparable(rec)) {
      const why = sample
        ? `etcd ${rec.etcdVersion} data`
        : 'no key sample recorded with this backup (taken before samples)';
      const message = `restored into a scratch data dir: ${restored}; ${why}: sha256 and restore checked, keys not compared`;
      log.info({ name: rec.name }, message);
      return { result: 'Succeeded', backup: rec.name, revision: got.revision, keys: got.totalKey, time, message };
    }
    etcd = startScratch(etcdBin, data, urls);
    {
      for (let i = 0; ; i++) {
        if (etcd.exitCode !== null)
          return failed(`the throw-away etcd on the restored data exited: ${scratchSaid(etcd)}`);
        const up = await asked(urls.client, false, (c) => c.maintenance.status()).then(
          () => true,
          () => false,
        );
        if (up) break;
        if (i >= 120) return failed('the throw-away etcd on the restored data did not answer within 60 s');
        await new Promise((r) => setTimeout(r, 500));
      }
      const diffs = await asked(urls.client, false, (c) => compareSample(c, sample));
      const took = ((Date.now() - started) / 1000).toFixed(1);
      if (diffs.length)
        return failed(
          `${diffs.length} difference(s) from the cluster at revision ${sample.revision}: ${diffs.slice(0, 3).join('; ')}`,
          diffs.slice(0, 10),
        );
      const message =
        `restored into a throw-away etcd in ${took} s: revision ${sample.revision}, ${sample.keys} keys, ` +
        `${sample.entries.length} sampled key(s) match the cluster's (value sha256, mod_revision)`;
      log.info({ name: rec.name }, message);
      return {
        result: 'Succeeded',
        backup: rec.name,
        revision: sample.revision,
        keys: sample.keys,
        sampled: sample.entries.length,
        time,
        message,
      };
    }
  } catch (e) {
    return failed((e as Error).message);
  } finally {
    if (etcd) await stopScratch(etcd);
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Due at most every VERIFY_INTERVAL_SECONDS (and only with etcdutl, which the restore needs); never in the way of
 *  a disaster recovery's snapshot. */
const verifyDue = (taken: SnapshotStatus | undefined, reason: string) =>
  !!taken &&
  verifyIntervalMs > 0 &&
  Date.now() - lastVerifiedAt >= verifyIntervalMs &&
  !/^disaster recovery/.test(reason);

/** The newest stored backup of this incarnation, as its destination holds it now (undefined: none, or unlisted). */
async function newestStored(uid: string | undefined): Promise<BackupRecord | undefined> {
  const all = await listed().catch(() => [] as BackupRecord[]);
  return all.find((r) => !uid || r.cluster?.uid === uid);
}

/** Keys of the snapshot read at its revision from the member it came from; none when that cannot be proven. */
async function sampleOf(url: string, taken: SnapshotStatus | undefined, salt: string): Promise<KeySample | undefined> {
  // etcdutl's revision is the newest key revision in the file; 0 (no key) would read the live keyspace instead.
  if (!taken || taken.revision <= 0) return undefined;
  const t0 = Date.now();
  try {
    const sample = await asked(url, !!credentials, (c) => takeSample(c, taken.revision, salt));
    log.info(
      { name: salt, keys: sample.keys, sampled: sample.entries.length, ms: Date.now() - t0 },
      'key sample taken',
    );
    return sample;
  } catch (e) {
    log.warn({ name: salt, err: (e as Error).message }, 'no key sample (the backup is stored without one)');
    return undefined;
  }
}

async function backupNow(endpoints: string[], reason: string, who: URLSearchParams): Promise<BackupRecord> {
  if (!endpoints.length) throw new Error('no endpoints');
  let best: { url: string; revision: number; version: string; clusterId: string } | undefined;
  for (const url of endpoints) {
    try {
      const s = await asked(url, !!credentials, (c) => c.maintenance.status());
      const revision = Number(s.header.revision);
      if (!best || revision > best.revision)
        best = { url, revision, version: s.version, clusterId: s.header.cluster_id };
    } catch (e) {
      log.warn({ url, err: (e as Error).message }, 'member did not answer');
    }
  }
  if (!best) throw new Error(`no member answered among ${endpoints.join(', ')}`);
  mkdirSync(dir, { recursive: true });
  const time = new Date().toISOString();
  const name = `etcd-snapshot-rev${best.revision}-${time.replace(/[:.]/g, '')}.db`;
  const tmp = join(dir, `.${name}.partial`);
  try {
    // As root when auth is on: etcd 3.6 lets only root take a snapshot.
    await asked(best.url, !!credentials, async (c) => {
      const toBytes = new Transform({
        writableObjectMode: true,
        transform(msg: { blob: Buffer }, _e, cb) {
          cb(null, msg.blob);
        },
      });
      await pipeline(await snapshotStream(c), toBytes, createWriteStream(tmp));
    });
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`snapshot from ${best.url} failed: ${(e as Error).message}`, { cause: e });
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
  const sample = await sampleOf(best.url, taken, name);
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
    ...(sample ? { sample } : {}),
  };
  // When due, the newest backup already stored is restored and compared, as it is at rest (a tampered or rotted one
  // is caught); with none stored yet, the one stored now.
  let verification: BackupVerification | undefined;
  const due = verifyDue(taken, reason);
  if (due) {
    lastVerifiedAt = Date.now();
    const prior = await newestStored(cluster.uid);
    if (prior) verification = await verifyStored(prior);
  }
  const settle = async (stored: BackupRecord) => {
    await prune(cluster.uid).catch((e) => log.warn({ err: (e as Error).message }, 'retention failed'));
    if (due && !verification) verification = await verifyStored(stored);
    return verification ? { ...stored, verification } : stored;
  };
  try {
    if (s3) {
      const folder = S3Destination.clusterDir(cluster.namespace ?? self.namespace, cluster.name ?? self.name);
      let stored: BackupRecord;
      try {
        stored = await s3.put(tmp, `${folder}/${name}.gz`, rec);
      } catch (e) {
        throw new DestinationError(`upload to ${s3.describe()} failed: ${s3Reason(e)}`, { cause: e });
      }
      log.info(
        { name: stored.name, revision: best.revision, size, compressedSize: stored.compressedSize, reason },
        `snapshot uploaded to ${s3.describe()}`,
      );
      return await settle(stored);
    }
    const stored = await claim.put(tmp, rec);
    log.info(
      { name: stored.name, revision: best.revision, size, compressedSize: stored.compressedSize, reason },
      'snapshot saved',
    );
    return await settle(stored);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** Backups of this cluster's folder (S3) or claim, newest first. */
async function listed(folder?: string): Promise<BackupRecord[]> {
  return s3 ? s3.list(folder ?? S3Destination.clusterDir(self.namespace, self.name)) : claim.list();
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
  else claim.remove(old.map((r) => r.name));
  for (const r of old) {
    log.info({ name: r.name, revision: r.revision, time: r.time }, 'snapshot pruned (retention)');
  }
}

const send = (res: ServerResponse, code: number, body: unknown) =>
  res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));

createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname === '/healthz') return send(res, 200, { ok: true, dir, destination: s3?.describe() ?? dir });
  // Everything else (listings, downloads: full snapshots of the cluster's data) is the controller's: its token.
  if (!authorized(req.headers.authorization)) return send(res, 401, { error: 'unauthorized' });
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
    // The snapshot itself (decompressed when stored gzip, as since issue 19; older files as they are).
    claim.list().then(
      (l) => {
        const rec = l.find((r) => r.name === m[1]);
        if (!rec) return send(res, 404, { error: `no backup ${m[1]}` });
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': rec.size,
          'x-etcd-revision': rec.revision,
          'x-sha256': rec.sha256,
        });
        pipeline(claim.open(rec), res).catch((e) =>
          log.warn({ name: m[1], err: (e as Error).message }, 'download failed'),
        );
      },
      (e) => send(res, 500, { error: (e as Error).message }),
    );
    return;
  }
  send(res, 404, { error: 'not found' });
}).listen(port, '0.0.0.0', () =>
  log.info({ port, dir, maxSnapshot, maxAgeSeconds, destination: s3?.describe() ?? dir }, 'backup tool listening'),
);
