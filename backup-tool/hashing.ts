// A pass-through stream that counts and hashes what flows through it (sha256): the backup tool's uploads and
// downloads, and the dev stack's image layers.
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';

export function hashing(): Transform & { digest: () => string; bytes: number } {
  const h = createHash('sha256');
  const t = new Transform({
    transform(c: Buffer, _e, cb) {
      h.update(c);
      t.bytes += c.length;
      cb(null, c);
    },
  }) as Transform & { digest: () => string; bytes: number };
  t.bytes = 0;
  t.digest = () => h.digest('hex');
  return t;
}
