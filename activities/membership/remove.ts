// Leave, step 2 (the etcd call of the retireMember runbook), and the undo of a join stopped before its promotion.
import type { ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { deadline } from '../etcd-client.js';
import { recordEvent } from '../cluster/status.js';
import { findMember, whileRefused, withView, type ClusterView } from './view.js';
import { healthGate } from './health-gate.js';
import { leadershipMovedAway } from './leadership.js';

/** The member list, asked of the others first (the member leaving may be the one that cannot answer). */
const listFromOthers = (v: ClusterView, member: string) => v.listMembers([member]).catch(() => v.listMembers());

/** memberRemoved as an activity of its own (on a view of its own). */
export const removeMember = (d: Deps, ref: ClusterRef, member: string, reason: string): Promise<string> =>
  withView(d.kube, ref, (v) => memberRemoved(d, v, member, reason));

/** MemberRemove; absent counts as done. Refuses to remove the leader (move it first). */
export async function memberRemoved(d: Deps, v: ClusterView, member: string, reason: string): Promise<string> {
  const members = await listFromOthers(v, member);
  const me = findMember(members, v.ref, member);
  if (!me) return 'already removed';
  const s = await v.statusOf(member).catch(() => undefined);
  if (s && s.leader === me.ID && members.filter((m) => !m.isLearner).length > 1) {
    throw new Error(`${member} is the leader: move leadership before removing it`);
  }
  const refused = { note: '' };
  await whileRefused(
    () => v.onCluster((c) => c.cluster.memberRemove({ ID: me.ID }, deadline(5000)), [member]),
    refused,
  );
  await recordEvent(d, v.ref, 'Normal', 'MemberRemoved', `removed ${member} from etcd: ${reason}`);
  return refused.note ? `removed (${refused.note})` : 'removed';
}

/** The etcd part of the retireMember runbook in one activity (issue 17: one round trip, not three): the health gate in
 *  etcd's linearizable view, leadership moved away from the member (unless dead), then MemberRemove — the same calls
 *  in the same order as the three activities, on one view (the member pods read once, one client per member). A retry
 *  runs them again: a removed member is 'not a member' to the leadership step and 'already removed' to the last. Says
 *  what each step found. `removed`: members removed earlier in the same operation, left out of the view. */
export async function retireFromEtcd(
  d: Deps,
  ref: ClusterRef,
  member: string,
  reason: string,
  opts: { dead?: boolean; removed?: string[] } = {},
): Promise<string> {
  // Members this operation removed just before are never asked: their pods may still run an etcd that is stopping
  // after its removal, where a call waits out its whole deadline.
  return withView(
    d.kube,
    ref,
    async (v) => {
      // A dead member is the reason for the change: the gate checks everyone else.
      const healthy = await healthGate(v, opts.dead ? [member] : [], opts.dead ? -1 : undefined);
      const leadership = opts.dead ? 'dead: leadership not checked' : await leadershipMovedAway(d, v, member);
      return `${healthy}; ${leadership}; ${await memberRemoved(d, v, member, reason)}`;
    },
    opts.removed,
  );
}

/** Undoes a join that stopped before its promotion: removes the member while it is a learner (never a voter:
 *  a promoted member stays, its join finished). Says 'voter' when it stays, else what it did. */
export async function removeLearner(
  d: Deps,
  ref: ClusterRef,
  member: string,
  reason: string,
): Promise<'voter' | 'removed' | 'not a member'> {
  return withView(d.kube, ref, async (v) => {
    const me = findMember(await listFromOthers(v, member), ref, member);
    if (!me) return 'not a member';
    if (!me.isLearner) return 'voter';
    await v.onCluster((c) => c.cluster.memberRemove({ ID: me.ID }, deadline(5000)), [member]);
    await recordEvent(d, ref, 'Normal', 'MemberRemoved', `removed learner ${member} from etcd: ${reason}`);
    return 'removed';
  });
}
