// The upgrade runbook's member steps: a new image in place, then the member back on the new version; and the v2 WAL
// barrier 3.5 → 3.6 needs.
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { Context } from '@temporalio/activity';
import { memberNameOf } from '../../api/names.js';
import { memberSelector, type ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { healthOf, withEtcd } from '../etcd-client.js';
import { done, firstLine, podProblem, pollUntil, readPod, waiting, type Kube } from '../kube.js';
import { defaultSnapshotCount } from '../member-pod.js';
import { recordEvent } from '../cluster/status.js';
import { joinNudger } from './join-nudge.js';
import { clientURLs, listMembers, statusOf } from './view.js';

/** Changes the member's image in place (its data stays): the node restarts the container. */
export async function setMemberImage(d: Deps, ref: ClusterRef, member: string, image: string): Promise<string> {
  const { core } = d.kube;
  const pod = await core.readNamespacedPod({ name: member, namespace: ref.namespace });
  const current = pod.spec?.containers.find((c) => c.name === 'etcd')?.image;
  if (current === image) return 'already set';
  await core.patchNamespacedPod(
    { name: member, namespace: ref.namespace, body: { spec: { containers: [{ name: 'etcd', image }] } } },
    setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
  );
  await recordEvent(d, ref, 'Normal', 'MemberUpgrading', `restarting ${member} with ${image} (was ${current})`);
  return `image ${current} → ${image}`;
}

/** Waits until the member serves on the new version, knows the leader and has caught up with it (alarms do not matter). */
export async function waitMemberUpgraded(
  { kube }: Deps,
  ref: ClusterRef,
  member: string,
  version: string,
): Promise<string> {
  const nudger = joinNudger(kube, ref, member);
  // Every 200 ms as the other waits: a restart on the new image takes ~1 s, polling should not add half of it.
  return pollUntil(200, async () => {
    const s = await statusOf(kube, ref, member).catch((e: Error) => e);
    // The pod's own reason (an unknown image never starts) is what the upgrade's failure reports.
    const problem = s instanceof Error || s.version !== version ? await podSays(kube, ref, member) : undefined;
    if (s instanceof Error) return nudger.nudge(`${member}: ${problem ?? firstLine(s)}`);
    if (s.version !== version || !healthOf(s).healthy) {
      const pod = problem ? `; pod: ${problem}` : '';
      return waiting(`${member} reports ${s.version}${s.leader === '0' ? ', no leader' : ''}${pod}`);
    }
    try {
      const members = await listMembers(kube, ref);
      const leader = members.find((m) => m.ID === s.leader);
      const ls = leader ? await statusOf(kube, ref, memberNameOf(leader)).catch(() => undefined) : undefined;
      const gap = ls ? BigInt(ls.raftIndex) - BigInt(s.raftAppliedIndex || s.raftIndex) : 0n;
      if (gap <= 100n) return done(`${member} runs ${version}, raft index ${s.raftIndex}${await nudger.done()}`);
      return waiting(`${member} on ${version}, catching up (${gap} behind)`);
    } catch (e) {
      return waiting(`${member}: ${firstLine(e)}`);
    }
  });
}

/** Why the member's pod does not run as specified (ErrImagePull: …), if it says. A node may keep the old container
 *  running while the new image fails: then the reason is the pod's last Warning Event. */
async function podSays(kube: Kube, ref: ClusterRef, member: string): Promise<string | undefined> {
  const pod = await readPod(kube.core, ref.namespace, member);
  const problem = pod && podProblem(pod);
  const want = pod?.spec?.containers[0]?.image;
  // A real kubelet alternates ErrImagePull, ImagePullBackOff and CrashLoopBackOff for an image it cannot pull:
  // a back-off names no image, the pull failure is in the Events.
  const backOff = problem?.startsWith('CrashLoopBackOff');
  if ((problem && !backOff) || !want || (!backOff && want === pod?.status?.containerStatuses?.[0]?.image))
    return problem;
  const events = await kube.core
    .listNamespacedEvent({ namespace: ref.namespace, fieldSelector: `involvedObject.name=${member},type=Warning` })
    .then(
      (l) => l.items,
      () => [],
    );
  const at = (e: (typeof events)[number]) => String(e.lastTimestamp ?? e.eventTime ?? '');
  const sorted = events.sort((a, b) => at(a).localeCompare(at(b)));
  if (backOff) {
    const pull = sorted.filter((e) => e.reason === 'Failed' && e.message?.includes(`"${want}"`)).at(-1);
    return pull ? `${problem}; ${pull.message}` : problem;
  }
  const last = sorted.at(-1);
  return `${want} not started${last ? `: ${last.message}` : ''}`;
}

/**
 * etcd 3.6 refuses to replay v2 WAL entries (written by 3.4 and by the 3.4 → 3.5 switch-over):
 * write enough entries to one internal key that every member takes a snapshot past them.
 */
export async function forceSnapshots({ kube }: Deps, ref: ClusterRef): Promise<string> {
  const pods = await kube.core.listNamespacedPod({ namespace: ref.namespace, labelSelector: memberSelector(ref.name) });
  const counts = pods.items.map((p) => {
    const flag = p.spec?.containers[0]?.command?.find((a) => a.startsWith('--snapshot-count='));
    return flag ? Number(flag.split('=')[1]) : defaultSnapshotCount;
  });
  const entries = Math.max(...counts, 0) + 200;
  const key = '__kube-etcd-controller/snapshot-barrier';
  const eps = Object.values(await clientURLs(kube, ref));
  await withEtcd(
    eps,
    async (c) => {
      let next = 0;
      const worker = async () => {
        while (next < entries) {
          const i = next++;
          await c.put(key).value(String(i));
          if (i % 500 === 0) Context.current().heartbeat(`snapshot barrier ${i}/${entries}`);
        }
      };
      await Promise.all(Array.from({ length: 32 }, worker));
      await c.delete().key(key);
    },
    10000,
  );
  return `wrote ${entries} entries so every member snapshots past its v2 WAL entries`;
}
