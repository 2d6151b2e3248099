// Per-voter evidence about data, from Kubernetes and etcd together (issue 12). Pure: the observe
// activity computes it, unit tests cover it, and decide() restores only on proof of loss.
import type { MemberView, Observation, PodView, VoterEvidence } from './types.js';

/** A member claim as observed: gone, deleting or Lost means its data is gone. */
export interface ClaimView {
  member: string;
  deleting: boolean;
  lost: boolean;
}

/**
 * The voters to judge. Membership cannot change without quorum, so the list last read through the
 * leader (latched in status) stays right while quorum is lost; a stale member's own list adds to it.
 * Without any list (a status from before issue 12) every member pod and claim counts.
 */
export function knownVoters(
  etcd: Observation['etcd'],
  latched: string[],
  pods: PodView[],
  claims: ClaimView[],
): string[] {
  const listed = (etcd?.members ?? []).filter((m) => !m.isLearner).map((m) => m.podName);
  if (etcd?.linearizable) return listed;
  const known = [...new Set([...latched, ...listed])];
  return known.length ? known : [...new Set([...pods.map((p) => p.name), ...claims.map((c) => c.member)])];
}

export function voterEvidence(
  voters: string[],
  members: MemberView[],
  pods: PodView[],
  claims: ClaimView[],
  usesClaims: boolean,
): VoterEvidence[] {
  return [...voters].sort().map((member) => {
    const m = members.find((x) => x.podName === member);
    if (m?.answered)
      return {
        member,
        evidence: 'serving',
        detail: m.leaderKnown ? 'answers and knows the leader' : 'answers, knows no leader',
      };
    const pod = pods.find((p) => p.name === member && !p.deleting);
    const claim = claims.find((c) => c.member === member);
    const claimOk = claim && !claim.deleting && !claim.lost;
    // A pod on a deleted or lost claim starts empty: its data is gone even though the pod exists.
    if (pod && (!usesClaims || claimOk)) {
      // Ready: its etcd answers the kubelet's probe on its node, so what fails may be the controller's path to it.
      const ready = pod.ready ? ' and Ready (its etcd answers the kubelet on its node)' : '';
      return {
        member,
        evidence: 'unreachable',
        detail: `pod ${pod.phase}${ready}${pod.problem ? ` (${pod.problem})` : ''}, not answering the controller${m?.error ? `: ${m.error}` : ''}`,
      };
    }
    if (claimOk) return { member, evidence: 'data-present', detail: `pod gone, claim ${member}-data holds its data` };
    return {
      member,
      evidence: 'data-gone',
      detail: usesClaims
        ? `claim ${member}-data ${!claim ? 'deleted' : claim.lost ? 'lost' : 'being deleted'}`
        : 'pod gone with its emptyDir',
    };
  });
}
