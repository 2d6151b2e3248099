// The image catalog: which local binaries stand in for a container image's root filesystem.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { dockerfileEntrypoints, ensureBuilt, etcdBinDir, etcdVersions, repoRoot } from '../toolchain.js';

export interface Image {
  /** Host directory bind-mounted at /usr/local/bin inside the container (the image's binaries). */
  binDir?: string;
  entrypoint: string[];
  cmd: string[];
}

const etcdRepos = ['quay.io/coreos/etcd', 'gcr.io/etcd-development/etcd'];
/** The project's own images (any tag): deploy/Dockerfile's targets, run as its ENTRYPOINT says, on the
 *  working tree's compiled output (dist/, rebuilt when stale). */
const projectRepo = 'kube-etcd-controller/';
/** A plain userland image for test pods: the host's own /bin. */
const shellImages = ['busybox', 'docker.io/library/busybox', 'debian', 'docker.io/library/debian'];

export function splitImage(ref: string): { repo: string; tag: string } {
  const at = ref.indexOf('@');
  const base = at >= 0 ? ref.slice(0, at) : ref;
  const colon = base.lastIndexOf(':');
  if (colon > base.lastIndexOf('/')) return { repo: base.slice(0, colon), tag: base.slice(colon + 1) };
  return { repo: base, tag: 'latest' };
}

export function resolveImage(ref: string): Image | undefined {
  const { repo, tag } = splitImage(ref);
  if (etcdRepos.includes(repo)) {
    const version = tag.replace(/^v/, '');
    if (!etcdVersions.includes(version)) return undefined;
    const binDir = etcdBinDir(version);
    if (!existsSync(`${binDir}/etcd`)) return undefined;
    return { binDir, entrypoint: [], cmd: ['/usr/local/bin/etcd'] };
  }
  if (repo.startsWith(projectRepo)) {
    const entry = dockerfileEntrypoints()[repo.slice(projectRepo.length)];
    if (!entry || entry[0] !== 'node') return undefined;
    ensureBuilt();
    return {
      // deploy/Dockerfile copies etcdutl into the backup tool's /usr/local/bin (snapshot status, restore checks).
      ...(repo === `${projectRepo}backup-tool` ? { binDir: etcdBinDir(etcdVersions[etcdVersions.length - 1]) } : {}),
      entrypoint: [process.execPath, ...entry.slice(1).map((a) => (a.startsWith('dist/') ? join(repoRoot, a) : a))],
      cmd: [],
    };
  }
  if (shellImages.includes(repo)) return { entrypoint: [], cmd: ['sh'] };
  return undefined;
}

export function catalogSummary(): string {
  return [
    ...etcdRepos.flatMap((r) => etcdVersions.map((v) => `${r}:v${v}`)),
    ...Object.keys(dockerfileEntrypoints()).map((t) => `${projectRepo}${t}:<any>`),
    'busybox',
  ].join(', ');
}
