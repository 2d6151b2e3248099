// The destroy runbook's step: everything this incarnation owns goes, pods first.
import { clientServiceName, metricsServiceName } from '../../api/names.js';
import { memberSelector, type ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { deleteIfPresent, orAbsent, sleep } from '../kube.js';
import { Context } from '@temporalio/activity';
import { ownedBy } from './read.js';

/** Deletes everything the cluster owns: pods first (waiting for them), then services and claims. */
export async function deleteClusterResources({ kube }: Deps, ref: ClusterRef): Promise<string> {
  const { core } = kube;
  const sel = memberSelector(ref.name);
  const ours = <T extends { metadata?: { ownerReferences?: { uid?: string }[] } }>(items: T[]) =>
    items.filter((o) => ownedBy(o.metadata?.ownerReferences, ref.uid));
  const listPods = async () =>
    ours((await core.listNamespacedPod({ namespace: ref.namespace, labelSelector: sel })).items);
  const pods = await listPods();
  for (const p of pods)
    await deleteIfPresent(() => core.deleteNamespacedPod({ name: p.metadata!.name!, namespace: ref.namespace }));
  for (let i = 0; ; i++) {
    const left = await listPods();
    if (!left.length) break;
    if (i === 30)
      for (const p of left)
        await deleteIfPresent(() =>
          core.deleteNamespacedPod({
            name: p.metadata!.name!,
            namespace: ref.namespace,
            body: { gracePeriodSeconds: 0 },
          }),
        );
    Context.current().heartbeat(`waiting for ${left.length} pod(s) to terminate`);
    await sleep(1000);
  }
  for (const name of [ref.name, clientServiceName(ref.name), metricsServiceName(ref.name)]) {
    const svc = await core.readNamespacedService({ name, namespace: ref.namespace }).catch(orAbsent);
    if (ownedBy(svc?.metadata?.ownerReferences, ref.uid))
      await deleteIfPresent(() => core.deleteNamespacedService({ name, namespace: ref.namespace }));
  }
  const claims = ours(
    (await core.listNamespacedPersistentVolumeClaim({ namespace: ref.namespace, labelSelector: sel })).items,
  );
  for (const c of claims)
    await deleteIfPresent(() =>
      core.deleteNamespacedPersistentVolumeClaim({ name: c.metadata!.name!, namespace: ref.namespace }),
    );
  return `deleted ${pods.length} pod(s), 2 service(s), ${claims.length} claim(s)`;
}
