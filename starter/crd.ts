// At start the controller installs what it needs, as the seed's controller did: the EtcdCluster CRD
// (the very file in deploy/) and the "etcd-controller-backup" storage class.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiextensionsV1Api, StorageV1Api, loadYaml, type KubeConfig, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import type { Logger } from 'pino';

const crdFile = join(dirname(fileURLToPath(import.meta.url)), '..', 'deploy', 'crd.yaml');
export const backupStorageClass = 'etcd-controller-backup';

export async function ensureCrd(kc: KubeConfig, log: Logger): Promise<void> {
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  // loadYaml returns the typed model (x_kubernetes_* names), which the typed create/replace serialise back.
  const crd = loadYaml<V1CustomResourceDefinition>(readFileSync(crdFile, 'utf8')) as V1CustomResourceDefinition & { metadata: { name: string } };
  for (let attempt = 0; ; attempt++) {
    const existing = await ext.readCustomResourceDefinition({ name: crd.metadata.name }).catch((e) => { if ((e as { code?: number }).code === 404) return undefined; throw e; });
    try {
      if (!existing) await ext.createCustomResourceDefinition({ body: crd });
      else await ext.replaceCustomResourceDefinition({ name: crd.metadata.name, body: { ...crd, metadata: { ...crd.metadata, resourceVersion: existing.metadata?.resourceVersion } } });
      break;
    } catch (e) {
      if ((e as { code?: number }).code !== 409 || attempt > 5) throw e; // raced with another writer: read again
    }
  }
  for (let i = 0; i < 100; i++) {
    const got = await ext.readCustomResourceDefinition({ name: crd.metadata.name });
    if (got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) { log.info({ crd: crd.metadata.name }, 'CRD established'); return; }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`CRD ${crd.metadata.name} did not become Established`);
}

/** The backup storage class, with the provisioner of the cluster's default class unless told otherwise. */
export async function ensureBackupStorageClass(kc: KubeConfig, log: Logger, provisioner?: string): Promise<void> {
  const storage = kc.makeApiClient(StorageV1Api);
  const classes = await storage.listStorageClass();
  if (classes.items.some((c) => c.metadata?.name === backupStorageClass)) return;
  const def = classes.items.find((c) => c.metadata?.annotations?.['storageclass.kubernetes.io/is-default-class'] === 'true');
  const p = provisioner ?? def?.provisioner;
  if (!p) { log.warn('no default storage class and BACKUP_STORAGE_PROVISIONER unset: not creating the backup storage class'); return; }
  await storage.createStorageClass({ body: { metadata: { name: backupStorageClass, labels: { app: 'kube-etcd-controller' } }, provisioner: p, reclaimPolicy: 'Retain' } })
    .catch((e) => { if ((e as { code?: number }).code !== 409) throw e; });
  log.info({ storageClass: backupStorageClass, provisioner: p }, 'backup storage class created');
}
