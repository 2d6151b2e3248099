// What the controller tells the cluster's users: the EtcdCluster's status and Kubernetes Events on it.
import { EtcdClusterStatus, apiVersion, group, kind, plural, version, type ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { apiMessage, fieldManager, isNotFound, mergePatch } from '../kube.js';

/** Writes the status subresource; a cluster already gone has nothing to report to. */
export async function publishStatus({ kube }: Deps, ref: ClusterRef, status: EtcdClusterStatus): Promise<void> {
  try {
    await kube.custom.patchNamespacedCustomObjectStatus(
      { group, version, plural, namespace: ref.namespace, name: ref.name, body: { status } },
      mergePatch(),
    );
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
}

/** An Event on the EtcdCluster (and a log line); an Event the API server refuses is only logged. */
export async function recordEvent(
  { kube, log }: Deps,
  ref: ClusterRef,
  type: 'Normal' | 'Warning',
  reason: string,
  message: string,
): Promise<void> {
  const t = new Date();
  log.info({ cluster: `${ref.namespace}/${ref.name}`, event: reason, type }, message);
  await kube.core
    .createNamespacedEvent({
      namespace: ref.namespace,
      body: {
        metadata: { generateName: `${ref.name}.`, namespace: ref.namespace },
        involvedObject: {
          apiVersion,
          kind,
          name: ref.name,
          namespace: ref.namespace,
          uid: ref.uid,
        },
        type,
        reason,
        message: message.slice(0, 1000),
        source: { component: fieldManager },
        firstTimestamp: t,
        lastTimestamp: t,
        count: 1,
        reportingComponent: fieldManager,
        reportingInstance: fieldManager,
      },
    })
    .catch((e) => log.warn({ err: apiMessage(e) }, 'event not recorded'));
}
