// The cluster's Services, PodDisruptionBudget and NetworkPolicy (builders: owned.ts), brought to the spec on each pass.
import type { ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { apply, deleteIfPresent, orAbsent } from '../kube.js';
import { clusterObjects, membersNetworkPolicy } from '../owned.js';
import { readCluster } from './read.js';

/** The headless service behind member DNS names, the client service on 2379, the metrics service, the disruption
 *  budget and (spec.networkPolicy) the members' NetworkPolicy (builders: owned.ts), applied: a deleted or edited one
 *  is brought back; a NetworkPolicy the spec no longer asks for is deleted. */
export async function ensureServices({ kube, log, controllerNamespace }: Deps, ref: ClusterRef): Promise<void> {
  const spec = (await readCluster(kube, ref))?.spec;
  // All at once: no object needs another first, and a create under load pays one round of API calls, not five.
  await Promise.all([
    ...clusterObjects(ref, spec?.networkPolicy, controllerNamespace).map(async (obj) => {
      if ((await apply(kube, obj)) === 'not ours')
        log.warn(
          { cluster: `${ref.namespace}/${ref.name}`, object: `${obj.kind}/${obj.metadata.name}` },
          'exists but is not ours: left as it is',
        );
    }),
    spec && !spec.networkPolicy?.enabled ? removeNetworkPolicy({ kube, log }, ref) : undefined,
  ]);
}

/** Deletes the members' NetworkPolicy when this cluster owns one (turned off in the spec); anyone else's stays. */
async function removeNetworkPolicy({ kube, log }: Deps, ref: ClusterRef): Promise<void> {
  const policy = membersNetworkPolicy(ref, { enabled: false }, '');
  const existing = await kube.objects.read(policy).catch(orAbsent);
  if (!existing?.metadata?.ownerReferences?.some((o) => o.uid === ref.uid)) return;
  if ((await deleteIfPresent(() => kube.objects.delete(policy))) === 'deleted')
    log.info({ cluster: `${ref.namespace}/${ref.name}` }, 'NetworkPolicy removed: spec.networkPolicy is off');
}
