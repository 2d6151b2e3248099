// Pod volumes as host directories: emptyDir, hostPath, PVC (through its bound PV), configMap,
// secret, downwardAPI and projected (service-account token included).
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { CoreV1Api, V1Pod, V1Volume, V1KeyToPath } from '@kubernetes/client-node';

export class VolumeNotReady extends Error {}

export async function prepareVolumes(core: CoreV1Api, pod: V1Pod, podDir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const ns = pod.metadata!.namespace!;
  for (const v of pod.spec?.volumes ?? [])
    out.set(v.name, await prepare(core, pod, ns, v, join(podDir, 'volumes', v.name)));
  return out;
}

async function prepare(core: CoreV1Api, pod: V1Pod, ns: string, v: V1Volume, dir: string): Promise<string> {
  if (v.emptyDir) {
    mkdirSync(dir, { recursive: true });
    return dir;
  }
  if (v.hostPath) {
    if (!existsSync(v.hostPath.path)) mkdirSync(v.hostPath.path, { recursive: true });
    return v.hostPath.path;
  }
  if (v.persistentVolumeClaim) {
    const claim = v.persistentVolumeClaim.claimName;
    const pvc = await core.readNamespacedPersistentVolumeClaim({ name: claim, namespace: ns }).catch(() => undefined);
    if (!pvc) throw new VolumeNotReady(`persistentvolumeclaim "${claim}" not found`);
    if (pvc.status?.phase !== 'Bound' || !pvc.spec?.volumeName)
      throw new VolumeNotReady(`persistentvolumeclaim "${claim}" is not bound yet`);
    const pv = await core.readPersistentVolume({ name: pvc.spec.volumeName });
    const path = pv.spec?.hostPath?.path ?? pv.spec?.local?.path;
    if (!path)
      throw new VolumeNotReady(
        `persistentvolume "${pv.metadata?.name}" has no hostPath/local path this agent can mount`,
      );
    mkdirSync(path, { recursive: true });
    return path;
  }
  mkdirSync(dir, { recursive: true });
  if (v.configMap) {
    const cm = await core.readNamespacedConfigMap({ name: v.configMap.name!, namespace: ns }).catch(() => undefined);
    if (!cm && !v.configMap.optional) throw new VolumeNotReady(`configmap "${v.configMap.name}" not found`);
    writeKeys(dir, { ...(cm?.data ?? {}) }, v.configMap.items);
    return dir;
  }
  if (v.secret) {
    const s = await core.readNamespacedSecret({ name: v.secret.secretName!, namespace: ns }).catch(() => undefined);
    if (!s && !v.secret.optional) throw new VolumeNotReady(`secret "${v.secret.secretName}" not found`);
    writeKeys(dir, decode(s?.data), v.secret.items);
    return dir;
  }
  if (v.downwardAPI) {
    writeDownward(dir, pod, v.downwardAPI.items ?? []);
    return dir;
  }
  if (v.projected) {
    for (const src of v.projected.sources ?? []) {
      if (src.serviceAccountToken) {
        const tr = await core.createNamespacedServiceAccountToken({
          name: pod.spec?.serviceAccountName ?? 'default',
          namespace: ns,
          body: {
            spec: {
              audiences: src.serviceAccountToken.audience ? [src.serviceAccountToken.audience] : [],
              expirationSeconds: src.serviceAccountToken.expirationSeconds ?? 3607,
              boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod.metadata!.name, uid: pod.metadata!.uid },
            },
          },
        });
        writeFile(join(dir, src.serviceAccountToken.path), tr.status?.token ?? '');
      }
      if (src.configMap) {
        const cm = await core
          .readNamespacedConfigMap({ name: src.configMap.name!, namespace: ns })
          .catch(() => undefined);
        writeKeys(dir, { ...(cm?.data ?? {}) }, src.configMap.items);
      }
      if (src.secret) {
        const s = await core.readNamespacedSecret({ name: src.secret.name!, namespace: ns }).catch(() => undefined);
        writeKeys(dir, decode(s?.data), src.secret.items);
      }
      if (src.downwardAPI) writeDownward(dir, pod, src.downwardAPI.items ?? []);
    }
    return dir;
  }
  // Unknown volume types become empty directories, so the pod still starts.
  return dir;
}

/** Like the kubelet's periodic sync: secret volumes follow their Secret (certificate rotation, issue 18). Each changed
 *  file is replaced by a rename, never seen half-written. Returns the volumes that changed. */
export async function refreshSecretVolumes(core: CoreV1Api, pod: V1Pod, podDir: string): Promise<string[]> {
  const changed: string[] = [];
  for (const v of pod.spec?.volumes ?? []) {
    if (!v.secret) continue;
    const s = await core
      .readNamespacedSecret({ name: v.secret.secretName!, namespace: pod.metadata!.namespace! })
      .catch(() => undefined);
    if (!s) continue; // gone or unreadable: the kubelet keeps the last content too
    const data = decode(s.data);
    const files = v.secret.items?.length
      ? v.secret.items.filter((it) => it.key in data).map((it) => [it.path, data[it.key]] as const)
      : Object.entries(data);
    const dir = join(podDir, 'volumes', v.name);
    const stale = files.filter(([f, val]) => !existsSync(join(dir, f)) || readFileSync(join(dir, f), 'utf8') !== val);
    for (const [f, val] of stale) {
      writeFile(join(dir, `.${f}.new`), val);
      renameSync(join(dir, `.${f}.new`), join(dir, f));
    }
    if (stale.length) changed.push(v.name);
  }
  return changed;
}

function decode(data: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(
    Object.entries(data ?? {}).map(([k, b64]) => [k, Buffer.from(b64, 'base64').toString('utf8')]),
  );
}

function writeKeys(dir: string, data: Record<string, string>, items: V1KeyToPath[] | undefined): void {
  if (items?.length) {
    for (const it of items) if (it.key in data) writeFile(join(dir, it.path), data[it.key]);
    return;
  }
  for (const [k, val] of Object.entries(data)) writeFile(join(dir, k), val);
}

function writeDownward(dir: string, pod: V1Pod, items: { path: string; fieldRef?: { fieldPath: string } }[]): void {
  for (const it of items) if (it.fieldRef) writeFile(join(dir, it.path), fieldRefValue(pod, it.fieldRef.fieldPath));
}

function writeFile(file: string, content: string): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, content);
}

/** The value of a downward-API field path for this pod. */
export function fieldRefValue(pod: V1Pod, path: string): string {
  const m = pod.metadata ?? {};
  const simple: Record<string, string | undefined> = {
    'metadata.name': m.name,
    'metadata.namespace': m.namespace,
    'metadata.uid': m.uid,
    'spec.nodeName': pod.spec?.nodeName,
    'spec.serviceAccountName': pod.spec?.serviceAccountName,
    'status.podIP': pod.status?.podIP,
    'status.hostIP': pod.status?.hostIP,
  };
  if (path in simple) return simple[path] ?? '';
  const lab = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (lab) return (lab[1] === 'labels' ? m.labels : m.annotations)?.[lab[2]] ?? '';
  if (path === 'metadata.labels')
    return Object.entries(m.labels ?? {})
      .map(([k, v]) => `${k}="${v}"`)
      .join('\n');
  if (path === 'metadata.annotations')
    return Object.entries(m.annotations ?? {})
      .map(([k, v]) => `${k}="${v}"`)
      .join('\n');
  return '';
}
