// Join, step 4: the caught-up learner becomes a voter.
import { ApplicationFailure } from '@temporalio/common';
import type { ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { deadline } from '../etcd-client.js';
import { done, firstLine, pollUntil, waiting } from '../kube.js';
import { recordEvent } from '../cluster/status.js';
import { findMember, listMembers, onCluster } from './view.js';

/** MemberPromote; already a voter counts as done. etcd refuses until the learner is in sync: retry. */
export async function promoteLearner(d: Deps, ref: ClusterRef, member: string): Promise<void> {
  return pollUntil(250, async () => {
    const me = findMember(await listMembers(d.kube, ref), ref, member);
    if (!me) throw ApplicationFailure.nonRetryable(`member ${member} is not in the cluster`, 'MemberMissing');
    if (!me.isLearner) return done(undefined);
    try {
      await onCluster(d.kube, ref, (c) => c.cluster.memberPromote({ ID: me.ID }, deadline(5000)), [member]);
      await recordEvent(d, ref, 'Normal', 'MemberPromoted', `promoted ${member} to a voting member`);
      return done(undefined);
    } catch (e) {
      return waiting(`promotion of ${member} refused: ${firstLine(e)}`);
    }
  });
}
