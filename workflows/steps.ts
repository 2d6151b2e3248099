// The runbook steps every operation is made of. Each waits for health before and after it acts.
import { ApplicationFailure, CancellationScope, isCancellation, log, patched } from '@temporalio/workflow';
import { act, gate, retire, waitFor } from './activities.js';
import { peerURL, quorum } from '../api/names.js';
import type { ClusterRef, EtcdClusterSpec } from '../api/etcdcluster.js';
import type { Bootstrap } from '../activities/member-pod.js';

export type StepReporter = (step: string) => void;

/** With spec.tls.issuerRef, cert-manager issues the certificates of these members (and the client ones) before they
 *  start: applied as Certificates, waited for until their Secrets hold the files; refused at once (nothing created)
 *  when cert-manager cannot. Since this patch (issue 18); without issuerRef nothing changes (the own CA, in the pod step). */
export async function certificatesIssued(
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  members: string[],
  step: StepReporter,
): Promise<void> {
  if (!spec.tls?.enabled || !spec.tls.issuerRef || !patched('tls-cert-manager')) return;
  step(`wait for cert-manager to issue the certificates of ${members.join(', ') || 'the clients'}`);
  await waitFor.waitCertificatesIssued(ref, spec, members);
}

/** start pod (etcd held) → wait for it and its DNS name → addLearner → release etcd → waitCaughtUp → promote → waitHealthy:
 *  one member joins without risking quorum. A join that stops before its promotion (cancelled, or past a deadline)
 *  is undone: learner and pod go. `released` is called once its etcd is released (the next pod may start then). */
export async function addMember(
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  member: string,
  step: StepReporter,
  released?: () => void,
): Promise<void> {
  // Before this patch a stopped join left its learner and pod to the planner (remove-ghost-member, remove-orphan-pod).
  const undo = patched('join-undone-before-promotion');
  step(`health gate before adding ${member}`);
  // Quorum after the promotion is what matters: a dead minority must not block its own replacement.
  await gate.checkClusterHealthy(ref, [], 1);
  await certificatesIssued(ref, spec, [member], step); // before the join: a refusal leaves nothing to undo
  try {
    // Before this patch the learner was added first: its peers looked its name up before the pod (and its DNS
    // record) existed, and the cluster DNS cached the "no such host" (5 s here, 30 s in kubeadm's Corefile).
    if (patched('join-pod-first')) {
      step(`start pod ${member}, its etcd held until it is a member`);
      await act.createJoiningPod(ref, spec, member);
      step(`wait for pod ${member} to start (etcd held) and its DNS name to resolve`);
      await waitFor.waitHeldPodStarted(ref, member);
      step(`add ${member} to etcd as a learner`);
      const { initialCluster } = await act.addLearner(ref, member);
      step(`release ${member}'s etcd`);
      await act.releaseJoiningPod(ref, member, initialCluster);
      released?.();
    } else {
      step(`add ${member} to etcd as a learner`);
      const { initialCluster } = await act.addLearner(ref, member);
      step(`start pod ${member}`);
      await act.createMemberPod(ref, spec, member, initialCluster, 'existing');
    }
    await waitFor.waitMemberPodRunning(ref, member);
    step(`wait for learner ${member} to catch up`);
    await waitFor.waitLearnerCaughtUp(ref, member);
    step(`promote ${member} to voter`);
    await waitFor.promoteLearner(ref, member);
  } catch (e) {
    const reason = isCancellation(e) ? 'join cancelled' : 'join failed';
    if (undo) await CancellationScope.nonCancellable(() => undoJoin(ref, spec, member, reason, step));
    throw e;
  }
  step(`wait for ${member} to be healthy`);
  await waitFor.waitMemberHealthy(ref, member);
}

/** Removes a stopped join's learner, then its pod and claim. Bounded: if it cannot finish, the planner's ghost-member and
 *  orphan-pod handling is the backstop, and the operation still ends with its own error. */
async function undoJoin(
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  member: string,
  reason: string,
  step: StepReporter,
): Promise<void> {
  step(`undo the join of ${member} (${reason}): remove the learner and its pod`);
  try {
    if ((await gate.removeLearner(ref, member, reason)) === 'voter') return;
    await deleteUnjoinedPod(ref, spec, member);
  } catch (e) {
    log.warn('join not undone; the planner will remove what is left', { member, error: (e as Error).message });
  }
}

/** Deletes the pod (and claim) of a member that never joined or was removed as a learner. */
export async function deleteUnjoinedPod(ref: ClusterRef, spec: EtcdClusterSpec, member: string): Promise<void> {
  await waitFor.deleteMemberPod(ref, member, { force: true });
  if (spec.pod?.persistentVolumeClaimSpec) await gate.deleteMemberClaim(ref, member);
}

/** Retires a member, the runbook: health gate → move leadership away → MemberRemove → delete pod (and claim). With `later`, the pod's
 *  termination is not waited for here: its promise goes there (etcd no longer counts the member). With `oneStep`,
 *  the first three are one activity (retireFromEtcd: the same checks in the same order, one round trip). */
export async function retireMember(
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  member: string,
  reason: string,
  step: StepReporter,
  opts: { dead?: boolean; keepClaim?: boolean; later?: Promise<void>[]; oneStep?: boolean; removed?: string[] } = {},
): Promise<void> {
  if (opts.oneStep) {
    step(`remove ${member} from etcd: health gate, leadership moved away, MemberRemove`);
    // Members removed before it in the same operation are left out of the activity's view (an input, not a command).
    await retire.retireFromEtcd(ref, member, reason, { dead: opts.dead, removed: opts.removed });
  } else {
    step(`health gate before removing ${member}`);
    // A dead member is the reason for the change: the gate checks everyone else.
    await gate.checkClusterHealthy(ref, opts.dead ? [member] : [], opts.dead ? -1 : undefined);
    if (!opts.dead) {
      step(`move leadership away from ${member} if it leads`);
      await act.moveLeaderAway(ref, member);
    }
    step(`remove ${member} from etcd`);
    await act.removeMember(ref, member, reason);
  }
  step(`delete pod ${member}`);
  const gone = (async () => {
    await waitFor.deleteMemberPod(ref, member, { force: opts.dead });
    if (spec.pod?.persistentVolumeClaimSpec && !opts.keepClaim) await act.deleteMemberClaim(ref, member);
  })();
  if (!opts.later) return gone;
  gone.catch(() => undefined); // awaited by the caller (Promise.all): not an unhandled rejection meanwhile
  opts.later.push(gone);
}

/** Starts the first member of a new cluster and waits until it serves. */
export async function startSeed(
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  seed: string,
  peer: string,
  step: StepReporter,
): Promise<void> {
  await certificatesIssued(ref, spec, [seed], step);
  step(`start seed member ${seed}`);
  await act.createMemberPod(ref, spec, seed, `${seed}=${peer}`, 'new');
  await waitFor.waitMemberPodRunning(ref, seed);
  step(`wait for seed ${seed} to be healthy`);
  await waitFor.waitMemberHealthy(ref, seed);
}

/** Static bootstrap of a brand-new cluster: all initial members start together (state new, full
 *  --initial-cluster, a fresh token), then each is waited for. Members lost during it are left to the
 *  plan (ghost removal and learner joins); without a quorum of them the cluster cannot form. With `restore`,
 *  every member first restores the same snapshot (etcd's multi-member restore). */
export async function bootstrapMembers(
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  members: string[],
  token: string,
  step: StepReporter,
  restore?: Bootstrap['restore'],
): Promise<string[]> {
  await certificatesIssued(ref, spec, members, step);
  const from = restore ? `, each restored from ${restore.snapshot}` : '';
  step(`start ${members.join(', ')} together (static bootstrap${from})`);
  const initialCluster = members.map((m) => `${m}=${peerURL(ref, m)}`).join(',');
  const { started, lost } = await act.bootstrapMembers(ref, spec, members, initialCluster, {
    token,
    ...(restore ? { restore } : {}),
  });
  if (started.length < quorum(members.length)) {
    const what =
      `only ${started.join(', ') || 'no member'} of ${members.join(', ')} started: no quorum to bootstrap` +
      ` (lost: ${lost.join(', ')})`;
    throw ApplicationFailure.nonRetryable(what, 'BootstrapFailed');
  }
  step(`wait for ${started.join(', ')} to be healthy`);
  // Since this patch (issue 17) one wait for all of them: many clusters created at once held the worker's activity
  // slots with two waits per member.
  if (patched('bootstrap-waits-together')) await waitFor.waitMembersHealthy(ref, started);
  else
    await Promise.all(
      started.map(async (m) => {
        await waitFor.waitMemberPodRunning(ref, m);
        await waitFor.waitMemberHealthy(ref, m);
      }),
    );
  return lost;
}
