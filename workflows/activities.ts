// Activity stubs with the timeouts and retry rules of each kind of step.
import type { Duration } from '@temporalio/common';
import {
  ActivityFailure,
  ApplicationFailure,
  proxyActivities,
  proxyLocalActivities,
  TimeoutFailure,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';

const retry = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' };

/** Quick reads and writes against the API server or etcd; retried until they succeed. */
export const act = proxyActivities<Activities>({ startToCloseTimeout: '1m', heartbeatTimeout: '10s', retry });

/** The cluster loop's look every health check, run inside the workflow task (issue 17): its result is one marker
 *  in the history instead of three activity events and a second workflow task. A read, so a rerun is harmless. */
export const look = proxyLocalActivities<Pick<Activities, 'observeCluster'>>({ startToCloseTimeout: '1m', retry });

/** Steps that must not hold the loop (e.g. the backup Schedule through Temporal): a few tries, then the caller
 *  says why and carries on. */
export const once = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: { ...retry, maximumAttempts: 3 },
});

/** Each wait's deadline across all its retries, and what did not happen when it passes. Pod start and
 *  health allow an image pull and etcd's 5 s join rule with room to spare; a learner's catch-up and a
 *  backup move a whole snapshot; destroy waits for graceful pod deletion (force after 30 s). */
const waits = {
  waitMemberPodRunning: { deadline: '5m', what: (member: string) => `pod ${member} not running` },
  waitHeldPodStarted: { deadline: '5m', what: (member: string) => `pod ${member} not started with a DNS name` },
  waitLearnerCaughtUp: { deadline: '15m', what: (member: string) => `learner ${member} did not catch up` },
  promoteLearner: { deadline: '5m', what: (member: string) => `learner ${member} not promoted` },
  waitMemberHealthy: { deadline: '5m', what: (member: string) => `member ${member} not healthy` },
  waitMembersHealthy: { deadline: '5m', what: (members: string) => `members ${members} not running and healthy` },
  deleteMemberPod: { deadline: '5m', what: (member: string) => `pod ${member} not deleted` },
  // A plain ↔ TLS switch: the member's pod deleted and created again on its claim.
  recreateMemberPodAs: { deadline: '5m', what: (member: string) => `pod ${member} not recreated` },
  deleteAllMemberPods: { deadline: '5m', what: () => 'member pods not deleted' },
  deleteClusterResources: { deadline: '10m', what: () => 'cluster resources not deleted' },
  takeBackup: { deadline: '10m', what: () => 'no snapshot taken' },
  // The new cluster's backup tool starts, then lists the source's backups.
  chooseBackupToRestore: { deadline: '5m', what: () => 'no backup chosen to restore from' },
  forceSnapshots: { deadline: '10m', what: () => 'v2 WAL entries not flushed into snapshots' },
  checkV2Store: { deadline: '5m', what: (member: string) => `data of ${member} not checked for v2 content` },
  // A large backend takes a while to rewrite; compaction of a long history too.
  defragmentMember: { deadline: '15m', what: (member: string) => `member ${member} not defragmented` },
  compactToCurrent: { deadline: '10m', what: () => 'history not compacted' },
  // The kubelet refreshes a mounted Secret within a minute or two; etcd reads it on the next handshake.
  waitMemberServes: { deadline: '5m', what: (member: string) => `member ${member} does not serve its new certificate` },
  // spec.tls.issuerRef: cert-manager issues a certificate in seconds; a minute more for a busy or restarting controller.
  waitCertificatesIssued: { deadline: '3m', what: () => 'certificates not issued by cert-manager' },
} satisfies Record<string, { deadline: `${number}m`; what: (member: string) => string }>;

/** Memo key of an operation workflow: caps every wait deadline (seconds). A test knob, set from the controller's
 *  KEC_WAIT_CAP_SECONDS, so a test sees a deadline pass in a minute; production leaves it unset. */
export const waitCapMemo = 'waitCapSeconds';

/** The deadline, or the cap from the memo when that is shorter. */
function capped(deadline: `${number}m`): Duration {
  const cap = Number(workflowInfo().memo?.[waitCapMemo] ?? 0);
  return cap > 0 && cap < Number(deadline.slice(0, -1)) * 60 ? `${cap}s` : deadline;
}

/** Steps that wait for a process to start, a learner to catch up, a pod to go away: each has a deadline,
 *  and past it the operation fails, non-retryable, with what did not happen and the last thing the
 *  activity saw (its heartbeat), e.g. "pod etcd-0004 not running after 5m: ErrImagePull: …". */
export const waitFor = Object.fromEntries(
  Object.entries(waits).map(([name, { deadline, what }]) => {
    const bounded = async (...args: unknown[]) => {
      const limit = capped(deadline);
      const proxy = proxyActivities<Activities>({ scheduleToCloseTimeout: limit, heartbeatTimeout: '10s', retry });
      const fn = proxy[name as keyof typeof waits] as (...a: unknown[]) => Promise<unknown>;
      try {
        return await fn(...args);
      } catch (e) {
        const seen = lastSeen(e);
        if (seen === undefined) throw e;
        const message = `${what(String(args[1] ?? ''))} after ${String(limit)}${seen ? `: ${seen}` : ''}`;
        throw ApplicationFailure.nonRetryable(message, 'DeadlineExceeded');
      }
    };
    return [name, bounded];
  }),
) as Pick<Activities, keyof typeof waits>;

/** Health gates: retried for about two minutes, then the operation fails with the reason. */
export const gate = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  heartbeatTimeout: '10s',
  retry: { ...retry, maximumAttempts: 15 },
});

/** retireFromEtcd (health gate → leadership moved → MemberRemove in one activity): the gate's bound (about two minutes
 *  of retries, then the operation fails with the reason); a minute per try, since etcd may refuse the change for up
 *  to 30 s inside it. */
export const retire = proxyActivities<Pick<Activities, 'retireFromEtcd'>>({
  startToCloseTimeout: '1m',
  heartbeatTimeout: '10s',
  retry: { ...retry, maximumAttempts: 15 },
});

/** For an activity past its deadline, the last thing it saw (its heartbeat, '' when none); undefined for other failures. */
export function lastSeen(e: unknown): string | undefined {
  if (!(e instanceof ActivityFailure) || !(e.cause instanceof TimeoutFailure)) return undefined;
  const seen = e.cause.lastHeartbeatDetails ?? e.cause.cause?.message;
  return seen ? String(seen) : '';
}

/** A member restarting on a new version: bounded across retries, then the upgrade stops and says why. */
export const upgradeWait: Pick<Activities, 'waitMemberUpgraded'> = {
  waitMemberUpgraded: (...args) =>
    proxyActivities<Activities>({
      scheduleToCloseTimeout: capped('4m'),
      heartbeatTimeout: '10s',
      retry,
    }).waitMemberUpgraded(...args),
};
