// At start the controller installs what it needs, as the seed's controller did: the EtcdCluster CRD
// (the very file in deploy/) and the "etcd-controller-backup" storage class.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ApiextensionsV1Api,
  KubernetesObjectApi,
  PatchStrategy,
  StorageV1Api,
  loadYaml,
  type KubeConfig,
  type V1CustomResourceDefinition,
  type V1JSONSchemaProps,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { controllerLabels } from '../api/etcdcluster.js';
import { fieldManager } from '../activities/kube.js';

const here = dirname(fileURLToPath(import.meta.url));
// deploy/ beside the sources, or two levels up from the compiled dist/controller/.
const crdFile =
  [join(here, '..', 'deploy', 'crd.yaml'), join(here, '..', '..', 'deploy', 'crd.yaml')].find((f) => existsSync(f)) ??
  join(here, '..', 'deploy', 'crd.yaml');
export const backupStorageClass = 'etcd-controller-backup';

/** Schema paths (`v1:spec.backup.maxBackups`) the installed CRD has and ours lacks: a newer controller
 *  installed it, so this (older) one must not apply its schema over it (during a rollout, say). */
export function fieldsOnlyIn(installed: V1CustomResourceDefinition, ours: V1CustomResourceDefinition): string[] {
  const out: string[] = [];
  const walk = (a: V1JSONSchemaProps | undefined, b: V1JSONSchemaProps | undefined, path: string) => {
    for (const [k, v] of Object.entries(a?.properties ?? {})) {
      const p = path.endsWith(':') ? `${path}${k}` : `${path}.${k}`;
      if (!b?.properties?.[k]) out.push(p);
      else walk(v, b.properties[k], p);
    }
    if (a?.items && !Array.isArray(a.items))
      walk(a.items as V1JSONSchemaProps, b?.items as V1JSONSchemaProps | undefined, `${path}[]`);
  };
  for (const v of installed.spec.versions) {
    const mine = ours.spec.versions.find((o) => o.name === v.name);
    if (!mine) out.push(`${v.name}:`);
    else walk(v.schema?.openAPIV3Schema, mine.schema?.openAPIV3Schema, `${v.name}:`);
  }
  return out;
}

/** Applies deploy/crd.yaml with server-side apply (field manager `kube-etcd-controller`) unless the
 *  installed definition is newer, then waits until it is Established. */
export async function ensureCrd(kc: KubeConfig, log: Logger): Promise<void> {
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  // loadYaml returns the typed model (x_kubernetes_* names), which the client serialises back by kind.
  const crd = loadYaml<V1CustomResourceDefinition>(readFileSync(crdFile, 'utf8')) as V1CustomResourceDefinition & {
    metadata: { name: string };
  };
  const installed = await ext.readCustomResourceDefinition({ name: crd.metadata.name }).catch((e) => {
    if ((e as { code?: number }).code === 404) return undefined;
    throw e;
  });
  const newer = installed ? fieldsOnlyIn(installed, crd) : [];
  if (newer.length) {
    log.warn(
      { crd: crd.metadata.name, fieldsOnlyInInstalled: newer.slice(0, 10) },
      "the installed CRD is newer than this controller's (it has fields this one lacks): leaving it as it is",
    );
  } else {
    await KubernetesObjectApi.makeApiClient(kc).patch(
      crd,
      undefined,
      undefined,
      fieldManager,
      true,
      PatchStrategy.ServerSideApply,
    );
  }
  for (let i = 0; i < 100; i++) {
    const got = await ext.readCustomResourceDefinition({ name: crd.metadata.name });
    if (got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) {
      log.info({ crd: crd.metadata.name }, 'CRD established');
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`CRD ${crd.metadata.name} did not become Established`);
}

/** The backup storage class, with the provisioner of the cluster's default class unless told otherwise, and the
 *  default class's binding mode (node-local provisioners such as local-path refuse Immediate claims). */
export async function ensureBackupStorageClass(kc: KubeConfig, log: Logger, provisioner?: string): Promise<void> {
  const storage = kc.makeApiClient(StorageV1Api);
  const classes = await storage.listStorageClass();
  if (classes.items.some((c) => c.metadata?.name === backupStorageClass)) return;
  const def = classes.items.find(
    (c) => c.metadata?.annotations?.['storageclass.kubernetes.io/is-default-class'] === 'true',
  );
  const p = provisioner ?? def?.provisioner;
  if (!p) {
    log.warn('no default storage class and BACKUP_STORAGE_PROVISIONER unset: not creating the backup storage class');
    return;
  }
  await storage
    .createStorageClass({
      body: {
        metadata: { name: backupStorageClass, labels: controllerLabels },
        provisioner: p,
        reclaimPolicy: 'Retain',
        ...(def?.provisioner === p && def.volumeBindingMode ? { volumeBindingMode: def.volumeBindingMode } : {}),
      },
    })
    .catch((e) => {
      if ((e as { code?: number }).code !== 409) throw e;
    });
  log.info({ storageClass: backupStorageClass, provisioner: p }, 'backup storage class created');
}
