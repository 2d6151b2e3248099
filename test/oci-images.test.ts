// The images real nodes import are built here from the toolchain's binaries: a valid OCI layout whose
// digests match their content, named in index.json, with the etcd binaries (and 3.4's libraries) in place.
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { extract } from 'tar-stream';
import { etcdImage, pauseImageSpec } from '../local/images/catalog.js';
import { parseDockerfile } from '../local/images/dockerfile.js';
import { buildOciArchive, LayerCache, type ImageSpec } from '../local/images/oci.js';
import { pins } from '../local/toolchain.js';

async function entries(
  data: Buffer | string,
): Promise<Map<string, { body: Buffer; mode?: number; type?: string; linkname?: string | null }>> {
  const out = new Map<string, { body: Buffer; mode?: number; type?: string; linkname?: string | null }>();
  const ex = extract();
  ex.on('entry', (h, stream, next) => {
    const parts: Buffer[] = [];
    stream.on('data', (c) => parts.push(c as Buffer));
    stream.on('end', () => {
      out.set(h.name, { body: Buffer.concat(parts), mode: h.mode, type: h.type, linkname: h.linkname });
      next();
    });
  });
  const done = new Promise<void>((res, rej) => {
    ex.on('finish', res);
    ex.on('error', rej);
  });
  if (typeof data === 'string') createReadStream(data).pipe(ex);
  else ex.end(data);
  await done;
  return out;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kec-oci-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test.each([pins.ETCD35_VERSION, pins.ETCD34_VERSION])(
  'etcd %s: OCI layout, digests match, named, binaries (and libraries) in the layer',
  async (version) => {
    const spec = etcdImage(version);
    const img = await buildOciArchive(spec, join(dir, `etcd-${version}.tar`));
    const files = await entries(img.file);
    expect(JSON.parse(files.get('oci-layout')!.body.toString())).toEqual({ imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(files.get('index.json')!.body.toString());
    expect(index.manifests[0].annotations['io.containerd.image.name']).toBe(`quay.io/coreos/etcd:v${version}`);
    const blob = (digest: string) => files.get(`blobs/sha256/${digest.replace('sha256:', '')}`)!.body;
    const manifestBody = blob(index.manifests[0].digest);
    expect(`sha256:${sha(manifestBody)}`).toBe(img.manifestDigest);
    const manifest = JSON.parse(manifestBody.toString());
    const config = JSON.parse(blob(manifest.config.digest).toString());
    const layerGz = blob(manifest.layers[0].digest);
    expect(`sha256:${sha(layerGz)}`).toBe(manifest.layers[0].digest);
    const layerTar = gunzipSync(layerGz);
    expect(config.rootfs.diff_ids).toEqual([`sha256:${sha(layerTar)}`]);
    const layer = await entries(layerTar);
    expect(layer.get('usr/local/bin/etcd')?.mode).toBe(0o755);
    expect(layer.get('tmp/')?.mode).toBe(0o1777);
    // 3.4 is Debian's dynamic build: its loader and libc travel with it; 3.5+ are static.
    expect(layer.has('lib64/ld-linux-x86-64.so.2')).toBe(version === pins.ETCD34_VERSION);
  },
);

test('a second build of the same image is byte-identical (reproducible layers)', async () => {
  const a = await buildOciArchive(pauseImageSpec(), join(dir, 'pause-a.tar'));
  const b = await buildOciArchive(pauseImageSpec(), join(dir, 'pause-b.tar'));
  expect(a.manifestDigest).toBe(b.manifestDigest);
});

test('two images over one parent share its layer: same blob first in both, only the child adds a second', async () => {
  const parent: ImageSpec = { name: 'stage runtime', files: [{ src: pauseImageSpec().files![0].src, path: 'pause' }] };
  const layers = new LayerCache();
  try {
    const withTool = await buildOciArchive(
      { name: 'x/tool:dev', parent, files: [{ src: 'package.json', path: 'app/package.json' }], cmd: ['/pause'] },
      join(dir, 'tool.tar'),
      layers,
    );
    const bare = await buildOciArchive({ name: 'x/bare:dev', parent, cmd: ['/pause'] }, join(dir, 'bare.tar'), layers);
    const layersOf = async (file: string) => {
      const files = await entries(file);
      const blob = (d: string) => files.get(`blobs/sha256/${d.replace('sha256:', '')}`)!.body;
      const index = JSON.parse(files.get('index.json')!.body.toString());
      const manifest = JSON.parse(blob(index.manifests[0].digest).toString());
      const config = JSON.parse(blob(manifest.config.digest).toString());
      expect(config.rootfs.diff_ids).toHaveLength(manifest.layers.length);
      return (manifest.layers as { digest: string }[]).map((l) => l.digest);
    };
    const [toolLayers, bareLayers] = [await layersOf(withTool.file), await layersOf(bare.file)];
    expect(toolLayers).toHaveLength(2);
    expect(bareLayers).toEqual([toolLayers[0]]);
  } finally {
    layers.dispose();
  }
});

test("deploy/Dockerfile's stages parse into what the local builder runs", () => {
  const stages = parseDockerfile(readFileSync('deploy/Dockerfile', 'utf8'));
  expect(stages.map((s) => `${s.name}<${s.base}`)).toEqual([
    'etcd<gcr.io/etcd-development/etcd:v3.6.14',
    'build<node:20-bookworm-slim',
    'runtime<node:20-bookworm-slim',
    'backup-tool<runtime',
    'controller<runtime',
  ]);
  expect(stages[2].steps).toContainEqual({ kind: 'COPY', from: 'build', srcs: ['/app/dist'], dst: 'dist' });
  expect(stages[3].steps).toContainEqual({
    kind: 'COPY',
    from: 'etcd',
    srcs: ['/usr/local/bin/etcdutl'],
    dst: '/usr/local/bin/etcdutl',
  });
  expect(stages[4].steps).toContainEqual({ kind: 'ENTRYPOINT', argv: ['node', 'dist/controller/main.js'] });
  expect(() => parseDockerfile('FROM x\nHEALTHCHECK CMD true\n')).toThrow(
    /HEALTHCHECK is not supported by the local builder/,
  );
});
