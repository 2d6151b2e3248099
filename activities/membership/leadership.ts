// Leave, step 1: a member about to go hands leadership to the best-placed voter first.
import { memberNameOf } from '../../api/names.js';
import type { ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { deadline } from '../etcd-client.js';
import { recordEvent } from '../cluster/status.js';
import { findMember, listMembers, statusOf, withView, type ClusterView } from './view.js';

/** Is this member the leader right now? */
export async function isLeader({ kube }: Deps, ref: ClusterRef, member: string): Promise<boolean> {
  const me = findMember(await listMembers(kube, ref), ref, member);
  if (!me) return false;
  const s = await statusOf(kube, ref, member).catch(() => undefined);
  return s?.leader === me.ID;
}

/** leadershipMovedAway as an activity of its own (on a view of its own). */
export const moveLeaderAway = (d: Deps, ref: ClusterRef, member: string, before = `removing ${member}`) =>
  withView(d.kube, ref, (v) => leadershipMovedAway(d, v, member, before));

/** Hands leadership from this member to a healthy voter (the one with the highest raft index). */
export async function leadershipMovedAway(
  d: Deps,
  v: ClusterView,
  member: string,
  before = `removing ${member}`,
): Promise<string> {
  const members = await v.listMembers();
  const me = findMember(members, v.ref, member);
  if (!me) return 'not a member';
  const mine = await v.statusOf(member).catch(() => undefined);
  if (!mine || mine.leader !== me.ID) return 'not the leader';
  let best: { id: string; name: string; index: bigint } | undefined;
  for (const m of members.filter((x) => !x.isLearner && x.ID !== me.ID)) {
    const name = memberNameOf(m);
    const s = await v.statusOf(name).catch(() => undefined);
    if (s && (!best || BigInt(s.raftIndex) > best.index)) best = { id: m.ID, name, index: BigInt(s.raftIndex) };
  }
  if (!best) throw new Error(`no healthy voter to take leadership from ${member}`);
  // MoveLeader must be sent to the leader itself.
  await v.on(member, (c) => c.maintenance.moveLeader({ targetID: best!.id }, deadline(10000)), 10000);
  await recordEvent(
    d,
    v.ref,
    'Normal',
    'LeaderMoved',
    `moved leadership from ${member} to ${best.name} before ${before}`,
  );
  return `leadership moved to ${best.name}`;
}
