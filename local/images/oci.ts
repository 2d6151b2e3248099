// OCI image archives built from local files, without a registry or a daemon: one layer, reproducible
// (mtime 0, sorted entries), in the OCI image layout that `ctr images import` and containerd's CRI read.
// The name rides in index.json's annotations, so manifests keep their real image names.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { pack, type Pack } from 'tar-stream';
import { hashing } from '../../backup-tool/hashing.js';

export interface ImageSpec {
  /** Full reference, e.g. quay.io/coreos/etcd:v3.5.33. */
  name: string;
  /** Host files copied into the image (`path` inside it, without leading slash). */
  files?: { src: string; path: string; mode?: number }[];
  /** Symbolic links inside the image: path → target. */
  links?: { path: string; target: string }[];
  /** Empty directories (e.g. var/etcd, tmp; tmp gets 1777). */
  dirs?: string[];
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  user?: string;
  workdir?: string;
  /** The image this one is a layer over (a Dockerfile stage FROM another): its layers come first, its files are not
   *  repeated here. Two images over one parent object share that layer's blob (written once per LayerCache). */
  parent?: ImageSpec;
}

interface Layer {
  digest: string;
  size: number;
  diffId: string;
  file: string;
}

/** Layers already written, by spec: images built with one cache write a shared parent's layer once. */
export class LayerCache {
  readonly dir = mkdtempSync(join(tmpdir(), 'kec-oci-'));
  private readonly layers = new Map<ImageSpec, Promise<Layer>>();
  layer(spec: ImageSpec): Promise<Layer> {
    let l = this.layers.get(spec);
    if (!l) this.layers.set(spec, (l = writeLayer(spec, mkdtempSync(join(this.dir, 'layer-')))));
    return l;
  }
  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface BuiltImage {
  name: string;
  manifestDigest: string;
  layerBytes: number;
  file: string;
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

async function addEntry(p: Pack, header: Parameters<Pack['entry']>[0], body?: string): Promise<void> {
  if (body === undefined) {
    await new Promise<void>((res, rej) => p.entry(header, (e) => (e ? rej(e) : res())));
    return;
  }
  await new Promise<void>((res, rej) => {
    const entry = p.entry(header, (e) => (e ? rej(e) : res()));
    createReadStream(body).on('error', rej).pipe(entry);
  });
}

/** Writes the layer (tar.gz) into dir; returns its digest, size and the uncompressed diff ID. */
async function writeLayer(spec: ImageSpec, dir: string): Promise<Layer> {
  const tar = pack();
  const raw = hashing();
  const gz = hashing();
  const file = join(dir, 'layer.tar.gz');
  const done = pipeline(tar, raw, createGzip({ level: 6 }), gz, createWriteStream(file));
  const dirs = new Set<string>();
  const parents = (path: string) =>
    path
      .split('/')
      .slice(0, -1)
      .map((_, i, a) => a.slice(0, i + 1).join('/'));
  for (const path of [
    ...(spec.dirs ?? []).map((d) => `${d.replace(/^\/+|\/+$/g, '')}/x`),
    ...(spec.files ?? []).map((f) => f.path),
    ...(spec.links ?? []).map((l) => l.path),
  ]) {
    for (const d of parents(path.replace(/^\/+/, ''))) dirs.add(d);
  }
  const at = new Date(0);
  for (const d of [...dirs].sort())
    await addEntry(tar, { name: `${d}/`, type: 'directory', mode: d === 'tmp' ? 0o1777 : 0o755, mtime: at });
  for (const f of [...(spec.files ?? [])].sort((a, b) => a.path.localeCompare(b.path))) {
    const st = statSync(f.src);
    await addEntry(
      tar,
      { name: f.path.replace(/^\/+/, ''), size: st.size, mode: f.mode ?? st.mode & 0o7777, mtime: at },
      f.src,
    );
  }
  for (const l of [...(spec.links ?? [])].sort((a, b) => a.path.localeCompare(b.path))) {
    await addEntry(tar, {
      name: l.path.replace(/^\/+/, ''),
      type: 'symlink',
      linkname: l.target,
      mode: 0o777,
      mtime: at,
    });
  }
  tar.finalize();
  await done;
  return { digest: gz.digest(), size: gz.bytes, diffId: raw.digest(), file };
}

/** Builds `spec` into an OCI-layout tar at `out` (what `ctr -n k8s.io images import` takes). */
export async function buildOciArchive(spec: ImageSpec, out: string, cache?: LayerCache): Promise<BuiltImage> {
  const own = cache ? undefined : new LayerCache();
  try {
    const chain: ImageSpec[] = [];
    for (let s: ImageSpec | undefined = spec; s; s = s.parent) chain.unshift(s);
    const empty = (s: ImageSpec) => !s.files?.length && !s.links?.length && !s.dirs?.length;
    const layers = await Promise.all(chain.filter((s) => !empty(s)).map((s) => (cache ?? own!).layer(s)));
    const config = {
      architecture: 'amd64',
      os: 'linux',
      created: '1970-01-01T00:00:00Z',
      config: {
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...(spec.env ?? [])],
        ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
        ...(spec.cmd ? { Cmd: spec.cmd } : {}),
        ...(spec.user ? { User: spec.user } : {}),
        ...(spec.workdir ? { WorkingDir: spec.workdir } : {}),
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => `sha256:${l.diffId}`) },
      history: [{ created: '1970-01-01T00:00:00Z', created_by: 'kube-etcd-controller local/images' }],
    };
    const configJson = JSON.stringify(config);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: `sha256:${sha256(configJson)}`,
        size: Buffer.byteLength(configJson),
      },
      layers: layers.map((l) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: `sha256:${l.digest}`,
        size: l.size,
      })),
    });
    const last = spec.name.split('/').pop()!;
    const tag = last.includes(':') ? last.slice(last.indexOf(':') + 1) : 'latest';
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: `sha256:${sha256(manifest)}`,
          size: Buffer.byteLength(manifest),
          platform: { architecture: 'amd64', os: 'linux' },
          annotations: { 'io.containerd.image.name': spec.name, 'org.opencontainers.image.ref.name': tag },
        },
      ],
    });
    const outer = pack();
    // Written beside `out` and renamed over it when complete: a stack starting meanwhile (its nodes import every
    // *.tar here) sees the old archive or the new one, never a half-written one.
    const partial = `${out}.${process.pid}.partial`; // two builders at once never share one
    const written = pipeline(outer, new PassThrough(), createWriteStream(partial));
    const at = new Date(0);
    const text = async (name: string, body: string) => {
      await new Promise<void>((res, rej) =>
        outer.entry({ name, mode: 0o644, mtime: at }, body, (e) => (e ? rej(e) : res())),
      );
    };
    await text('oci-layout', '{"imageLayoutVersion":"1.0.0"}');
    await text('index.json', index);
    await text(`blobs/sha256/${sha256(configJson)}`, configJson);
    await text(`blobs/sha256/${sha256(manifest)}`, manifest);
    for (const l of layers)
      await addEntry(outer, { name: `blobs/sha256/${l.digest}`, size: l.size, mode: 0o644, mtime: at }, l.file);
    outer.finalize();
    await written;
    renameSync(partial, out);
    const layerBytes = layers.reduce((n, l) => n + l.size, 0);
    return { name: spec.name, manifestDigest: `sha256:${sha256(manifest)}`, layerBytes, file: out };
  } finally {
    own?.dispose();
  }
}
