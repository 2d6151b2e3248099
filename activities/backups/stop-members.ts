// Disaster recovery: every old member stopped before the restored cluster starts.
import { memberSelector, type ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { deleteIfPresent, done, pollUntil, waiting } from '../kube.js';

/**
 * Stops every remaining member before the restore, so no old member serves beside the new cluster.
 * Never a force delete: a pod object goes only once its kubelet confirms the processes stopped, so a
 * member on an unreachable node holds the restore (until the node is back or its Node object is deleted).
 */
export async function deleteAllMemberPods({ kube }: Deps, ref: ClusterRef): Promise<number> {
  const { core } = kube;
  const pods = await core.listNamespacedPod({
    namespace: ref.namespace,
    labelSelector: memberSelector(ref.name),
  });
  for (const p of pods.items) {
    const name = p.metadata!.name!;
    await deleteIfPresent(() =>
      core.deleteNamespacedPod({ name, namespace: ref.namespace, body: { gracePeriodSeconds: 1 } }),
    );
  }
  return pollUntil(500, async () => {
    const left = (await core.listNamespacedPod({ namespace: ref.namespace, labelSelector: memberSelector(ref.name) }))
      .items;
    if (!left.length) return done(pods.items.length);
    const where = left.map((p) => `${p.metadata!.name} on ${p.spec?.nodeName ?? '?'}`).join(', ');
    return waiting(`waiting for the kubelet to confirm that member pod(s) stopped: ${where}`);
  });
}
