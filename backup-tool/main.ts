// The backup tool (image kube-etcd-controller/backup-tool, one per cluster with spec.backup): takes
// snapshots from the member with the highest revision, keeps them on its claim, serves them on 19999.
//   POST /v1/backupnow?endpoints=URL,URL[&reason=...][&namespace=&cluster=&uid=]  take a snapshot now (returns its
//        record; the record names the cluster, with the etcd cluster ID the member reported)
//   GET  /v1/backups                                   list (newest first): name, revision, size, sha256, version, time, valid
//   GET  /v1/backups/<name>                            download
//   GET  /healthz
// Env: BACKUP_DIR (default /var/etcd-backup), PORT (19999), MAX_SNAPSHOT (keep the newest N; 0 = all).
import { createHash } from 'node:crypto';
import {
  createReadStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import { Etcd3 } from 'etcd3';
import { noop } from 'cockatiel';
import { pino } from 'pino';
import { identityFrom } from '../activities/backup-identity.js';
import type { BackupIdentity, BackupRecord } from '../workflows/types.js';

const dir = process.env.BACKUP_DIR ?? '/var/etcd-backup';
const port = Number(process.env.PORT ?? 19999);
const maxSnapshot = Number(process.env.MAX_SNAPSHOT ?? 0);
const log = pino({ name: 'backup-tool' });

const client = (url: string) =>
  new Etcd3({ hosts: [url], dialTimeout: 3000, faultHandling: { global: noop, host: () => noop } });

/** etcd appends the SHA-256 of the database as the last 32 bytes: a torn or altered file fails this. */
export function verifySnapshot(file: string): string | undefined {
  const buf = readFileSync(file);
  if (buf.length < 32 + 4096) return `file too small (${buf.length} bytes)`;
  const body = buf.subarray(0, buf.length - 32);
  if (
    !createHash('sha256')
      .update(body)
      .digest()
      .equals(buf.subarray(buf.length - 32))
  )
    return 'integrity hash mismatch (corrupted snapshot)';
  if (body.readUInt32LE(16) !== 0xed0cdaed) return 'not a bbolt database'; // meta page magic after the 16-byte page header
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
  renameSync(tmp, join(dir, name));
  const size = statSync(join(dir, name)).size;
  const sha256 = createHash('sha256')
    .update(readFileSync(join(dir, name)))
    .digest('hex');
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
  writeFileSync(join(dir, `.${name}.json.partial`), JSON.stringify(rec));
  renameSync(join(dir, `.${name}.json.partial`), join(dir, `${name}.json`)); // listed only once complete
  log.info({ name, revision: best.revision, size, member: best.url, reason }, 'snapshot saved');
  prune();
  return rec;
}

/** A snapshot taken for a disaster recovery is what the new seed's init container downloads: kept out of the count
 *  for an hour, so scheduled backups taken meanwhile (every few seconds in tests) never prune it mid-restore. */
const inUseForRecoveryMs = 60 * 60 * 1000;
const inUseForRecovery = (b: BackupRecord) =>
  /^disaster recovery/.test(b.reason ?? '') && Date.now() - Date.parse(b.time) < inUseForRecoveryMs;

function prune(): void {
  if (maxSnapshot <= 0) return;
  for (const old of list()
    .filter((b) => !inUseForRecovery(b))
    .slice(maxSnapshot)) {
    rmSync(join(dir, old.name), { force: true });
    rmSync(join(dir, `${old.name}.json`), { force: true });
    log.info({ name: old.name, revision: old.revision }, 'snapshot pruned (retention)');
  }
}

const send = (res: ServerResponse, code: number, body: unknown) =>
  res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));

createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname === '/healthz') return send(res, 200, { ok: true, dir });
  if (url.pathname === '/v1/backups' && req.method === 'GET') return send(res, 200, list());
  if (url.pathname === '/v1/backupnow' && req.method === 'POST') {
    const endpoints = (url.searchParams.get('endpoints') ?? '').split(',').filter(Boolean);
    backupNow(endpoints, url.searchParams.get('reason') ?? 'on demand', url.searchParams).then(
      (r) => send(res, 200, r),
      (e) => send(res, 500, { error: (e as Error).message }),
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
}).listen(port, '0.0.0.0', () => log.info({ port, dir, maxSnapshot }, 'backup tool listening'));
