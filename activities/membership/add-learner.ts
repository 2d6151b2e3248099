// Join, step 1: the new member enters etcd as a learner (a non-voter until it has caught up).
import { memberNameOf, peerURL } from '../../api/names.js';
import type { ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { deadline, healthOf, memberStatus, withEtcd } from '../etcd-client.js';
import type { Kube } from '../kube.js';
import { recordEvent } from '../cluster/status.js';
import { clusterTlsMode } from '../tls.js';
import { clientURLs, findMember, isRefusal, listMembers, whileRefused } from './view.js';

/** MemberAddAsLearner, unless the peer URL is already a member. Returns the --initial-cluster for the new pod. */
export async function addLearner(
  d: Deps,
  ref: ClusterRef,
  member: string,
): Promise<{ id: string; initialCluster: string; refused?: string }> {
  const url = peerURL(ref, member, (await clusterTlsMode(d.kube.core, ref)).enabled);
  const refused = { note: '' };
  let members = await listMembers(d.kube, ref);
  let me = findMember(members, ref, member);
  if (!me) {
    const pendingLearner = members.find((m) => m.isLearner);
    if (pendingLearner) throw new Error(`learner ${memberNameOf(pendingLearner)} is still pending: one join at a time`);
    const res = await addThroughReadyMember(d.kube, ref, url, refused);
    members = res.members;
    me = res.member;
    await recordEvent(
      d,
      ref,
      'Normal',
      'MemberAdded',
      `added ${member} to etcd as a learner (id ${BigInt(me.ID).toString(16)})`,
    );
  }
  const initialCluster = members.map((m) => `${m.ID === me!.ID ? member : memberNameOf(m)}=${m.peerURLs[0]}`).join(',');
  return { id: me.ID, initialCluster, ...(refused.note ? { refused: refused.note } : {}) };
}

/**
 * MemberAdd through a member that satisfies etcd's strict reconfiguration rule (connected to enough
 * voters for 5 s; the leader first, it holds the oldest connections); refused everywhere: tried again.
 */
function addThroughReadyMember(kube: Kube, ref: ClusterRef, url: string, seen?: { note: string }) {
  return whileRefused(async () => {
    const eps = await clientURLs(kube, ref);
    const leaderFirst = await Promise.any(
      Object.values(eps).map((u) =>
        memberStatus(u, 1000).then((s) => (healthOf(s).isLeader ? u : Promise.reject(new Error('follower')))),
      ),
    ).catch(() => undefined);
    const order = [...new Set([...(leaderFirst ? [leaderFirst] : []), ...Object.values(eps)])];
    let last: Error | undefined;
    let refused: Error | undefined;
    for (const u of order) {
      try {
        return await withEtcd([u], (c) => c.cluster.memberAdd({ peerURLs: [url], isLearner: true }, deadline(5000)));
      } catch (e) {
        last = e as Error;
      }
      if (isRefusal(last)) refused = last;
    }
    throw refused ?? last ?? new Error(`no running member of ${ref.namespace}/${ref.name} to add through`);
  }, seen);
}
