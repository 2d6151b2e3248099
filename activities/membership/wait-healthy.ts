// Join, last step (and after any restart in place): the member serves as a started voter.
import type { ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { healthOf } from '../etcd-client.js';
import { done, firstLine, pollUntil, waiting } from '../kube.js';
import { joinNudger } from './join-nudge.js';
import { findMember, listMembers, statusOf } from './view.js';

/** Waits until the member serves on its own endpoint as a started voter that knows the leader (alarms do not matter). */
export async function waitMemberHealthy({ kube }: Deps, ref: ClusterRef, member: string): Promise<string> {
  const nudger = joinNudger(kube, ref, member);
  return pollUntil(200, async () => {
    const s = await statusOf(kube, ref, member).catch((e: Error) => e);
    if (s instanceof Error) return nudger.nudge(`${member}: ${firstLine(s)}`);
    try {
      const me = findMember(await listMembers(kube, ref), ref, member);
      if (healthOf(s).healthy && me?.name === member)
        return done(`healthy, etcd ${s.version}, raft index ${s.raftIndex}${await nudger.done()}`);
      return waiting(
        `${member}: ${me ? (me.isLearner ? 'learner' : me.name ? 'no leader' : 'not started') : 'not a member'}`,
      );
    } catch (e) {
      return waiting(`${member}: ${firstLine(e)}`);
    }
  });
}
