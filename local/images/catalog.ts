// The images real nodes run, built from the toolchain's binaries and Debian's packages (no registry here):
// etcd for each managed version, the pod sandbox's pause, and busybox for the restore's init containers.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { etcdBinDir, etcdVersions, pins, toolsDir } from '../toolchain.js';
import type { ImageSpec } from './oci.js';
import { shellImage } from '../../activities/member-pod.js';

export const imagesDir = join(toolsDir, 'images');
export const pauseImage = 'registry.k8s.io/pause:3.10.2';
export const etcdRepository = 'quay.io/coreos/etcd';
export const busyboxImage = `docker.io/library/${shellImage}`;

/** The shared libraries a dynamic binary loads (ldd), at the paths the loader looks for them. */
export function sharedLibraries(binary: string): { src: string; path: string }[] {
  let out: string;
  try {
    out = execFileSync('ldd', [binary], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return [];
  } // static: ldd exits 1
  if (/statically linked/.test(out)) return [];
  return out.split('\n').flatMap((line) => {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    return m ? [{ src: realpathSync(m[1]), path: m[1].replace(/^\//, '') }] : [];
  });
}

/** etcd <version>: etcd, etcdctl (and etcdutl from 3.5) in /usr/local/bin, with their libraries when dynamic (3.4 from Debian). */
export function etcdImage(version: string): ImageSpec {
  const dir = etcdBinDir(version);
  const bins = ['etcd', 'etcdctl', 'etcdutl'].filter((b) => existsSync(join(dir, b)));
  const libs = new Map(bins.flatMap((b) => sharedLibraries(join(dir, b))).map((l) => [l.path, l]));
  return {
    name: `${etcdRepository}:v${version}`,
    files: [...bins.map((b) => ({ src: join(dir, b), path: `usr/local/bin/${b}`, mode: 0o755 })), ...libs.values()],
    dirs: ['var/etcd', 'tmp'],
    cmd: ['/usr/local/bin/etcd'],
  };
}

/** The sandbox image: Kubernetes' own pause.c (build/pause/linux in the kubernetes module), compiled static. */
export function pauseImageSpec(): ImageSpec {
  const out = join(imagesDir, 'src', 'pause');
  if (!existsSync(out)) {
    // The kubernetes module (already in the module cache after the toolchain's build; fetched from the proxy if not).
    const mod = JSON.parse(
      execFileSync('go', ['mod', 'download', '-json', `k8s.io/kubernetes@v${pins.K8S_VERSION}`], {
        encoding: 'utf8',
        env: { ...process.env, GOWORK: 'off', GOFLAGS: '-mod=mod' },
      }),
    ) as { Dir: string };
    mkdirSync(join(imagesDir, 'src'), { recursive: true });
    execFileSync('gcc', [
      '-Os',
      '-Wall',
      '-Werror',
      '-static',
      '-DVERSION=v3.10.2-local',
      '-o',
      out,
      join(mod.Dir, 'build', 'pause', 'linux', 'pause.c'),
    ]);
  }
  return {
    name: pauseImage,
    files: [{ src: out, path: 'pause', mode: 0o755 }],
    entrypoint: ['/pause'],
    user: '65535:65535',
  };
}

/** busybox from Debian's busybox-static, every applet linked in /bin (init containers run `sh -c`, wget, mv). */
export function busyboxImageSpec(): ImageSpec {
  const root = join(imagesDir, 'src', 'busybox');
  const bin = join(root, 'bin', 'busybox');
  if (!existsSync(bin)) {
    mkdirSync(root, { recursive: true });
    execFileSync(
      'sh',
      ['-c', 'apt-get download busybox-static || (apt-get update -qq && apt-get download busybox-static)'],
      { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const deb = readdirSync(root).find((f) => f.startsWith('busybox-static') && f.endsWith('.deb'))!;
    execFileSync('dpkg-deb', ['-x', join(root, deb), root]);
  }
  const applets = execFileSync(bin, ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter((a) => a && a !== 'busybox');
  return {
    name: busyboxImage,
    files: [{ src: bin, path: 'bin/busybox', mode: 0o755 }],
    links: applets.map((a) => ({ path: `bin/${a}`, target: 'busybox' })),
    dirs: ['tmp'],
    cmd: ['sh'],
  };
}

export function catalog(): ImageSpec[] {
  return [pauseImageSpec(), busyboxImageSpec(), ...etcdVersions.map(etcdImage)];
}
