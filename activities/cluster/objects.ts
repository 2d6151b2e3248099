// The cluster's Services and PodDisruptionBudget (builders: owned.ts), brought to the spec on each pass.
import type { ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { apply } from '../kube.js';
import { clusterObjects } from '../owned.js';

/** The headless service behind member DNS names, the client service on 2379, the metrics service and the
 *  disruption budget (builders: owned.ts), applied: a deleted or edited one is brought back. */
export async function ensureServices({ kube, log }: Deps, ref: ClusterRef): Promise<void> {
  for (const obj of clusterObjects(ref)) {
    if ((await apply(kube, obj)) === 'not ours')
      log.warn(
        { cluster: `${ref.namespace}/${ref.name}`, object: `${obj.kind}/${obj.metadata.name}` },
        'exists but is not ours: left as it is',
      );
  }
}
