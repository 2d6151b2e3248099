// Reads of the cluster's own objects, shared by its activities: the EtcdCluster (and its one patch helper), its member
// pods and claims.
import type { V1Pod } from '@kubernetes/client-node';
import type { ClaimView } from '../../workflows/evidence.js';
import { memberIndex } from '../../api/names.js';
import { group, memberLabel, memberSelector, plural, version, type ClusterRef } from '../../api/etcdcluster.js';
import type { EtcdClusterSpec } from '../../api/etcdcluster.js';
import { notePods } from '../etcd-client.js';
import { mergePatch, orAbsent, type Kube } from '../kube.js';
import { dataClaimName } from '../../api/names.js';

/** The EtcdCluster as the API server returns it (server-set fields present). */
export interface ClusterObject {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    generation?: number;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    finalizers?: string[];
    annotations?: Record<string, string>;
  };
  spec?: Partial<EtcdClusterSpec>;
  status?: Record<string, unknown>;
}

type Named = Pick<ClusterRef, 'namespace' | 'name'>;

/** The EtcdCluster, or undefined when it is gone. */
export const readCluster = (kube: Kube, ref: Named): Promise<ClusterObject | undefined> =>
  kube.custom
    .getNamespacedCustomObject({ group, version, plural, namespace: ref.namespace, name: ref.name })
    .then((o) => o as ClusterObject, orAbsent);

/** Patches the EtcdCluster's metadata or spec (a merge patch unless told otherwise). */
export const patchCluster = (kube: Kube, ref: Named, body: object, how = mergePatch()) =>
  kube.custom.patchNamespacedCustomObject(
    { group, version, plural, namespace: ref.namespace, name: ref.name, body },
    how,
  );

export const ownedBy = (owners: { uid?: string }[] | undefined, uid: string) => !!owners?.some((o) => o.uid === uid);

/** Pods with the cluster's member labels and a member name of it (any owner). */
export async function memberPods(kube: Kube, ref: Named): Promise<V1Pod[]> {
  const list = await kube.core.listNamespacedPod({ namespace: ref.namespace, labelSelector: memberSelector(ref.name) });
  const pods = list.items.filter((p) => memberIndex(ref.name, p.metadata!.name!) >= 0);
  await notePods(kube.core, pods); // TLS members: dialled with the controller's certificate
  return pods;
}

/** The member data claims this cluster owns (by UID). */
export async function memberClaims(kube: Kube, ref: Named, uid: string): Promise<ClaimView[]> {
  const list = await kube.core.listNamespacedPersistentVolumeClaim({
    namespace: ref.namespace,
    labelSelector: memberSelector(ref.name),
  });
  return list.items.flatMap((c) => {
    const member = c.metadata?.labels?.[memberLabel];
    const ours = !!member && c.metadata!.name === dataClaimName(member) && ownedBy(c.metadata?.ownerReferences, uid);
    return ours ? [{ member, deleting: !!c.metadata?.deletionTimestamp, lost: c.status?.phase === 'Lost' }] : [];
  });
}

/** The member's data claim, or undefined. */
export const readClaim = (kube: Kube, ref: Named, member: string) =>
  kube.core
    .readNamespacedPersistentVolumeClaim({ name: dataClaimName(member), namespace: ref.namespace })
    .catch(orAbsent);
