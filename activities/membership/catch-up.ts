// Join, step 3 (after the pod runs): the learner has applied (close to) everything the leader has.
import { memberNameOf } from '../../api/names.js';
import type { ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { done, firstLine, pollUntil, waiting } from '../kube.js';
import { joinNudger } from './join-nudge.js';
import { listMembers, statusOf } from './view.js';

/** Waits until the learner serves on its own endpoint and has applied (close to) everything the leader has. */
export async function waitLearnerCaughtUp({ kube }: Deps, ref: ClusterRef, member: string): Promise<string> {
  const nudger = joinNudger(kube, ref, member);
  return pollUntil(200, async () => {
    const mine = await statusOf(kube, ref, member).catch((e: Error) => e);
    if (mine instanceof Error) return nudger.nudge(`waiting for learner ${member}: ${firstLine(mine)}`);
    try {
      const members = await listMembers(kube, ref, [member]);
      const leader = members.find((m) => m.ID === mine.leader);
      if (!leader) return waiting(`learner ${member} knows no leader`);
      const ls = await statusOf(kube, ref, memberNameOf(leader));
      const have = BigInt(mine.raftAppliedIndex || mine.raftIndex);
      const want = BigInt(ls.raftIndex);
      // Same rule as etcd-io's operator: within 10 % of the leader (and the promote call re-checks).
      if (want === 0n || have * 10n >= want * 9n)
        return done(`caught up at raft index ${have} of ${want}${await nudger.done()}`);
      return waiting(`learner ${member} at ${have}/${want}`);
    } catch (e) {
      return waiting(`waiting for learner ${member}: ${firstLine(e)}`);
    }
  });
}
