// Which cluster a backup belongs to (issue 12): every snapshot's record names the EtcdCluster (namespace,
// name, object UID) and the etcd cluster ID it was taken from, and a restore considers only backups of
// this cluster. Pure, so the tool, the activities and unit tests share it; issue 19's manifests extend it.
import type { BackupIdentity, BackupRecord } from '../workflows/types.js';

/** Query parameters that tell the backup tool whose snapshot it takes. */
export function identityParams(id: BackupIdentity): Record<string, string> {
  return Object.fromEntries(
    Object.entries({ namespace: id.namespace, cluster: id.name, uid: id.uid }).filter(
      (e): e is [string, string] => !!e[1],
    ),
  );
}

/** The identity the tool records, from those parameters and the etcd cluster ID the member reported. */
export function identityFrom(q: URLSearchParams, etcdClusterId?: string): BackupIdentity {
  const id: BackupIdentity = {
    namespace: q.get('namespace') ?? undefined,
    name: q.get('cluster') ?? undefined,
    uid: q.get('uid') ?? undefined,
    etcdClusterId,
  };
  return Object.fromEntries(Object.entries(id).filter((e) => !!e[1])) as BackupIdentity;
}

export interface ThisCluster {
  uid: string;
  etcdClusterId?: string;
  createdAt: string;
}

/**
 * Why a backup is not this cluster's ('' when it is): the same object UID or the same etcd cluster ID
 * proves it; a record from before identities were recorded counts only if taken after this object was
 * created (the tool's claim outlives a deleted cluster, and a new one of the same name must not restore
 * the old one's data).
 */
export function notThisCluster(rec: BackupRecord, c: ThisCluster): string {
  const id = rec.cluster;
  if (id?.uid === c.uid || (!!id?.etcdClusterId && id.etcdClusterId === c.etcdClusterId)) return '';
  if (id?.uid || id?.etcdClusterId)
    return `taken from another cluster (uid ${id.uid ?? '?'}, etcd cluster ID ${id.etcdClusterId ?? '?'})`;
  if (Date.parse(rec.time) >= Date.parse(c.createdAt)) return '';
  return `records no cluster and was taken ${rec.time}, before this cluster was created (${c.createdAt})`;
}
