// Builds a target of deploy/Dockerfile without a container engine or registry: the same stages, COPYs and
// RUNs, each RUN on this machine in the stage's staging root (the node and npm that run it are the ones
// the base image carries), and the registry base replaced by one made from local files (node + its libraries).
// Supports what our Dockerfile uses: FROM [AS], WORKDIR, COPY [--from=stage], RUN, USER, ENTRYPOINT.
import { execFileSync } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { etcdImage, sharedLibraries } from './catalog.js';
import type { ImageSpec } from './oci.js';

type Step =
  | { kind: 'WORKDIR'; dir: string }
  | { kind: 'COPY'; from?: string; srcs: string[]; dst: string }
  | { kind: 'RUN'; cmd: string }
  | { kind: 'USER'; user: string }
  | { kind: 'ENTRYPOINT'; argv: string[] };
export interface Stage {
  name: string;
  base: string;
  steps: Step[];
}

export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  for (const line of lines) {
    const [op, ...rest] = line.split(/\s+/);
    const arg = line.slice(op.length).trim();
    switch (op.toUpperCase()) {
      case 'FROM':
        stages.push({ base: rest[0], name: /\s+AS\s+(\S+)/i.exec(arg)?.[1] ?? String(stages.length), steps: [] });
        break;
      case 'WORKDIR':
        stages.at(-1)!.steps.push({ kind: 'WORKDIR', dir: arg });
        break;
      case 'RUN':
        stages.at(-1)!.steps.push({ kind: 'RUN', cmd: arg });
        break;
      case 'USER':
        stages.at(-1)!.steps.push({ kind: 'USER', user: arg });
        break;
      case 'ENTRYPOINT':
        stages.at(-1)!.steps.push({ kind: 'ENTRYPOINT', argv: JSON.parse(arg) as string[] });
        break;
      case 'COPY': {
        const from = /^--from=(\S+)/.exec(rest[0] ?? '')?.[1];
        const words = from ? rest.slice(1) : rest;
        stages.at(-1)!.steps.push({ kind: 'COPY', from, srcs: words.slice(0, -1), dst: words.at(-1)! });
        break;
      }
      default:
        throw new Error(`Dockerfile: ${op} is not supported by the local builder (line: ${line})`);
    }
  }
  return stages;
}

/** The registry base images the Dockerfile names, made from this machine's files. */
export function localBase(ref: string): ImageSpec {
  const etcd = /^gcr\.io\/etcd-development\/etcd:v(\S+)$/.exec(ref);
  if (etcd) return etcdImage(etcd[1]); // the toolchain's etcd build (a stage only COPYed from: etcdutl)
  if (!/^node:20\b/.test(ref))
    throw new Error(`no local stand-in for base image ${ref}: add one in local/images/dockerfile.ts`);
  const node = execFileSync('sh', ['-c', 'command -v node'], { encoding: 'utf8' }).trim();
  return {
    name: ref,
    files: [{ src: node, path: 'usr/local/bin/node', mode: 0o755 }, ...sharedLibraries(node)],
    dirs: ['tmp', 'home/node'],
    env: ['NODE_VERSION=' + process.versions.node],
  };
}

/** Adds `rel` under `root` to `h`: every file's path, mode and content, every link's target, in a fixed order. */
export function hashTree(h: Hash, root: string, rel: string): void {
  const abs = join(root, rel);
  const st = lstatSync(abs);
  if (st.isDirectory()) for (const f of readdirSync(abs).sort()) hashTree(h, root, join(rel, f));
  else if (st.isSymbolicLink()) h.update(`${rel}\0->${readlinkSync(abs)}\0`);
  else h.update(`${rel}\0${st.mode}\0`).update(readFileSync(abs)).update('\0');
}

/** What identifies a stand-in base: the files it takes from this machine (path, size, mtime: a node upgrade shows). */
export function baseIdentity(ref: string): string {
  const files = (localBase(ref).files ?? []).map((f) => {
    const st = statSync(f.src);
    return `${f.path}\0${f.src}\0${st.size}\0${st.mtimeMs}`;
  });
  return `${ref}\0${files.join('\0')}`;
}

/** Every file and symlink under root, as image entries below prefix. */
function walk(root: string, prefix = ''): Pick<ImageSpec, 'files' | 'links'> {
  const files: NonNullable<ImageSpec['files']> = [];
  const links: NonNullable<ImageSpec['links']> = [];
  const visit = (dir: string, rel: string) => {
    for (const name of readdirSync(dir)) {
      const abs = join(dir, name);
      const path = rel ? `${rel}/${name}` : name;
      const st = lstatSync(abs);
      if (st.isSymbolicLink()) links.push({ path, target: readlinkSync(abs) });
      else if (st.isDirectory()) visit(abs, path);
      else if (st.isFile()) files.push({ src: abs, path, mode: st.mode & 0o7777 });
    }
  };
  visit(root, prefix.replace(/^\/+|\/+$/g, ''));
  return { files, links };
}

/** The stages `targets` need (their bases and COPY --from sources, transitively). */
function neededStages(stages: Stage[], targets: string[]): Set<string> {
  const need = new Set<string>();
  const add = (name: string) => {
    const stage = stages.find((s) => s.name === name);
    if (!stage || need.has(name)) return;
    need.add(name);
    add(stage.base);
    for (const step of stage.steps) if (step.kind === 'COPY' && step.from) add(step.from);
  };
  targets.forEach(add);
  return need;
}

/** The entries at `rel` under root: a directory's tree, or the one file or link. */
function walkPath(root: string, rel: string): Pick<ImageSpec, 'files' | 'links'> {
  const abs = join(root, rel);
  const st = lstatSync(abs);
  if (st.isDirectory()) return walk(abs, rel);
  if (st.isSymbolicLink()) return { files: [], links: [{ path: rel, target: readlinkSync(abs) }] };
  return { files: [{ src: abs, path: rel, mode: st.mode & 0o7777 }], links: [] };
}

/**
 * Runs the stages `targets` need once, in staging roots under a temporary folder (the build stage's npm ci and
 * npm run build serve every target), and returns each target's image, its files read from the staging roots
 * (kept until `cleanup()`). `log` gets each RUN's wall time.
 *
 * With `cacheDir`, the first RUN of a stage is cached as Docker caches a layer: keyed by everything before it (base,
 * steps, the content COPY brought in), its resulting staging root kept (one entry per stage) and copied back when the
 * key matches. Dockerfiles put the dependency install first for exactly this (npm ci after COPY package*.json): a
 * source change then costs the build, not the ~500 MB install again. Later RUNs depend on the sources: not cached.
 */
export function buildDockerfileTargets(
  dockerfile: string,
  context: string,
  targets: Record<string, string>,
  { log = () => {}, cacheDir }: { log?: (line: string) => void; cacheDir?: string } = {},
): { specs: Record<string, ImageSpec>; cleanup(): void } {
  const stages = parseDockerfile(dockerfile);
  for (const t of Object.keys(targets))
    if (!stages.some((s) => s.name === t)) throw new Error(`Dockerfile has no target ${t}`);
  const need = neededStages(stages, Object.keys(targets));
  // Beside the cache when there is one: copies between the two stay on one filesystem.
  if (cacheDir) mkdirSync(cacheDir, { recursive: true });
  const work = mkdtempSync(join(cacheDir ?? tmpdir(), 'kec-dockerfile-'));
  const cleanup = () => rmSync(work, { recursive: true, force: true });
  const roots = new Map<string, Staged>();
  const specs: Record<string, ImageSpec> = {};
  try {
    for (const stage of stages.filter((s) => need.has(s.name))) {
      const root = join(work, stage.name);
      const parent = roots.get(stage.base);
      if (parent) cpSync(parent.root, root, { recursive: true, verbatimSymlinks: true });
      else mkdirSync(root, { recursive: true });
      // A base's own files are image entries, not in the staging root: put them there so COPY --from finds them.
      if (!parent && stage.base.startsWith('gcr.io/etcd-development/'))
        for (const f of localBase(stage.base).files ?? []) cpSync(f.src, join(root, f.path));
      const st = {
        root,
        base: parent ? parent.base : localBase(stage.base),
        workdir: parent?.workdir ?? '/',
        user: parent?.user,
        entrypoint: parent?.entrypoint,
        key: parent?.key ?? baseIdentity(stage.base),
        parent,
        copied: [] as string[],
        ran: false,
      };
      let firstRun = true;
      for (const step of stage.steps) {
        // The cache key: every step so far and what it brought in (a COPY's content, another stage's key).
        const h = createHash('sha256').update(st.key).update(JSON.stringify(step));
        if (step.kind === 'COPY')
          for (const src of step.srcs)
            if (step.from) h.update(roots.get(step.from)?.key ?? '');
            else hashTree(h, context, src);
        st.key = h.digest('hex');
        if (step.kind === 'WORKDIR') {
          st.workdir = posix.resolve(st.workdir, step.dir);
          mkdirSync(join(root, st.workdir), { recursive: true });
        }
        if (step.kind === 'USER') st.user = step.user;
        if (step.kind === 'ENTRYPOINT') st.entrypoint = step.argv;
        if (step.kind === 'RUN') {
          const t0 = Date.now();
          const cached = cacheDir && firstRun ? join(cacheDir, `${stage.name}-${st.key.slice(0, 32)}`) : undefined;
          if (cached && existsSync(cached)) {
            rmSync(root, { recursive: true, force: true });
            execFileSync('cp', ['-a', cached, root]);
            log(`${stage.name}: RUN ${step.cmd}: cached, ${Date.now() - t0} ms`);
          } else {
            execFileSync('sh', ['-c', step.cmd], {
              cwd: join(root, st.workdir),
              stdio: ['ignore', 'ignore', 'inherit'],
            });
            log(`${stage.name}: RUN ${step.cmd} ${Date.now() - t0} ms`);
            if (cached) keepStep(cacheDir!, stage.name, root, cached);
          }
          firstRun = false;
          st.ran = true;
        }
        if (step.kind === 'COPY') {
          const fromRoot = step.from ? roots.get(step.from)?.root : context;
          if (!fromRoot) throw new Error(`COPY --from=${step.from}: no such stage`);
          const dst = join(root, posix.resolve(st.workdir, step.dst));
          for (const src of step.srcs) {
            const abs = join(fromRoot, src);
            const into = step.dst.endsWith('/') || step.srcs.length > 1 ? join(dst, posix.basename(src)) : dst;
            cpSync(abs, into, { recursive: true, verbatimSymlinks: true });
            st.copied.push(posix.relative(root, into));
          }
        }
      }
      roots.set(stage.name, st);
      if (stage.name in targets) specs[stage.name] = { ...stageImage(st), name: targets[stage.name] };
    }
    return { specs, cleanup };
  } catch (e) {
    cleanup();
    throw e;
  }
}

/** Keeps `root` as the cached result `cached` of a stage's first RUN, replacing that stage's older entry. */
function keepStep(cacheDir: string, stage: string, root: string, cached: string): void {
  const partial = `${cached}.${process.pid}.partial`;
  execFileSync('cp', ['-a', root, partial]);
  for (const old of readdirSync(cacheDir))
    if (old.startsWith(`${stage}-`) && !old.endsWith('.partial') && join(cacheDir, old) !== cached)
      rmSync(join(cacheDir, old), { recursive: true, force: true });
  try {
    renameSync(partial, cached);
  } catch {
    // Another builder kept the same step first (a directory is not renamed over a full one): theirs serves.
    rmSync(partial, { recursive: true, force: true });
  }
}

interface Staged {
  root: string;
  base?: ImageSpec;
  workdir: string;
  user?: string;
  entrypoint?: string[];
  key: string;
  /** The stage this one is FROM, if any. */
  parent?: Staged;
  /** What the stage's own COPY steps wrote (paths in the root). */
  copied: string[];
  ran: boolean;
}

const stageImages = new WeakMap<Staged, ImageSpec>();

/**
 * A stage's image. A stage FROM another stage that only COPYs (and sets WORKDIR, USER, ENTRYPOINT) is a layer of
 * what it copied over that stage's image, the same object for every such stage, so the controller and the backup
 * tool share the runtime's layer (written and imported once); any other stage is one layer of its whole root.
 */
function stageImage(st: Staged): ImageSpec {
  let img = stageImages.get(st);
  if (img) return img;
  const parent = st.parent && !st.ran ? stageImage(st.parent) : undefined;
  const app = parent
    ? st.copied.reduce(
        (acc, rel) => {
          const w = walkPath(st.root, rel);
          return { files: [...acc.files!, ...w.files!], links: [...acc.links!, ...w.links!] };
        },
        { files: [], links: [] } as Pick<ImageSpec, 'files' | 'links'>,
      )
    : walk(st.root);
  // The stand-in base has node's libraries only: add what native addons (*.node) load, as Debian's base would have.
  const have = new Set<string>();
  for (let p: ImageSpec | undefined = parent; p; p = p.parent) for (const f of p.files ?? []) have.add(f.path);
  for (const f of parent ? [] : (st.base?.files ?? [])) have.add(f.path);
  const addonLibs = new Map(
    app
      .files!.filter((f) => f.path.endsWith('.node'))
      .flatMap((f) => sharedLibraries(f.src))
      .filter((l) => !have.has(l.path))
      .map((l) => [l.path, l]),
  );
  img = {
    name: `stage ${st.root}`,
    parent,
    files: [...(parent ? [] : (st.base?.files ?? [])), ...addonLibs.values(), ...app.files!],
    links: [...(parent ? [] : (st.base?.links ?? [])), ...app.links!],
    dirs: parent ? undefined : st.base?.dirs,
    env: st.base?.env,
    entrypoint: st.entrypoint,
    user: st.user === 'node' ? '1000:1000' : st.user,
    workdir: st.workdir,
  };
  stageImages.set(st, img);
  return img;
}
