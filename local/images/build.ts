// Builds every image real nodes need into the toolchain cache (tools/images/*.tar), printing what it made.
//   npx tsx local/images/build.ts
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { catalog, imagesDir } from './catalog.js';
import { buildOciArchive } from './oci.js';

export const archiveOf = (name: string) => join(imagesDir, `${name.replace(/[/:]/g, '_')}.tar`);

async function main(): Promise<void> {
  mkdirSync(imagesDir, { recursive: true });
  for (const spec of catalog()) {
    const t0 = Date.now();
    const img = await buildOciArchive(spec, archiveOf(spec.name));
    console.log(`${img.name}\t${img.manifestDigest.slice(0, 19)}\tlayer ${(img.layerBytes / 2 ** 20).toFixed(1)} MiB\t${Date.now() - t0} ms\t${img.file}`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
