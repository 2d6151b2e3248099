// How a container becomes a process: the pod's network namespace, a private mount namespace with
// the pod's volumes (and the image's binaries) bind-mounted at their paths, the pod's hostname.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import type { CoreV1Api, V1Container, V1Pod } from '@kubernetes/client-node';
import type { Image } from './images.js';
import type { Sandbox } from './network.js';
import { fieldRefValue } from './volumes.js';

const basePath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Expands $(VAR) references as the kubelet does; $$(VAR) stays literal, unknown names stay as written. */
export function expandVars(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === '$$') return '$';
    return name !== undefined && name in env ? env[name] : m;
  });
}

export async function containerEnv(core: CoreV1Api, pod: V1Pod, c: V1Container): Promise<Record<string, string>> {
  const ns = pod.metadata!.namespace!;
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef) {
      const cm = await core
        .readNamespacedConfigMap({ name: from.configMapRef.name!, namespace: ns })
        .catch(() => undefined);
      for (const [k, v] of Object.entries(cm?.data ?? {})) env[(from.prefix ?? '') + k] = v;
    }
    if (from.secretRef) {
      const s = await core.readNamespacedSecret({ name: from.secretRef.name!, namespace: ns }).catch(() => undefined);
      for (const [k, v] of Object.entries(s?.data ?? {}))
        env[(from.prefix ?? '') + k] = Buffer.from(v, 'base64').toString('utf8');
    }
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = expandVars(e.value, env);
    else if (e.valueFrom?.fieldRef) env[e.name] = fieldRefValue(pod, e.valueFrom.fieldRef.fieldPath);
    else if (e.valueFrom?.configMapKeyRef) {
      const r = e.valueFrom.configMapKeyRef;
      const cm = await core.readNamespacedConfigMap({ name: r.name!, namespace: ns }).catch(() => undefined);
      env[e.name] = cm?.data?.[r.key] ?? '';
    } else if (e.valueFrom?.secretKeyRef) {
      const r = e.valueFrom.secretKeyRef;
      const s = await core.readNamespacedSecret({ name: r.name!, namespace: ns }).catch(() => undefined);
      env[e.name] = s?.data?.[r.key] ? Buffer.from(s.data[r.key], 'base64').toString('utf8') : '';
    } else env[e.name] = '';
  }
  return env;
}

export interface LaunchSpec {
  sandbox: Sandbox;
  hostname: string;
  image: Image;
  argv: string[];
  env: Record<string, string>;
  workingDir?: string;
  mounts: { hostPath: string; mountPath: string; readOnly?: boolean }[];
}

/** The container's command line: entrypoint/cmd semantics of Kubernetes over the image's defaults. */
export function containerArgv(c: V1Container, image: Image, env: Record<string, string>): string[] {
  const argv = c.command?.length
    ? [...c.command, ...(c.args ?? [])]
    : [...image.entrypoint, ...(c.args?.length ? c.args : image.cmd)];
  return argv.map((a) => expandVars(a, env));
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** argv that enters the pod's namespaces, mounts its volumes and execs the container command. */
export function wrapLaunch(spec: LaunchSpec): string[] {
  const lines = ['set -e', `hostname ${q(spec.hostname.slice(0, 63))}`];
  if (spec.image.binDir) lines.push(`mount --bind ${q(spec.image.binDir)} /usr/local/bin`);
  for (const m of [...spec.mounts].sort((a, b) => a.mountPath.length - b.mountPath.length)) {
    lines.push(`mkdir -p ${q(m.mountPath)}`, `mount --bind ${q(m.hostPath)} ${q(m.mountPath)}`);
    if (m.readOnly) lines.push(`mount -o remount,bind,ro ${q(m.mountPath)}`);
  }
  if (spec.workingDir) lines.push(`mkdir -p ${q(spec.workingDir)}`, `cd ${q(spec.workingDir)}`);
  lines.push('exec "$@"');
  const inner = [
    'unshare',
    '--uts',
    ...(spec.sandbox.netns ? [] : ['--mount', '--propagation', 'private']),
    '/bin/sh',
    '-c',
    lines.join('\n'),
    'container',
    ...spec.argv,
  ];
  return spec.sandbox.netns ? ['ip', 'netns', 'exec', spec.sandbox.netns, ...inner] : inner;
}

export function launch(spec: LaunchSpec, logFile?: string): ChildProcess {
  const argv = wrapLaunch(spec);
  let fd: number | 'ignore' = 'ignore';
  if (logFile) {
    mkdirSync(logFile.slice(0, logFile.lastIndexOf('/')), { recursive: true });
    fd = openSync(logFile, 'a');
  }
  const child = spawn(argv[0], argv.slice(1), {
    stdio: ['ignore', fd, fd],
    detached: true,
    env: { PATH: basePath, HOME: '/root', HOSTNAME: spec.hostname, ...spec.env },
  });
  if (typeof fd === 'number') closeSync(fd);
  return child;
}
