// The gate before every membership change: enough healthy voters (the etcd layer's healthOf), before and after it.
import { memberNameOf, quorum } from '../../api/names.js';
import type { ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { healthOf } from '../etcd-client.js';
import { withView, type ClusterView } from './view.js';

/** The health gate as an activity of its own (healthGate, on a view of its own). */
export const checkClusterHealthy = (
  { kube }: Deps,
  ref: ClusterRef,
  ignore: string[] = [],
  votersDelta?: -1 | 0 | 1,
): Promise<string> => withView(kube, ref, (v) => healthGate(v, ignore, votersDelta));

/**
 * Health gate before any membership change: every voter answers and knows the leader. With the
 * change's effect on the voter count (heal any minority), unhealthy voters are tolerated while the
 * healthy ones still make a quorum after it: 5 members with 2 dead heal one at a time.
 */
export async function healthGate(v: ClusterView, ignore: string[] = [], votersDelta?: -1 | 0 | 1): Promise<string> {
  const members = await v.listMembers();
  const voters = members.filter((m) => !m.isLearner);
  // Every voter asked at once (a silent one must not stretch the gate); problems listed in member order.
  const answers = await Promise.all(
    voters
      .map((m) => memberNameOf(m))
      .filter((name) => !ignore.includes(name))
      .map(async (name) => {
        try {
          if (!v.urls[name]) throw new Error('pod not running');
          const h = healthOf(await v.statusOf(name));
          if (!h.healthy) throw new Error(h.error);
          return undefined;
        } catch (e) {
          return `${name}: ${(e as Error).message.split('\n')[0]}`;
        }
      }),
  );
  const problems = answers.filter((p): p is string => p !== undefined);
  const healthy = answers.length - problems.length;
  const after = quorum(voters.length + (votersDelta ?? 0));
  if (problems.length && (votersDelta === undefined || healthy < after)) {
    throw new Error(
      `cluster not healthy, refusing to change membership: ${problems.join('; ')}${votersDelta === undefined ? '' : ` (${healthy} healthy, ${after} needed after the change)`}`,
    );
  }
  if (healthy < quorum(voters.length)) throw new Error(`only ${healthy} of ${voters.length} voters healthy`);
  const learners = members.filter((m) => m.isLearner).map((m) => memberNameOf(m));
  return `${healthy} healthy voter(s)${learners.length ? `, learner(s) ${learners.join(', ')}` : ''}`;
}
