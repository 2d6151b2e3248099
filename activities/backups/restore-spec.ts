// spec.restore: a new cluster starts from a backup of another (or an earlier incarnation of itself).
import { ApplicationFailure } from '@temporalio/common';
import { group, plural, version, type ClusterRef, type RestoreSpec } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { done, pollUntil, waiting } from '../kube.js';
import type { RestoreSource } from './recovery-source.js';
import { listBackupsFor, toolURL } from './tool.js';

/**
 * The backup a new cluster starts from (spec.restore), read through this cluster's own backup tool: the one
 * named, else the newest valid backup of the source cluster's incarnation (spec.restore.uid, else the live
 * source cluster's UID, else any). Waits for the tool to be ready.
 */
export async function chooseBackupToRestore(
  { kube }: Deps,
  ref: ClusterRef,
  restore: RestoreSpec,
): Promise<RestoreSource & { time: string }> {
  const ns = restore.namespace ?? ref.namespace;
  const from = `${ns}/${restore.cluster}`;
  let url = await pollUntil(1000, () => toolURL(kube, ref).then(done, (e: Error) => waiting(e.message)));
  // A claim holds only its own cluster's backups: read the source's claim through the source's backup tool
  // (its Service's pod, which also serves the download to the new seed's init container).
  const health = (await (await fetch(`${url}/healthz`)).json()) as { destination?: string };
  let owner: ClusterRef = ref;
  if (!health.destination?.startsWith('s3://')) {
    owner = { namespace: ns, name: restore.cluster, uid: '' };
    url = await toolURL(kube, owner).catch((e: Error) => {
      throw ApplicationFailure.nonRetryable(
        `cannot start ${ref.namespace}/${ref.name} from ${from}: backups on a claim are read through their ` +
          `cluster's own backup tool, and ${e.message} (an S3 destination is readable without it)`,
        'NoRestoreSource',
      );
    });
  }
  // The seed downloads from that tool: with its token, in this cluster's namespace.
  const all = await listBackupsFor(kube, ref, owner, url, from);
  let uid = restore.uid;
  if (!uid && !restore.backup) {
    const live = (await kube.custom
      .getNamespacedCustomObject({ group, version, plural, namespace: ns, name: restore.cluster })
      .catch(() => undefined)) as { metadata?: { uid?: string } } | undefined;
    uid = live?.metadata?.uid;
  }
  const fits = all.filter(
    (b) => b.valid && (restore.backup ? b.name === restore.backup : !uid || b.cluster?.uid === uid),
  );
  const best = fits[0];
  if (!best) {
    const which = restore.backup ?? `a valid backup${uid ? ` of incarnation ${uid}` : ''}`;
    throw ApplicationFailure.nonRetryable(
      `cannot start ${ref.namespace}/${ref.name} from ${from}: ${which} not found among its ${all.length} backup(s)`,
      'NoRestoreSource',
    );
  }
  return {
    snapshot: best.name,
    revision: best.revision,
    source: `backup ${best.location ?? best.name} of ${from} (uid ${best.cluster?.uid ?? '?'}) taken ${best.time}`,
    url,
    newestKnownRevision: best.revision,
    time: best.time,
  };
}
