// A local-path provisioner: claims of our storage classes get a host directory PV. The PV carries no
// node affinity (all nodes are this machine), so a member pod may move nodes and keep its data.
import { chmodSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { CoreV1Api, StorageV1Api, V1PersistentVolumeClaim } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { objectRef } from './object-ref.js';

export const provisionerName = 'kube-etcd-controller.local/local-path';
export const defaultStorageClass = 'local-path';

export class LocalPathProvisioner {
  private timer?: NodeJS.Timeout;
  private busy = false;

  constructor(
    private readonly core: CoreV1Api,
    private readonly storage: StorageV1Api,
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    try {
      await this.storage.createStorageClass({
        body: {
          metadata: {
            name: defaultStorageClass,
            annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' },
          },
          provisioner: provisionerName,
          reclaimPolicy: 'Delete',
          volumeBindingMode: 'Immediate',
        },
      });
    } catch (e) {
      if ((e as { code?: number }).code !== 409) throw e;
    }
    await this.reconcile();
    this.timer = setInterval(() => void this.reconcile(), 1000);
  }

  close(): void {
    clearInterval(this.timer);
  }

  private async reconcile(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const classes = await this.storage.listStorageClass();
      const ours = new Map(
        classes.items.filter((c) => c.provisioner === provisionerName).map((c) => [c.metadata!.name!, c]),
      );
      const defaultClass = classes.items.find(
        (c) => c.metadata?.annotations?.['storageclass.kubernetes.io/is-default-class'] === 'true',
      )?.metadata?.name;
      const claims = await this.core.listPersistentVolumeClaimForAllNamespaces();
      for (const pvc of claims.items) {
        const cls = pvc.spec?.storageClassName ?? defaultClass;
        if (!cls || !ours.has(cls) || pvc.spec?.volumeName || pvc.metadata?.deletionTimestamp) continue;
        await this.provision(pvc, cls, ours.get(cls)!.reclaimPolicy ?? 'Delete');
      }
      // Released volumes of ours with policy Delete: remove data and PV.
      const pvs = await this.core.listPersistentVolume();
      for (const pv of pvs.items) {
        if (pv.metadata?.annotations?.['pv.kubernetes.io/provisioned-by'] !== provisionerName) continue;
        if (pv.status?.phase === 'Released' && pv.spec?.persistentVolumeReclaimPolicy === 'Delete') {
          if (pv.spec.hostPath?.path?.startsWith(this.dir))
            rmSync(pv.spec.hostPath.path, { recursive: true, force: true });
          await this.core.deletePersistentVolume({ name: pv.metadata!.name! }).catch(() => undefined);
          this.log.info({ pv: pv.metadata?.name }, 'deleted released volume');
        }
      }
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'provisioner pass failed');
    } finally {
      this.busy = false;
    }
  }

  private async provision(pvc: V1PersistentVolumeClaim, cls: string, reclaim: string): Promise<void> {
    const name = `pvc-${pvc.metadata!.uid}`;
    const path = join(this.dir, `${pvc.metadata!.namespace}_${pvc.metadata!.name}_${pvc.metadata!.uid!.slice(0, 8)}`);
    if (!existsSync(path)) mkdirSync(path, { recursive: true });
    // World-writable like rancher's local-path-provisioner makes its directories: hostPath volumes ignore
    // fsGroup, and pods run as any user (the backup tool as the image's `node`).
    chmodSync(path, 0o777);
    try {
      await this.core.createPersistentVolume({
        body: {
          metadata: { name, annotations: { 'pv.kubernetes.io/provisioned-by': provisionerName } },
          spec: {
            capacity: { storage: pvc.spec?.resources?.requests?.storage ?? '1Gi' },
            accessModes: pvc.spec?.accessModes ?? ['ReadWriteOnce'],
            persistentVolumeReclaimPolicy: reclaim,
            storageClassName: cls,
            hostPath: { path, type: 'DirectoryOrCreate' },
            claimRef: objectRef('PersistentVolumeClaim', 'v1', pvc.metadata!),
          },
        },
      });
      this.log.info({ pvc: `${pvc.metadata!.namespace}/${pvc.metadata!.name}`, pv: name, path }, 'provisioned volume');
    } catch (e) {
      if ((e as { code?: number }).code !== 409) throw e;
    }
  }
}
