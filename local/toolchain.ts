// Where the toolchain binaries live. Versions come from the one pin file, local/toolchain/versions.env.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function readPins(): Record<string, string> {
  const pins: Record<string, string> = {};
  for (const line of readFileSync(join(here, 'toolchain', 'versions.env'), 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) pins[m[1]] = m[2];
  }
  return pins;
}

export const pins = readPins();
export const toolsDir = process.env.KEC_TOOLS_DIR ?? join(homedir(), '.cache', 'kube-etcd-controller', 'tools');

/** Managed-cluster etcd versions the toolchain provides (3.4 from Debian, 3.5/3.6 built). */
export const etcdVersions = [pins.ETCD34_VERSION, pins.ETCD35_VERSION, pins.ETCD36_VERSION];

export function etcdBinDir(version: string): string {
  return join(toolsDir, `etcd-v${version}`);
}

export const bins = {
  // install.sh falls back to the older Kubernetes only when the pinned one cannot build.
  k8sDir:
    [pins.K8S_VERSION, pins.K8S_FALLBACK_VERSION]
      .map((v) => join(toolsDir, `k8s-v${v}`))
      .find((d) => existsSync(join(d, 'kube-apiserver'))) ?? join(toolsDir, `k8s-v${pins.K8S_VERSION}`),
  get kubeApiserver() {
    return join(this.k8sDir, 'kube-apiserver');
  },
  get kubeControllerManager() {
    return join(this.k8sDir, 'kube-controller-manager');
  },
  get kubeScheduler() {
    return join(this.k8sDir, 'kube-scheduler');
  },
  get kubectl() {
    return join(this.k8sDir, 'kubectl');
  },
  temporal: join(toolsDir, `temporal-${pins.TEMPORAL_CLI_VERSION}`, 'temporal'),
  /** The stack's S3 server (issue 19). */
  versitygw: join(toolsDir, `versitygw-v${pins.VERSITYGW_VERSION}`, 'versitygw'),
  /** cert-manager's controller (CA issuer) and its CRDs, for spec.tls.issuerRef's test (issue 18). */
  certManager: join(toolsDir, `cert-manager-v${pins.CERT_MANAGER_VERSION}`, 'cert-manager'),
  certManagerCrds: join(toolsDir, `cert-manager-v${pins.CERT_MANAGER_VERSION}`, 'crds'),
  /** The control plane's own etcd: the newest built version. */
  controlPlaneEtcd: join(etcdBinDir(pins.ETCD36_VERSION), 'etcd'),
};

export const repoRoot = join(here, '..');
/** Command line that runs one of the project's TypeScript entry points with the right loader. */
export function tsEntry(file: string, ...args: string[]): string[] {
  return [
    process.execPath,
    '--import',
    pathToFileURL(join(repoRoot, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href,
    join(repoRoot, file),
    ...args,
  ];
}

/** The production build (tsconfig.build.json → dist/), what deploy/Dockerfile's images run. */
export const distDir = join(repoRoot, 'dist');
// The folders tsconfig.build.json compiles (its "include"), and what else changes the output.
const builtSources = [
  ...JSON.parse(/"include":\s*(\[[^\]]*\])/.exec(readFileSync(join(repoRoot, 'tsconfig.build.json'), 'utf8'))![1]),
  'tsconfig.json',
  'tsconfig.build.json',
  'package-lock.json',
] as string[];

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(st.mtimeMs, ...readdirSync(path).map((f) => newestMtime(join(path, f))));
}

/** Compiles dist/ when a source is newer than the last build, so a pod never runs stale JavaScript. */
export function ensureBuilt(): void {
  const stamp = join(distDir, '.built'); // tsc leaves its own .tsbuildinfo alone when nothing changed
  const built = existsSync(stamp) ? statSync(stamp).mtimeMs : 0;
  if (built >= Math.max(...builtSources.map((f) => newestMtime(join(repoRoot, f))))) return;
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: repoRoot, stdio: 'inherit' }); // the one build, which writes the stamp
}

/** The image targets of deploy/Dockerfile (`FROM … AS <target>`) and the ENTRYPOINT each runs, e.g.
 *  backup-tool → ["node", "dist/backup-tool/main.js"]: one definition for users' images and ours. */
export function dockerfileEntrypoints(
  text = readFileSync(join(repoRoot, 'deploy', 'Dockerfile'), 'utf8'),
): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  let target = '';
  for (const line of text.split('\n')) {
    const from = /^FROM\s+\S+(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) target = from[1] ?? '';
    const entry = /^ENTRYPOINT\s+(\[.*\])\s*$/i.exec(line);
    if (entry && target) out[target] = JSON.parse(entry[1]) as string[];
  }
  return out;
}
