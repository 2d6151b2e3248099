// Leave, step 1: a member about to go hands leadership to the best-placed voter first.
import { memberNameOf } from '../../api/names.js';
import type { ClusterRef } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { deadline, withEtcd } from '../etcd-client.js';
import { recordEvent } from '../cluster/status.js';
import { findMember, listMembers, memberClientURL, statusOf } from './view.js';

/** Is this member the leader right now? */
export async function isLeader({ kube }: Deps, ref: ClusterRef, member: string): Promise<boolean> {
  const me = findMember(await listMembers(kube, ref), ref, member);
  if (!me) return false;
  const s = await statusOf(kube, ref, member).catch(() => undefined);
  return s?.leader === me.ID;
}

/** Hands leadership from this member to a healthy voter (the one with the highest raft index). */
export async function moveLeaderAway(
  d: Deps,
  ref: ClusterRef,
  member: string,
  before = `removing ${member}`,
): Promise<string> {
  const { kube } = d;
  const members = await listMembers(kube, ref);
  const me = findMember(members, ref, member);
  if (!me) return 'not a member';
  const mine = await statusOf(kube, ref, member).catch(() => undefined);
  if (!mine || mine.leader !== me.ID) return 'not the leader';
  let best: { id: string; name: string; index: bigint } | undefined;
  for (const m of members.filter((x) => !x.isLearner && x.ID !== me.ID)) {
    const name = memberNameOf(m);
    const s = await statusOf(kube, ref, name).catch(() => undefined);
    if (s && (!best || BigInt(s.raftIndex) > best.index)) best = { id: m.ID, name, index: BigInt(s.raftIndex) };
  }
  if (!best) throw new Error(`no healthy voter to take leadership from ${member}`);
  const url = await memberClientURL(kube, ref, member);
  // MoveLeader must be sent to the leader itself.
  await withEtcd([url], (c) => c.maintenance.moveLeader({ targetID: best!.id }, deadline(10000)), 10000);
  await recordEvent(
    d,
    ref,
    'Normal',
    'LeaderMoved',
    `moved leadership from ${member} to ${best.name} before ${before}`,
  );
  return `leadership moved to ${best.name}`;
}
