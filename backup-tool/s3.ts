// The S3-compatible destination of the backup tool (issue 19). Layout, per cluster:
//   <prefix>/<namespace>/<cluster>/<snapshot>.db.gz        the snapshot, gzip-compressed
//   <prefix>/<namespace>/<cluster>/<snapshot>.db.gz.json   its manifest: the BackupRecord (identity included)
// The identity is also object metadata (x-amz-meta-cluster-uid, -etcd-cluster-id, -revision). A snapshot is
// listed only once its manifest exists, and the manifest is written after the upload was read back and checked.
// Streams only: etcd → staging file → gzip → multipart upload (parts of 8 MiB, 2 in flight), and
// object → gunzip → HTTP response; nothing holds a whole snapshot in memory. Credentials come from the
// environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, from the Secret) and are never logged.
import { createReadStream } from 'node:fs';
import { Agent } from 'node:https';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { BackupRecord } from '../workflows/types.js';
import { hashing } from './hashing.js';
import { gzipDigests } from './claim.js';

export interface S3Config {
  endpoint?: string;
  bucket: string;
  prefix: string;
  region: string;
  forcePathStyle: boolean;
  /** PEM of the CA that signs the endpoint's certificate (optional). */
  ca?: string;
}

/** From the tool's environment; undefined when no bucket is set (the claim is the destination). */
export function s3ConfigFromEnv(env: NodeJS.ProcessEnv): S3Config | undefined {
  if (!env.S3_BUCKET) return undefined;
  return {
    endpoint: env.S3_ENDPOINT || undefined,
    bucket: env.S3_BUCKET,
    prefix: (env.S3_PREFIX ?? '').replace(/^\/+|\/+$/g, ''),
    region: env.S3_REGION || 'us-east-1',
    forcePathStyle: env.S3_FORCE_PATH_STYLE !== 'false',
    ca: env.S3_CA || undefined,
  };
}

export class S3Destination {
  private readonly c: S3Client;

  constructor(readonly cfg: S3Config) {
    this.c = new S3Client({
      endpoint: cfg.endpoint,
      region: cfg.region,
      forcePathStyle: cfg.forcePathStyle,
      // Bounded: an endpoint that drops packets fails the upload in seconds (the SDK retries each request 3 times).
      requestHandler: {
        connectionTimeout: 5000,
        socketTimeout: 60000,
        ...(cfg.ca ? { httpsAgent: new Agent({ ca: cfg.ca }) } : {}),
      },
    });
  }

  /** Where it points, for logs and records: never the credentials. */
  describe(): string {
    return `s3://${this.cfg.bucket}/${this.cfg.prefix}`;
  }

  private key(name: string): string {
    return this.cfg.prefix ? `${this.cfg.prefix}/${name}` : name;
  }

  /** The folder (relative to the prefix) of one cluster's backups. */
  static clusterDir(namespace: string, cluster: string): string {
    return `${namespace}/${cluster}`;
  }

  /**
   * Uploads a verified snapshot file gzip-compressed, reads it back (sha256 of the object and of its
   * decompressed content), then writes the manifest. Returns the record as stored.
   */
  async put(file: string, name: string, rec: BackupRecord): Promise<BackupRecord> {
    const key = this.key(name);
    const compressed = hashing();
    const body = new PassThrough();
    const id = rec.cluster ?? {};
    const upload = new Upload({
      client: this.c,
      partSize: 8 * 2 ** 20,
      queueSize: 2,
      params: {
        Bucket: this.cfg.bucket,
        Key: key,
        Body: body,
        ContentType: 'application/gzip',
        Metadata: Object.fromEntries(
          Object.entries({
            'cluster-namespace': id.namespace,
            'cluster-name': id.name,
            'cluster-uid': id.uid,
            'etcd-cluster-id': id.etcdClusterId,
            revision: String(rec.revision),
            sha256: rec.sha256,
          }).filter((e): e is [string, string] => !!e[1]),
        ),
      },
    });
    try {
      await Promise.all([pipeline(createReadStream(file), createGzip(), compressed, body), upload.done()]);
    } catch (e) {
      body.destroy();
      await upload.abort().catch(() => undefined);
      throw e;
    }
    const stored: BackupRecord = {
      ...rec,
      name,
      compression: 'gzip',
      compressedSize: compressed.bytes,
      compressedSha256: compressed.digest(),
      location: `s3://${this.cfg.bucket}/${key}`,
    };
    const back = await this.check(name);
    if (back.compressedSha256 !== stored.compressedSha256 || back.sha256 !== rec.sha256)
      throw new Error(`read-back of ${stored.location} differs from what was uploaded`);
    await this.c.send(
      new PutObjectCommand({
        Bucket: this.cfg.bucket,
        Key: `${key}.json`,
        Body: JSON.stringify(stored),
        ContentType: 'application/json',
      }),
    );
    return stored;
  }

  /** Reads an object back: sha256 of the stored bytes and of the decompressed snapshot. */
  async check(name: string): Promise<{ compressedSha256: string; sha256: string }> {
    return gzipDigests(await this.body(name));
  }

  private async body(name: string): Promise<Readable> {
    const res = await this.c.send(new GetObjectCommand({ Bucket: this.cfg.bucket, Key: this.key(name) }));
    return res.Body as Readable;
  }

  /** The decompressed snapshot, streamed. */
  async download(name: string): Promise<Readable> {
    const gunzip = createGunzip();
    const body = await this.body(name);
    body.on('error', (e) => gunzip.destroy(e));
    return body.pipe(gunzip);
  }

  /** Every manifest under <dir>/ (names relative to the prefix), newest first; valid while the object is whole. */
  async list(dir: string): Promise<BackupRecord[]> {
    const sizes = new Map<string, number>();
    const manifests: string[] = [];
    const base = this.key(dir) + '/';
    let token: string | undefined;
    do {
      const page = await this.c.send(
        new ListObjectsV2Command({ Bucket: this.cfg.bucket, Prefix: base, ContinuationToken: token }),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key!.endsWith('.json')) manifests.push(o.Key!);
        else sizes.set(o.Key!, o.Size ?? -1);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    const out: BackupRecord[] = [];
    for (const m of manifests) {
      try {
        const res = await this.c.send(new GetObjectCommand({ Bucket: this.cfg.bucket, Key: m }));
        const rec = JSON.parse(await res.Body!.transformToString()) as BackupRecord;
        const size = sizes.get(m.slice(0, -'.json'.length));
        const problem =
          size === undefined
            ? 'snapshot object missing'
            : size !== rec.compressedSize
              ? `object size ${size} differs from the manifest's ${rec.compressedSize}`
              : undefined;
        out.push({ ...rec, valid: !problem, problem });
      } catch {
        /* an unreadable manifest is never listed */
      }
    }
    return out.sort((a, b) => b.revision - a.revision || Date.parse(b.time) - Date.parse(a.time));
  }

  /** Deletes snapshots and their manifests. */
  async remove(names: string[]): Promise<void> {
    if (!names.length) return;
    await this.c.send(
      new DeleteObjectsCommand({
        Bucket: this.cfg.bucket,
        Delete: { Objects: names.flatMap((n) => [{ Key: this.key(n) }, { Key: `${this.key(n)}.json` }]) },
      }),
    );
  }
}
