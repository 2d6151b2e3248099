// A member's data claim (spec.pod.persistentVolumeClaimSpec): created, adopted only by owner UID, deleted only if ours.
import { ApplicationFailure } from '@temporalio/common';
import type { ClusterRef, EtcdClusterSpec } from '../../api/etcdcluster.js';
import { dataClaimName } from '../../api/names.js';
import { memberClaim } from '../member-pod.js';
import type { Deps } from '../deps.js';
import { createIfAbsent, deleteIfPresent, type Kube } from '../kube.js';
import { ownedBy, readClaim } from '../cluster/read.js';

/** The member's claim, adopted by owner UID only: a claim of the same name left by another cluster (or by
 *  nobody) holds someone else's data, and a member started on it would join with the wrong history. */
export async function ensureMemberClaim(
  kube: Kube,
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  member: string,
): Promise<void> {
  const body = memberClaim(ref, spec, member);
  await createIfAbsent(() => kube.core.createNamespacedPersistentVolumeClaim({ namespace: ref.namespace, body }));
  const claim = await readClaim(kube, ref, member);
  if (!claim) throw new Error(`claim ${dataClaimName(member)} disappeared right after it was created`);
  if (!ownedBy(claim.metadata?.ownerReferences, ref.uid)) {
    const owners =
      (claim.metadata?.ownerReferences ?? []).map((o) => `${o.kind} ${o.name} (uid ${o.uid})`).join(', ') || 'no owner';
    throw ApplicationFailure.nonRetryable(
      `claim ${ref.namespace}/${dataClaimName(member)} exists but is not this cluster's ` +
        `(uid ${ref.uid}; it has ${owners}): its data is not adopted by name; delete or rename it if it is not needed`,
      'ClaimNotOurs',
    );
  }
}

/** Deletes the member's claim, only if this cluster owns it (by UID). */
export async function deleteMemberClaim({ kube }: Deps, ref: ClusterRef, member: string): Promise<void> {
  const claim = await readClaim(kube, ref, member);
  if (!claim || !ownedBy(claim.metadata?.ownerReferences, ref.uid)) return;
  await deleteIfPresent(() =>
    kube.core.deleteNamespacedPersistentVolumeClaim({
      name: dataClaimName(member),
      namespace: ref.namespace,
      body: { preconditions: { uid: claim.metadata!.uid } },
    }),
  );
}
