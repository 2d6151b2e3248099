// Disaster recovery's first step: the freshest source by revision, a surviving member or a backup of this cluster.
import { ApplicationFailure } from '@temporalio/common';
import type { BackupRecord } from '../../workflows/types.js';
import { group, plural, version, type ClusterRef } from '../../api/etcdcluster.js';
import { memberStatus, retry } from '../etcd-client.js';
import { notThisCluster, type ThisCluster } from '../backup-identity.js';
import { recordEvent } from '../cluster/status.js';
import type { Deps } from '../deps.js';
import { corrupt, memberEndpoints, snapshotVia } from './snapshot.js';
import { listBackupsFor, toolURL } from './tool.js';

export interface RestoreSource {
  snapshot: string;
  revision: number;
  source: string;
  url: string;
  newestKnownRevision: number;
}

type Survivor = { name: string; url: string; revision: number };

/** The freshest source by revision: a snapshot of the surviving member with the highest revision, or the newest valid backup
 *  of this cluster when that is newer. */
export async function chooseRestoreSource(d: Deps, ref: ClusterRef): Promise<RestoreSource> {
  const { kube, log } = d;
  const url = await toolURL(kube, ref).catch(() => {
    throw ApplicationFailure.nonRetryable(
      `cannot recover ${ref.namespace}/${ref.name}: its backup tool is not running (spec.backup is needed for disaster recovery)`,
      'NoRestoreSource',
    );
  });
  // Only backups of this cluster: same object UID or etcd cluster ID (see backup-identity.ts).
  const obj = (await kube.custom.getNamespacedCustomObject({
    group,
    version,
    plural,
    namespace: ref.namespace,
    name: ref.name,
  })) as { metadata: { uid: string; creationTimestamp: string }; status?: { clusterID?: string } };
  const self = { uid: ref.uid, etcdClusterId: obj.status?.clusterID, createdAt: obj.metadata.creationTimestamp };
  // The seed downloads from this tool: with its token.
  const all = await listBackupsFor(kube, ref, ref, url);
  const backups = all.filter((b) => !notThisCluster(b, self));
  const newest = backups.find((b) => b.valid);
  // Even a corrupted backup proves the cluster reached its revision: count it in the loss.
  const backupsReached = Math.max(0, ...backups.map((b) => b.revision));
  const survivors = await survivorsByRevision(d, ref);
  // The freshest source by revision: a survivor, unless a valid backup of this cluster is newer than every survivor.
  if (survivors.length && survivors[0].revision >= (newest?.revision ?? 0)) {
    try {
      const rec = await snapshotVia(
        d,
        ref,
        [survivors[0].name],
        `disaster recovery from surviving member ${survivors[0].name}`,
      );
      return {
        snapshot: rec.name,
        revision: rec.revision,
        source: `surviving member ${survivors[0].name}`,
        url,
        newestKnownRevision: Math.max(rec.revision, backupsReached),
      };
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'snapshot of the survivor failed; falling back to backups');
    }
  }
  await reportSkippedBackups(d, ref, all, self);
  if (!newest) {
    throw ApplicationFailure.nonRetryable(
      `cannot recover ${ref.namespace}/${ref.name}: no member survives and ` +
        'no valid backup of this cluster exists; nothing was deleted',
      'NoRestoreSource',
    );
  }
  const best = survivors[0];
  const newer =
    best && newest.revision > best.revision ? ` (newer than surviving member ${best.name} at ${best.revision})` : '';
  return {
    snapshot: newest.name,
    revision: newest.revision,
    source: `backup ${newest.name} taken ${newest.time}${newer}`,
    url,
    newestKnownRevision: Math.max(backupsReached, best?.revision ?? 0),
  };
}

/** The members that answer, freshest first; one etcd flagged CORRUPT is never a source (an Event says so). */
async function survivorsByRevision({ kube, log }: Deps, ref: ClusterRef): Promise<Survivor[]> {
  const survivors: Survivor[] = [];
  // Each member's Status, asked once: a running member slow to answer (a loaded node) is asked again before it
  // counts as gone (taken for gone, an older backup could be restored over what only it holds).
  const members = await memberEndpoints(kube, ref);
  const statuses = await Promise.all(
    members.map((m) => retry((i) => memberStatus(m.url, i ? 5000 : 2000), { tries: 3 }).catch(() => undefined)),
  );
  for (const [i, m] of members.entries()) {
    const s = statuses[i];
    if (!s) continue; // gone
    // A member etcd flagged CORRUPT (its data differs from the others') is never a source.
    if (corrupt(s)) {
      const why = `not copying data from ${m.name}: etcd raised CORRUPT for it`;
      await recordEvent({ kube, log }, ref, 'Warning', 'CorruptSourceSkipped', why);
    } else survivors.push({ ...m, revision: Number(s.header.revision) });
  }
  survivors.sort((a, b) => b.revision - a.revision);
  return survivors;
}

/** Events for the backups a recovery passes over: another cluster's, and this cluster's corrupted ones. */
async function reportSkippedBackups({ kube, log }: Deps, ref: ClusterRef, all: BackupRecord[], self: ThisCluster) {
  const backups = all.filter((b) => !notThisCluster(b, self));
  const foreign = all.filter((b) => notThisCluster(b, self));
  if (foreign.length) {
    await recordEvent(
      { kube, log },
      ref,
      'Warning',
      'BackupNotThisCluster',
      `skipping ${foreign.length} backup(s) of another cluster: ` +
        foreign
          .slice(0, 3)
          .map((b) => `${b.name} ${notThisCluster(b, self)}`)
          .join('; '),
    );
  }
  for (const bad of backups.filter((b) => !b.valid))
    await recordEvent({ kube, log }, ref, 'Warning', 'BackupCorrupt', `skipping backup ${bad.name}: ${bad.problem}`);
}
