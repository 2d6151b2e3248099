// The finalizer that holds the EtcdCluster until its destroy runbook has finished.
import { finalizer, type ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { jsonPatch, orAbsent } from '../kube.js';
import { patchCluster, readCluster } from './read.js';

/** Adds the finalizer to this incarnation (by UID), unless it is there or the cluster is being deleted. */
export async function ensureFinalizer({ kube }: Deps, ref: ClusterRef): Promise<void> {
  const obj = await readCluster(kube, ref);
  if (
    !obj ||
    obj.metadata.uid !== ref.uid ||
    obj.metadata.deletionTimestamp ||
    obj.metadata.finalizers?.includes(finalizer)
  )
    return;
  await patchCluster(kube, ref, { metadata: { finalizers: [...(obj.metadata.finalizers ?? []), finalizer] } });
}

/** Removes the finalizer (a test-and-remove patch: another finalizer added meanwhile is kept). */
export async function removeFinalizer({ kube }: Deps, ref: ClusterRef): Promise<void> {
  const obj = await readCluster(kube, ref);
  if (!obj || obj.metadata.uid !== ref.uid) return;
  const idx = obj.metadata.finalizers?.indexOf(finalizer) ?? -1;
  if (idx < 0) return;
  const body = [
    { op: 'test', path: `/metadata/finalizers/${idx}`, value: finalizer },
    { op: 'remove', path: `/metadata/finalizers/${idx}` },
  ];
  await patchCluster(kube, ref, body, jsonPatch()).catch(orAbsent);
}
