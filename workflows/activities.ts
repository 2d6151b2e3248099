// Activity stubs with the timeouts and retry rules of each kind of step.
import type { Duration } from '@temporalio/common';
import { ActivityFailure, ApplicationFailure, proxyActivities, TimeoutFailure } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';

const retry = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' };

/** Quick reads and writes against the API server or etcd; retried until they succeed. */
export const act = proxyActivities<Activities>({ startToCloseTimeout: '1m', heartbeatTimeout: '10s', retry });

/** Each wait's deadline across all its retries, and what did not happen when it passes. Pod start and
 *  health allow an image pull and etcd's 5 s join rule with room to spare; a learner's catch-up and a
 *  backup move a whole snapshot; destroy waits for graceful pod deletion (force after 30 s). */
const waits = {
  waitMemberPodRunning: { deadline: '5m', what: (member: string) => `pod ${member} not running` },
  waitLearnerCaughtUp: { deadline: '15m', what: (member: string) => `learner ${member} did not catch up` },
  promoteLearner: { deadline: '5m', what: (member: string) => `learner ${member} not promoted` },
  waitMemberHealthy: { deadline: '5m', what: (member: string) => `member ${member} not healthy` },
  deleteMemberPod: { deadline: '5m', what: (member: string) => `pod ${member} not deleted` },
  deleteAllMemberPods: { deadline: '5m', what: () => 'member pods not deleted' },
  deleteClusterResources: { deadline: '10m', what: () => 'cluster resources not deleted' },
  takeBackup: { deadline: '10m', what: () => 'no snapshot taken' },
  forceSnapshots: { deadline: '10m', what: () => 'v2 WAL entries not flushed into snapshots' },
  // A large backend takes a while to rewrite; compaction of a long history too.
  defragmentMember: { deadline: '15m', what: (member: string) => `member ${member} not defragmented` },
  compactToCurrent: { deadline: '10m', what: () => 'history not compacted' },
} satisfies Record<string, { deadline: Duration; what: (member: string) => string }>;

/** Steps that wait for a process to start, a learner to catch up, a pod to go away: each has a deadline,
 *  and past it the operation fails, non-retryable, with what did not happen and the last thing the
 *  activity saw (its heartbeat), e.g. "pod etcd-0004 not running after 5m: ErrImagePull: …". */
export const waitFor = Object.fromEntries(Object.entries(waits).map(([name, { deadline, what }]) => {
  const fn = proxyActivities<Activities>({ scheduleToCloseTimeout: deadline, heartbeatTimeout: '10s', retry })[name as keyof typeof waits] as (...args: unknown[]) => Promise<unknown>;
  const bounded = async (...args: unknown[]) => {
    try {
      return await fn(...args);
    } catch (e) {
      if (!(e instanceof ActivityFailure) || !(e.cause instanceof TimeoutFailure)) throw e;
      const seen = e.cause.lastHeartbeatDetails ?? e.cause.cause?.message;
      throw ApplicationFailure.nonRetryable(`${what(String(args[1] ?? ''))} after ${deadline}${seen ? `: ${String(seen)}` : ''}`, 'DeadlineExceeded');
    }
  };
  return [name, bounded];
})) as Pick<Activities, keyof typeof waits>;

/** Health gates: retried for about two minutes, then the operation fails with the reason. */
export const gate = proxyActivities<Activities>({ startToCloseTimeout: '30s', heartbeatTimeout: '10s', retry: { ...retry, maximumAttempts: 15 } });

/** A member restarting on a new version: bounded across retries, then the upgrade stops and says why. */
export const upgradeWait = proxyActivities<Activities>({ scheduleToCloseTimeout: '4m', heartbeatTimeout: '10s', retry });
