// Leave, step 2 (the etcd call of the retireMember runbook), and the undo of a join stopped before its promotion.
import type { ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { deadline } from '../etcd-client.js';
import { recordEvent } from '../cluster/status.js';
import { findMember, listMembers, onCluster, statusOf, whileRefused } from './view.js';
import type { Kube } from '../kube.js';
import { checkClusterHealthy } from './health-gate.js';
import { moveLeaderAway } from './leadership.js';

/** The member list, asked of the others first (the member leaving may be the one that cannot answer). */
const listFromOthers = (kube: Kube, ref: ClusterRef, member: string) =>
  listMembers(kube, ref, [member]).catch(() => listMembers(kube, ref));

/** MemberRemove; absent counts as done. Refuses to remove the leader (move it first). */
export async function removeMember(d: Deps, ref: ClusterRef, member: string, reason: string): Promise<string> {
  const members = await listFromOthers(d.kube, ref, member);
  const me = findMember(members, ref, member);
  if (!me) return 'already removed';
  const s = await statusOf(d.kube, ref, member).catch(() => undefined);
  if (s && s.leader === me.ID && members.filter((m) => !m.isLearner).length > 1) {
    throw new Error(`${member} is the leader: move leadership before removing it`);
  }
  const refused = { note: '' };
  await whileRefused(
    () => onCluster(d.kube, ref, (c) => c.cluster.memberRemove({ ID: me.ID }, deadline(5000)), [member]),
    refused,
  );
  await recordEvent(d, ref, 'Normal', 'MemberRemoved', `removed ${member} from etcd: ${reason}`);
  return refused.note ? `removed (${refused.note})` : 'removed';
}

/** The etcd part of the retireMember runbook in one activity (issue 17: one round trip, not three): the health gate in
 *  etcd's linearizable view, leadership moved away from the member (unless dead), then MemberRemove — the same calls
 *  in the same order as the three activities. A retry runs them again: a removed member is 'not a member' to the
 *  leadership step and 'already removed' to the last. Says what each step found. */
export async function retireFromEtcd(
  d: Deps,
  ref: ClusterRef,
  member: string,
  reason: string,
  opts: { dead?: boolean } = {},
): Promise<string> {
  // A dead member is the reason for the change: the gate checks everyone else.
  const healthy = await checkClusterHealthy(d, ref, opts.dead ? [member] : [], opts.dead ? -1 : undefined);
  const leadership = opts.dead ? 'dead: leadership not checked' : await moveLeaderAway(d, ref, member);
  return `${healthy}; ${leadership}; ${await removeMember(d, ref, member, reason)}`;
}

/** Undoes a join that stopped before its promotion: removes the member while it is a learner (never a voter:
 *  a promoted member stays, its join finished). Says 'voter' when it stays, else what it did. */
export async function removeLearner(
  d: Deps,
  ref: ClusterRef,
  member: string,
  reason: string,
): Promise<'voter' | 'removed' | 'not a member'> {
  const me = findMember(await listFromOthers(d.kube, ref, member), ref, member);
  if (!me) return 'not a member';
  if (!me.isLearner) return 'voter';
  await onCluster(d.kube, ref, (c) => c.cluster.memberRemove({ ID: me.ID }, deadline(5000)), [member]);
  await recordEvent(d, ref, 'Normal', 'MemberRemoved', `removed learner ${member} from etcd: ${reason}`);
  return 'removed';
}
