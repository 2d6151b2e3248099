// The real nodes' image seed (local/real-nodes/seed.ts), on a fake containerd root: built once however many stacks
// ask at once, a dead holder's lock taken over, older seeds of the same kind removed, and a node's copy sharing only
// the immutable files (a write to its databases never reaches the seed). Pure: no containerd, no stack.
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { mutableFiles, rootFromSeed, seedName, withSeed } from '../local/real-nodes/seed.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kec-seed-test-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const blob = 'io.containerd.content.v1.content/blobs/sha256/ab12';
const layerFile = 'io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs/usr/local/bin/etcd';
const metaDb = 'io.containerd.metadata.v1.bolt/meta.db';
const snapshotsDb = 'io.containerd.snapshotter.v1.overlayfs/metadata.db';
const uuid = 'io.containerd.grpc.v1.introspection/uuid';

/** What a containerd leaves in its root after importing (the files that matter here). */
function fakeImport(root: string): void {
  for (const [f, text] of [
    [blob, 'layer'],
    [layerFile, 'etcd binary'],
    [metaDb, 'images'],
    [snapshotsDb, 'snapshots'],
    [uuid, 'seed instance'],
  ]) {
    mkdirSync(dirname(join(root, f)), { recursive: true });
    writeFileSync(join(root, f), text);
  }
}

test('two stacks asking at once: one build, both get the complete seed', async () => {
  let builds = 0;
  const build = async (root: string) => {
    builds++;
    await new Promise((r) => setTimeout(r, 200));
    fakeImport(root);
  };
  const seen = await Promise.all(
    [1, 2].map(() =>
      withSeed(
        dir,
        'all-1',
        build,
        async (root) => readFileSync(join(root, metaDb), 'utf8'),
        () => {},
      ),
    ),
  );
  expect(builds).toBe(1);
  expect(seen).toEqual(['images', 'images']);
  expect(readdirSync(dir).sort()).toEqual(['all-1']); // no lock, no building folder left
});

test('another process holding the lock: waited for', async () => {
  const holder = spawn('sleep', ['1']);
  writeFileSync(join(dir, 'seeds.lock'), `${holder.pid}\n`);
  let exited = false;
  holder.on('exit', () => (exited = true));
  const builtAfterExit = await withSeed(
    dir,
    'all-1',
    async (root) => fakeImport(root),
    async () => exited,
    () => {},
  );
  expect(builtAfterExit).toBe(true);
});

test("a killed holder's lock and half-built seed are taken over; older seeds of the same kind are removed", async () => {
  const dead = spawnSync('true').pid!; // a pid that has exited
  writeFileSync(join(dir, 'seeds.lock'), `${dead}\n`);
  mkdirSync(join(dir, `all-2.building-${dead}`, 'root'), { recursive: true });
  for (const old of ['all-1', 'catalog-1']) mkdirSync(join(dir, old, 'root'), { recursive: true });
  const built = await withSeed(
    dir,
    'all-2',
    async (root) => fakeImport(root),
    async (_root, b) => b,
    () => {},
  );
  expect(built).toBe(true);
  expect(readdirSync(dir).sort()).toEqual(['all-2', 'catalog-1']);
});

test("a node's root shares the seed's blobs and snapshots, not its databases; the seed's name follows the archives", async () => {
  const seed = join(dir, 'seed');
  fakeImport(seed);
  const node = join(dir, 'n1', 'containerd', 'root');
  await rootFromSeed(seed, node);
  for (const f of [blob, layerFile]) expect(statSync(join(node, f)).ino).toBe(statSync(join(seed, f)).ino);
  expect(mutableFiles(node).sort()).toEqual([metaDb, snapshotsDb].map((f) => join(node, f)).sort());
  for (const f of mutableFiles(node)) {
    expect(statSync(f).ino).not.toBe(statSync(f.replace(node, seed)).ino);
    writeFileSync(f, 'written by the node');
    expect(readFileSync(f.replace(node, seed), 'utf8')).not.toBe('written by the node');
  }
  expect(existsSync(join(node, uuid))).toBe(false);

  const archive = join(dir, 'etcd.tar');
  writeFileSync(archive, 'v1');
  const before = seedName('all', [archive], join(seed, blob));
  expect(seedName('all', [archive], join(seed, blob))).toBe(before);
  utimesSync(archive, new Date(), new Date(Date.now() + 5000)); // rebuilt
  expect(seedName('all', [archive], join(seed, blob))).not.toBe(before);
});
