// Switching a running cluster plain ↔ TLS (issue 18), one member at a time: its peer URL in etcd's member list, and its
// pod recreated in place (same name, same claim, same member ID) with the listeners of the next mode. Both idempotent:
// what is already so is left alone, so a switch resumes after a crash.
import { ApplicationFailure } from '@temporalio/common';
import { peerURL } from '../../api/names.js';
import type { ClusterRef, EtcdClusterSpec } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { deadline, podTlsOf, withEtcd } from '../etcd-client.js';
import { createIfAbsent, readPod } from '../kube.js';
import { memberPod, type TlsListen } from '../member-pod.js';
import { recordEvent } from '../cluster/status.js';
import { ensureTlsSecrets } from '../tls.js';
import { deleteMemberPod } from '../members/pod.js';
import { clientURLs, findMember, listMembers, whileRefused } from './view.js';

const modeName = (listen: TlsListen) => (listen === true ? 'tls' : listen === 'bridge' ? 'bridge' : 'plain');

/** How the member's pod serves now ('absent' without a live pod) and whether etcd's member list has an https peer URL. */
export async function memberTlsState(
  { kube }: Deps,
  ref: ClusterRef,
  member: string,
): Promise<{ pod: 'tls' | 'bridge' | 'plain' | 'absent'; peerTls?: boolean }> {
  const p = await readPod(kube.core, ref.namespace, member);
  const me = findMember(await listMembers(kube, ref), ref, member);
  return {
    pod: p && !p.metadata?.deletionTimestamp ? podTlsOf(p) : 'absent',
    ...(me ? { peerTls: me.peerURLs.some((u) => u.startsWith('https://')) } : {}),
  };
}

/** MemberUpdate: the member's peer URL in the scheme of the mode (its peers dial it so from now on). */
export async function setMemberPeerURL(d: Deps, ref: ClusterRef, member: string, tls: boolean): Promise<string> {
  const members = await listMembers(d.kube, ref);
  const me = findMember(members, ref, member);
  if (!me) throw ApplicationFailure.nonRetryable(`${member} is not a member`, 'NotAMember');
  const want = peerURL(ref, member, tls);
  if (me.peerURLs.length === 1 && me.peerURLs[0] === want) return `peer URL already ${want}`;
  const eps = Object.values(await clientURLs(d.kube, ref));
  await whileRefused(() =>
    withEtcd(eps, (c) => c.cluster.memberUpdate({ ID: me.ID, peerURLs: [want] }, deadline(5000)), 5000),
  );
  const message = `${member}: peer URL ${me.peerURLs.join(',')} → ${want}`;
  await recordEvent(d, ref, 'Normal', 'MemberPeerURLUpdated', message);
  return message;
}

/** The member's pod recreated in place with the listeners of `listen` (its certificates made first); a pod that
 *  already serves so is left alone. */
export async function recreateMemberPodAs(
  d: Deps,
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  member: string,
  listen: TlsListen,
): Promise<string> {
  const { core } = d.kube;
  // Without a claim the new pod would start on an empty data dir: never (tlsModeOf refuses such a switch).
  if (!spec.pod?.persistentVolumeClaimSpec)
    throw ApplicationFailure.nonRetryable(`${member} has no claim to restart on`, 'NoClaim');
  const p = await readPod(core, ref.namespace, member);
  const was = p ? podTlsOf(p) : 'absent';
  if (p && !p.metadata?.deletionTimestamp && was === modeName(listen)) return `${member} already ${was}`;
  if (listen !== false) await ensureTlsSecrets(core, ref, [member], spec);
  if (p) await deleteMemberPod(d, ref, member);
  // With its data dir intact etcd reads membership from its WAL; --initial-cluster only names itself.
  const initial = `${member}=${peerURL(ref, member, listen === true)}`;
  await createIfAbsent(() =>
    core.createNamespacedPod({
      namespace: ref.namespace,
      body: memberPod(ref, spec, member, initial, 'existing', undefined, undefined, listen),
    }),
  );
  const message = `${member} restarted in place: ${was} → ${modeName(listen)}`;
  await recordEvent(d, ref, 'Normal', 'MemberTLSSwitching', message);
  return message;
}
