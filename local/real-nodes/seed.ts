// The images every node's containerd starts with: a "seed" containerd root per machine and set of image
// archives, built once (one throwaway containerd imports them) under the tool cache, and copied into each
// node's root. Content blobs and committed overlayfs snapshots are never written in place (a container writes
// to its own upper dir; removal only unlinks), so a node's copy hard-links them; the bolt databases
// (meta.db, the snapshotter's metadata.db) are written in place, so they are real copies.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { isAlive, sleep } from '../process.js';
import { toolsDir } from '../toolchain.js';

const run = promisify(execFile);

export const seedsDir = join(toolsDir, 'containerd-seeds');
/** Bump when what a seed holds changes without its archives or containerd changing (e.g. how it is built). */
const seedFormat = '1';
/** The folders of a containerd root whose files are immutable: content blobs and overlayfs snapshots. */
const immutableTrees = new Set(['blobs', 'snapshots']);

/**
 * A seed's name: its kind (which archives: with the project's images or without) and a digest of every archive's
 * name, size and mtime and of the containerd binary, so a rebuilt image or containerd makes a new seed.
 */
export function seedName(kind: string, archives: string[], containerd: string): string {
  const h = createHash('sha256').update(`${seedFormat}\n`);
  for (const f of [containerd, ...[...archives].sort()]) {
    const s = statSync(f);
    h.update(`${basename(f)} ${s.size} ${s.mtimeMs}\n`);
  }
  return `${kind}-${h.digest('hex').slice(0, 16)}`;
}

/**
 * Runs `use` with the root of the seed `name` in the folder `seeds`, building it first with `build(root)` when
 * missing. One stack at a time per machine (a lock file naming its holder's pid; a dead holder's lock is taken
 * over): builders never race, and no seed is removed while another stack copies it. A seed appears complete or not
 * at all (built in a `.building-<pid>` folder, renamed when done). Other seeds of the same kind (older archives)
 * are removed.
 */
export async function withSeed<T>(
  seeds: string,
  name: string,
  build: (root: string) => Promise<void>,
  use: (root: string, built: boolean) => Promise<T>,
  log: (msg: string) => void,
): Promise<T> {
  mkdirSync(seeds, { recursive: true });
  const release = await lock(seeds, log);
  try {
    const dir = join(seeds, name);
    for (const e of readdirSync(seeds)) {
      const building = /\.building-(\d+)$/.exec(e);
      const sameKindOlder = e !== name && e.startsWith(`${name.split('-')[0]}-`);
      if ((building && !isAlive(Number(building[1]))) || (!building && sameKindOlder)) {
        rmSync(join(seeds, e), { recursive: true, force: true });
        log(`containerd seed ${e} removed`);
      }
    }
    let built = false;
    if (!existsSync(dir)) {
      const tmp = `${dir}.building-${process.pid}`;
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(join(tmp, 'root'), { recursive: true });
      await build(join(tmp, 'root')).catch((e) => {
        rmSync(tmp, { recursive: true, force: true });
        throw e;
      });
      try {
        renameSync(tmp, dir);
        built = true;
      } catch (e) {
        // Another builder (one that took over the same dead holder's lock) finished first: its seed is as good.
        if (!existsSync(dir)) throw e;
        rmSync(tmp, { recursive: true, force: true });
      }
    }
    return await use(join(dir, 'root'), built);
  } finally {
    release();
  }
}

let inProcess = Promise.resolve();

/** The machine-wide seed lock (and one holder at a time within this process, which the pid cannot tell apart). */
async function lock(seeds: string, log: (msg: string) => void): Promise<() => void> {
  let releaseInProcess!: () => void;
  const mine = new Promise<void>((r) => (releaseInProcess = r));
  const previous = inProcess;
  inProcess = previous.then(() => mine);
  await previous;
  const file = join(seeds, 'seeds.lock');
  for (let waited = 0; ; waited += 200) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = lockHolder(file);
      if (holder === undefined) continue; // released meanwhile
      if (holder && !isAlive(holder)) {
        // A killed holder's lock. Two waiters taking it over at once may both build: each builds its own
        // folder and the rename keeps one.
        rmSync(file, { force: true });
        continue;
      }
      if (waited % 10000 === 0) log(`containerd seed: waiting for pid ${holder} (${waited / 1000} s)`);
      if (waited > 15 * 60000)
        throw new Error(`containerd seed lock ${file} held by pid ${holder} for 15 min`, { cause: e });
      await sleep(200);
    }
  }
  return () => {
    rmSync(file, { force: true });
    releaseInProcess();
  };
}

/** The pid in a lock file (0 while its holder has not written it yet), undefined when there is no lock file. */
function lockHolder(file: string): number | undefined {
  try {
    return Number(readFileSync(file, 'utf8').trim() || 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * Makes `root` (a node's containerd root, replaced if present) a copy of the seed: hard links (`cp -al`), then a
 * real copy of every file outside the immutable trees (the bolt databases, written in place), and no instance id
 * (each containerd makes its own).
 */
export async function rootFromSeed(seed: string, root: string): Promise<void> {
  rmSync(root, { recursive: true, force: true });
  mkdirSync(dirname(root), { recursive: true });
  await run('cp', ['-al', seed, root]).catch(async (e: { stderr?: string }) => {
    // The seed on another filesystem than the stack's folder: no hard links across; a reflink copy where the
    // filesystem has them, else a full one (~0.9 GB).
    if (!/cross-device/i.test(e.stderr ?? '')) throw e;
    rmSync(root, { recursive: true, force: true });
    await run('cp', ['-a', '--reflink=auto', seed, root]);
  });
  rmSync(join(root, 'io.containerd.grpc.v1.introspection', 'uuid'), { force: true });
  for (const f of mutableFiles(root)) {
    copyFileSync(f, `${f}.copy`);
    renameSync(`${f}.copy`, f);
  }
}

/** Files under a containerd root outside its immutable trees. */
export function mutableFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() && !immutableTrees.has(e.name)
      ? mutableFiles(join(dir, e.name))
      : e.isFile()
        ? [join(dir, e.name)]
        : [],
  );
}
