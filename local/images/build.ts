// Builds every image real nodes need into the toolchain cache (tools/images/*.tar), printing what it made.
//   npx tsx local/images/build.ts
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dockerfileEntrypoints, repoRoot } from '../toolchain.js';
import { catalog, imagesDir } from './catalog.js';
import { buildDockerfileTarget } from './dockerfile.js';
import { buildOciArchive, type BuiltImage, type ImageSpec } from './oci.js';

export const archiveOf = (name: string) => join(imagesDir, `${name.replace(/[/:]/g, '_')}.tar`);

/** The project's images: every target of deploy/Dockerfile, as kube-etcd-controller/<target>:dev. */
export async function buildProjectImage(
  target: string,
  out = archiveOf(`kube-etcd-controller/${target}:dev`),
): Promise<BuiltImage> {
  const { spec, cleanup } = buildDockerfileTarget(
    readFileSync(join(repoRoot, 'deploy', 'Dockerfile'), 'utf8'),
    repoRoot,
    target,
    `kube-etcd-controller/${target}:dev`,
  );
  try {
    return await buildOciArchive(spec, out);
  } finally {
    cleanup();
  }
}

async function main(): Promise<void> {
  mkdirSync(imagesDir, { recursive: true });
  const print = (img: BuiltImage, t0: number) =>
    console.log(
      `${img.name}\t${img.manifestDigest.slice(0, 19)}\tlayer ${(img.layerBytes / 2 ** 20).toFixed(1)} MiB\t${Date.now() - t0} ms\t${img.file}`,
    );
  // --catalog (install.sh): only the catalog's images, and only those not built yet.
  const catalogOnly = process.argv.includes('--catalog');
  const only = process.argv.slice(2).filter((a) => a !== '--catalog');
  const specs: ImageSpec[] = only.length ? [] : catalog();
  for (const spec of specs) {
    if (catalogOnly && existsSync(archiveOf(spec.name))) continue;
    const t0 = Date.now();
    print(await buildOciArchive(spec, archiveOf(spec.name)), t0);
  }
  if (catalogOnly) return;
  for (const target of Object.keys(dockerfileEntrypoints()).filter((t) => !only.length || only.includes(t))) {
    const t0 = Date.now();
    print(await buildProjectImage(target), t0);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
