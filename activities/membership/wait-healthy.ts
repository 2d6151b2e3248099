// Join, last step (and after any restart in place): the member serves as a started voter. A static bootstrap's members,
// all together.
import type { ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import type { IMember } from 'etcd3';
import { healthOf, type EtcdStatus } from '../etcd-client.js';
import { memberPods } from '../cluster/read.js';
import { done, firstLine, pollUntil, waiting } from '../kube.js';
import { startingPodLook } from '../members/pod.js';
import { joinNudger } from './join-nudge.js';
import { ClusterView, findMember } from './view.js';

/** Waits until the member serves on its own endpoint as a started voter that knows the leader (alarms do not matter). */
export async function waitMemberHealthy({ kube }: Deps, ref: ClusterRef, member: string): Promise<string> {
  const nudger = joinNudger(kube, ref, member);
  // One view per look: the member pods read once, the member's Status and the list on the kept clients.
  return pollUntil(200, async () => {
    const view = await ClusterView.open(kube, ref);
    const s = await view.statusOf(member).catch((e: Error) => e);
    if (s instanceof Error) return nudger.nudge(`${member}: ${firstLine(s)}`);
    const seen = await servesAsVoter(view, member, s, () => view.listMembers());
    return seen.serves ? done(`${seen.said}${await nudger.done()}`) : waiting(seen.said);
  });
}

/** The members of a static bootstrap, waited for together in one activity (issue 17: with 50 clusters created at
 *  once, two waits per member held 300 of the worker's activity slots and each read Kubernetes 5 times a second).
 *  Each member: its pod runs with an address (startingPodLook: one gone fails the wait at once), then it serves as a
 *  started voter (waitMemberHealthy's rule). A new cluster has no snapshot to catch up by: no nudge. */
export async function waitMembersHealthy({ kube }: Deps, ref: ClusterRef, members: string[]): Promise<string> {
  const serving = new Map<string, string>();
  return pollUntil(200, async () => {
    const pods = new Map((await memberPods(kube, ref)).map((p) => [p.metadata!.name!, p]));
    const view = ClusterView.ofPods(ref, [...pods.values()]);
    let list: Promise<IMember[]> | undefined; // asked once per look, when a member answers
    const pending = await Promise.all(
      members
        .filter((m) => !serving.has(m))
        .map(async (m) => {
          const started = startingPodLook(m, pods.get(m));
          if ('waiting' in started) return started.waiting;
          const s = await view.statusOf(m).catch((e: Error) => e);
          if (s instanceof Error) return `${m}: ${firstLine(s)}`;
          const seen = await servesAsVoter(view, m, s, () => (list ??= view.listMembers()));
          if (!seen.serves) return seen.said;
          serving.set(m, seen.said);
          return undefined;
        }),
    );
    const left = pending.filter((x): x is string => !!x);
    if (left.length) return waiting(left.join('; '));
    return done(members.map((m) => `${m} ${serving.get(m)}`).join('; '));
  });
}

/** The health rule of a join's last step: the member answered its own Status knowing a leader, and etcd's
 *  (linearizable) member list has it started under its name. */
async function servesAsVoter(
  view: ClusterView,
  member: string,
  s: EtcdStatus,
  list: () => Promise<IMember[]>,
): Promise<{ serves: boolean; said: string }> {
  try {
    const me = findMember(await list(), view.ref, member);
    if (healthOf(s).healthy && me?.name === member)
      return { serves: true, said: `healthy, etcd ${s.version}, raft index ${s.raftIndex}` };
    const why = me ? (me.isLearner ? 'learner' : me.name ? 'no leader' : 'not started') : 'not a member';
    return { serves: false, said: `${member}: ${why}` };
  } catch (e) {
    return { serves: false, said: `${member}: ${firstLine(e)}` };
  }
}
