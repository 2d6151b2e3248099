// The claim destination of the backup tool (pvc-<cluster>, the default): <name>.db.gz (gzip, since issue 19) or
// <name>.db (written before), each with its record <file>.json, listed only once complete. Downloads are always the
// snapshot itself (decompressed), so restores read old and new files alike. Streams only.
import {
  closeSync,
  createReadStream,
  createWriteStream,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { createHash } from 'node:crypto';
import type { BackupRecord } from '../workflows/types.js';
import { hashing } from './hashing.js';

/** Reads a file in 1 MiB chunks: sha256 of all of it, sha256 of all but its last 32 bytes, those bytes, its head. */
export function digestFile(file: string): {
  sha256: string;
  bodySha256: Buffer;
  tail: Buffer;
  head: Buffer;
  size: number;
} {
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

/** sha256 of a stream as stored and of its gunzipped content (read once). */
export async function gzipDigests(stored: Readable): Promise<{ compressedSha256: string; sha256: string }> {
  const outer = hashing();
  const plain = hashing();
  await pipeline(stored, outer, createGunzip(), plain, new Writable({ write: (_c, _e, cb) => cb() }));
  return { compressedSha256: outer.digest(), sha256: plain.digest() };
}

export class ClaimDestination {
  constructor(readonly dir: string) {}

  /** Stores a checked snapshot file gzip-compressed, reads it back (both hashes), then writes its record. */
  async put(file: string, rec: BackupRecord): Promise<BackupRecord> {
    const name = `${rec.name}.gz`;
    const partial = join(this.dir, `.${name}.partial`);
    const compressed = hashing();
    let compressedSha256: string;
    try {
      await pipeline(createReadStream(file), createGzip(), compressed, createWriteStream(partial));
      compressedSha256 = compressed.digest();
      const back = await gzipDigests(createReadStream(partial));
      if (back.compressedSha256 !== compressedSha256 || back.sha256 !== rec.sha256)
        throw new Error(`read-back of ${name} differs from what was written`);
      renameSync(partial, join(this.dir, name));
    } finally {
      rmSync(partial, { force: true });
    }
    const stored: BackupRecord = {
      ...rec,
      name,
      compression: 'gzip',
      compressedSize: compressed.bytes,
      compressedSha256,
    };
    writeFileSync(join(this.dir, `.${name}.json.partial`), JSON.stringify(stored));
    renameSync(join(this.dir, `.${name}.json.partial`), join(this.dir, `${name}.json`)); // listed only once complete
    return stored;
  }

  /** Every backup with its record, newest first; `valid` re-checked from the bytes (old files: etcd's own hash). */
  async list(): Promise<BackupRecord[]> {
    if (!existsSync(this.dir)) return [];
    const out: BackupRecord[] = [];
    for (const f of readdirSync(this.dir).filter((x) => x.endsWith('.json'))) {
      try {
        const rec = JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as BackupRecord;
        const file = join(this.dir, rec.name);
        if (!existsSync(file)) continue;
        out.push({ ...rec, ...(await this.problem(rec, file)) });
      } catch {
        /* a half-written record is never listed */
      }
    }
    // Newest first by revision, then time: never by sorting names as text.
    return out.sort((a, b) => b.revision - a.revision || Date.parse(b.time) - Date.parse(a.time));
  }

  private async problem(rec: BackupRecord, file: string): Promise<{ valid: boolean; problem?: string }> {
    let problem: string | undefined;
    if (rec.compression === 'gzip') {
      const size = statSync(file).size;
      if (size !== rec.compressedSize) problem = `size ${size} differs from the record's ${rec.compressedSize}`;
      else {
        const h = hashing();
        await pipeline(createReadStream(file), h, new Writable({ write: (_c, _e, cb) => cb() }));
        if (h.digest() !== rec.compressedSha256) problem = 'sha256 differs from the record (corrupted file)';
      }
    } else {
      problem = statSync(file).size !== rec.size ? 'size changed since it was written' : verifySnapshot(file);
    }
    return { valid: !problem, problem };
  }

  /** The snapshot itself, streamed (decompressed when stored compressed). */
  open(rec: BackupRecord): Readable {
    const raw = createReadStream(join(this.dir, rec.name));
    if (rec.compression !== 'gzip') return raw;
    const gunzip = createGunzip();
    raw.on('error', (e) => gunzip.destroy(e));
    return raw.pipe(gunzip);
  }

  /** Deletes backups and their records. */
  remove(names: string[]): void {
    for (const n of names) {
      rmSync(join(this.dir, n), { force: true });
      rmSync(join(this.dir, `${n}.json`), { force: true });
    }
  }
}
