// Builds a target of deploy/Dockerfile without a container engine or registry: the same stages, COPYs and
// RUNs, each RUN on this machine in the stage's staging root (the node and npm that run it are the ones
// the base image carries), and the registry base replaced by one made from local files (node + its libraries).
// Supports what our Dockerfile uses: FROM [AS], WORKDIR, COPY [--from=stage], RUN, USER, ENTRYPOINT.
import { execFileSync } from 'node:child_process';
import { cpSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
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

/**
 * Runs the stages up to `target` in staging roots under a temporary folder and returns the target's image,
 * its files read from the staging root (kept until `cleanup()`).
 */
export function buildDockerfileTarget(
  dockerfile: string,
  context: string,
  target: string,
  name: string,
): { spec: ImageSpec; cleanup(): void } {
  const stages = parseDockerfile(dockerfile);
  const work = mkdtempSync(join(tmpdir(), 'kec-dockerfile-'));
  const roots = new Map<
    string,
    { root: string; base?: ImageSpec; workdir: string; user?: string; entrypoint?: string[] }
  >();
  for (const stage of stages) {
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
    };
    for (const step of stage.steps) {
      if (step.kind === 'WORKDIR') {
        st.workdir = posix.resolve(st.workdir, step.dir);
        mkdirSync(join(root, st.workdir), { recursive: true });
      }
      if (step.kind === 'USER') st.user = step.user;
      if (step.kind === 'ENTRYPOINT') st.entrypoint = step.argv;
      if (step.kind === 'RUN')
        execFileSync('sh', ['-c', step.cmd], { cwd: join(root, st.workdir), stdio: ['ignore', 'ignore', 'inherit'] });
      if (step.kind === 'COPY') {
        const fromRoot = step.from ? roots.get(step.from)?.root : context;
        if (!fromRoot) throw new Error(`COPY --from=${step.from}: no such stage`);
        const dst = join(root, posix.resolve(st.workdir, step.dst));
        for (const src of step.srcs) {
          const abs = join(fromRoot, src);
          const into = step.dst.endsWith('/') || step.srcs.length > 1 ? join(dst, posix.basename(src)) : dst;
          cpSync(abs, into, { recursive: true, verbatimSymlinks: true });
        }
      }
    }
    roots.set(stage.name, st);
    if (stage.name === target) {
      const app = walk(root);
      // The stand-in base has node's libraries only: add what native addons (*.node) load, as Debian's base would have.
      const have = new Set((st.base?.files ?? []).map((f) => f.path));
      const addonLibs = new Map(
        app
          .files!.filter((f) => f.path.endsWith('.node'))
          .flatMap((f) => sharedLibraries(f.src))
          .filter((l) => !have.has(l.path))
          .map((l) => [l.path, l]),
      );
      const spec: ImageSpec = {
        name,
        files: [...(st.base?.files ?? []), ...addonLibs.values(), ...app.files!],
        links: [...(st.base?.links ?? []), ...app.links!],
        dirs: st.base?.dirs,
        env: st.base?.env,
        entrypoint: st.entrypoint,
        user: st.user === 'node' ? '1000:1000' : st.user,
        workdir: st.workdir,
      };
      return { spec, cleanup: () => rmSync(work, { recursive: true, force: true }) };
    }
  }
  rmSync(work, { recursive: true, force: true });
  throw new Error(`Dockerfile has no target ${target}`);
}
