// A snapshot through the backup tool, and which members may be its source (running, owned, not flagged CORRUPT).
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { BackupRecord } from '../../workflows/types.js';
import type { ClusterRef } from '../../api/etcdcluster.js';
import { clientURLOf, memberStatus, statusProblems, type EtcdStatus } from '../etcd-client.js';
import { runningMemberPods, type Kube } from '../kube.js';
import { identityParams } from '../backup-identity.js';
import type { Deps } from '../deps.js';
import { backupToken, ensureBackupTool, specOf, toolURL } from './tool.js';

/** A destination failing this many times in a row, or for this long, fails the backup (each try is a new snapshot). */
const destinationAttempts = 4;
const destinationGraceMs = 60_000;
/** etcd raised CORRUPT for the member that gave this Status. */
export const corrupt = (s: EtcdStatus) =>
  statusProblems(s.errors).alarms.some((a) => a.alarm === 'CORRUPT' && a.memberId === s.header.member_id);

/** The cluster's running member pods (of this incarnation) and their client URLs. */
export async function memberEndpoints(kube: Kube, ref: ClusterRef): Promise<{ name: string; url: string }[]> {
  return (await runningMemberPods(kube.core, ref))
    .filter((p) => p.metadata?.ownerReferences?.some((o) => o.uid === ref.uid))
    .map((p) => ({ name: p.metadata!.name!, url: clientURLOf(p.status!.podIP!) }));
}

/** Members etcd has not flagged CORRUPT (a member that does not answer is left to the backup tool to skip). */
export async function trusted(eps: { name: string; url: string }[]): Promise<{ name: string; url: string }[]> {
  const flagged = await Promise.all(eps.map((m) => memberStatus(m.url).then(corrupt, () => false)));
  return eps.filter((_, i) => !flagged[i]);
}

/** A snapshot through the tool, of the named members (the tool knows their addresses). */
export async function snapshotVia(d: Deps, ref: ClusterRef, members: string[], reason: string): Promise<BackupRecord> {
  const { kube } = d;
  const url = await toolURL(kube, ref);
  const who = identityParams({ namespace: ref.namespace, name: ref.name, uid: ref.uid });
  const q = new URLSearchParams({ members: members.join(','), reason, ...who });
  const res = await fetch(`${url}/v1/backupnow?${q}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await backupToken(kube, ref)}` },
  });
  const body = (await res.json()) as BackupRecord & { error?: string; destination?: boolean };
  if (res.ok) return body;
  if (res.status === 500 && body.error === 'no endpoints') {
    // A tool from before issue 18 (it wanted endpoints=): the workflow applied it long ago, roll it now.
    const spec = await specOf(kube, ref);
    if (spec?.backup) await ensureBackupTool(d, ref, spec.backup);
    throw new Error(`backup tool of ${ref.namespace}/${ref.name} is not ready yet: rolled to this version`);
  }
  // The destination (S3) failed though the snapshot was good: tried again for a short while (a blip), then the
  // backup fails with the destination's own error instead of retrying until its 10 min deadline.
  const { attempt, scheduledTimestampMs } = Context.current().info;
  if (body.destination && (attempt >= destinationAttempts || Date.now() - scheduledTimestampMs > destinationGraceMs))
    throw ApplicationFailure.nonRetryable(
      `backup failed after ${attempt} attempt(s): ${body.error}`,
      'BackupDestinationFailed',
    );
  throw new Error(`backup failed: ${body.error}`);
}
