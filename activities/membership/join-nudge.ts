// A workaround the join waits share (catch-up, health, upgrade): etcd 3.6's stuck publish after a snapshot.
import type { ClusterRef } from '../../api/etcdcluster.js';
import { deadline } from '../etcd-client.js';
import { waiting, type Kube, type Look } from '../kube.js';
import { clientURLs, findMember, listMembers, onCluster } from './view.js';

const nudgeKey = '__kube-etcd-controller/join-nudge';
const nudgeEveryMs = 1500;
const maxNudges = 400;

/**
 * etcd 3.6 bug: a member that caught up by snapshot refuses its own publish ("too many requests": its
 * applied index stays behind the snapshot's commit index) until one more entry is committed, and serves
 * nothing until then. On an idle cluster that is never. So while a member etcd lists does not answer on its
 * own endpoint, commit one internal key through another member, at most every 1.5 s and 400 times per
 * attempt. Repeated, because a write made before the leader built the snapshot lands inside it.
 */
export function joinNudger(kube: Kube, ref: ClusterRef, member: string) {
  let last = 0;
  let writes = 0;
  let inFlight: Promise<void> | undefined;
  let note = '';
  async function write(): Promise<void> {
    try {
      if (!Object.keys(await clientURLs(kube, ref, [member])).length) note = 'no other member to write through';
      else if (!findMember(await listMembers(kube, ref, [member]), ref, member)) note = 'not in the member list yet';
      else {
        await onCluster(kube, ref, (c) => c.put(nudgeKey).value(member).options(deadline(2000)).exec(), [member]);
        note = `in the member list but not serving: nudge write ${++writes}/${maxNudges} (one every ${nudgeEveryMs / 1000} s)`;
      }
    } catch (e) {
      note = `nudge write failed: ${(e as Error).message.split('\n')[0]}`;
    }
  }
  const cleanup = async () => {
    if (writes)
      await onCluster(kube, ref, (c) => c.delete().key(nudgeKey).options(deadline(2000)).exec()).catch(() => undefined);
  };
  return {
    /** Starts a nudge when due, in the background (a cluster still forming, with no leader yet, holds a nudge
     *  for seconds, and the wait must keep looking); says what the wait is waiting for, nudges included. */
    nudge(reason: string): Look<never> {
      if (writes >= maxNudges) return waiting(`${reason}; nudge limit reached (${writes} writes)`);
      const said = waiting(note ? `${reason}; ${note}` : reason);
      if (inFlight || Date.now() - last < nudgeEveryMs) return said;
      last = Date.now();
      inFlight = write().finally(() => {
        inFlight = undefined;
        last = Date.now();
      });
      return said;
    },
    /** Removes the key once the member serves (best effort: the next nudge overwrites it anyway); a nudge
     *  still in flight is not waited for, its key goes once it ends. */
    async done(): Promise<string> {
      if (inFlight) void inFlight.then(cleanup);
      else await cleanup();
      return writes ? ` after ${writes} nudge write(s)` : '';
    },
  };
}
