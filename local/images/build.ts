// Builds every image real nodes need into the toolchain cache (tools/images/*.tar), printing what it made.
//   npx tsx local/images/build.ts                          every image, rebuilt
//   npx tsx local/images/build.ts controller backup-tool   those project images, rebuilt
//   npx tsx local/images/build.ts --stale                  (install.sh) catalog images not built yet, project images
//                                                          whose inputs changed since their archive was built
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { dockerfileEntrypoints, repoRoot } from '../toolchain.js';
import { catalog, imagesDir } from './catalog.js';
import { baseIdentity, buildDockerfileTargets, hashTree, parseDockerfile } from './dockerfile.js';
import { buildOciArchive, LayerCache, type BuiltImage, type ImageSpec } from './oci.js';

export const archiveOf = (name: string) => join(imagesDir, `${name.replace(/[/:]/g, '_')}.tar`);
export const projectImageName = (target: string) => `kube-etcd-controller/${target}:dev`;
const dockerfilePath = join(repoRoot, 'deploy', 'Dockerfile');
/** Beside each project archive: the digest of the inputs it was built from. */
const inputsFile = (target: string) => `${archiveOf(projectImageName(target))}.inputs`;

/**
 * The digest of everything a project image is made of: deploy/Dockerfile, every file it COPYs from the repo
 * (sources, package.json, package-lock.json, tsconfigs, crd.yaml: read from the Dockerfile, so a new COPY counts
 * at once), the local stand-in base (node: path, size, mtime) and this builder's code.
 */
export function projectImageInputs(): string {
  const dockerfile = readFileSync(dockerfilePath, 'utf8');
  const stages = parseDockerfile(dockerfile);
  const h = createHash('sha256').update(dockerfile);
  const copied = stages.flatMap((s) => s.steps.flatMap((st) => (st.kind === 'COPY' && !st.from ? st.srcs : [])));
  const builder = ['dockerfile.ts', 'oci.ts', 'catalog.ts'].map((f) => join('local', 'images', f));
  for (const rel of [...new Set([...copied, ...builder])].sort()) hashTree(h, repoRoot, rel);
  for (const ref of new Set(stages.map((s) => s.base)))
    if (!stages.some((s) => s.name === ref)) h.update(baseIdentity(ref));
  return h.digest('hex');
}

/** The project targets whose archive is missing or was built from other inputs than `inputs`. */
export function staleProjectImages(inputs = projectImageInputs()): string[] {
  return Object.keys(dockerfileEntrypoints()).filter(
    (t) =>
      !existsSync(archiveOf(projectImageName(t))) ||
      !existsSync(inputsFile(t)) ||
      readFileSync(inputsFile(t), 'utf8').trim() !== inputs,
  );
}

/** Builds the given targets of deploy/Dockerfile in one pass (one npm ci, one npm run build), recording their inputs. */
export async function buildProjectImages(
  targets: string[],
  log: (line: string) => void = console.log,
): Promise<BuiltImage[]> {
  if (!targets.length) return [];
  mkdirSync(imagesDir, { recursive: true });
  const inputs = projectImageInputs();
  const t0 = Date.now();
  const { specs, cleanup } = buildDockerfileTargets(
    readFileSync(dockerfilePath, 'utf8'),
    repoRoot,
    Object.fromEntries(targets.map((t) => [t, projectImageName(t)])),
    { log, cacheDir: join(imagesDir, 'steps') },
  );
  const layers = new LayerCache(); // the targets' shared runtime layer is compressed once
  try {
    log(`stages run ${Date.now() - t0} ms`);
    const built: BuiltImage[] = [];
    for (const t of targets) {
      const t1 = Date.now();
      built.push(await buildOciArchive(specs[t], archiveOf(projectImageName(t)), layers));
      writeFileSync(inputsFile(t), `${inputs}\n`); // after the archive: a crash between leaves it stale, not wrongly fresh
      log(describe(built.at(-1)!, t1));
    }
    return built;
  } finally {
    layers.dispose();
    cleanup();
  }
}

/**
 * The one rule for project images: an archive is used only when built from the current inputs; a missing or
 * stale one is rebuilt here (real nodes call this before importing, install.sh through --stale).
 */
export async function ensureProjectImages(log: (line: string) => void = console.log): Promise<void> {
  const stale = staleProjectImages();
  if (!stale.length) return;
  log(`project images ${stale.join(', ')}: missing or built from other sources, building (about a minute)`);
  try {
    await buildProjectImages(stale, log);
  } catch (e) {
    throw new Error(`building the project images (${stale.join(', ')}) from deploy/Dockerfile failed: ${String(e)}`, {
      cause: e,
    });
  }
}

const describe = (img: BuiltImage, t0: number) =>
  `${img.name}\t${img.manifestDigest.slice(0, 19)}\tlayer ${(img.layerBytes / 2 ** 20).toFixed(1)} MiB\t${Date.now() - t0} ms\t` +
  `load ${loadavg()[0].toFixed(1)}\t${img.file}`;

async function main(): Promise<void> {
  mkdirSync(imagesDir, { recursive: true });
  const staleOnly = process.argv.includes('--stale');
  const only = process.argv.slice(2).filter((a) => a !== '--stale');
  const specs: ImageSpec[] = only.length ? [] : catalog();
  for (const spec of specs) {
    if (staleOnly && existsSync(archiveOf(spec.name))) continue;
    const t0 = Date.now();
    console.log(describe(await buildOciArchive(spec, archiveOf(spec.name)), t0));
  }
  const targets = Object.keys(dockerfileEntrypoints()).filter((t) => !only.length || only.includes(t));
  const t0 = Date.now();
  await buildProjectImages(staleOnly ? staleProjectImages() : targets);
  console.log(`project images: ${Date.now() - t0} ms (load ${loadavg()[0].toFixed(1)})`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
