// Where members run: failure domains kept apart, so losing one node never costs quorum when the
// nodes allow it. Pure: decide(), the scale-down runbook and the status all read it from here.
import { memberIndex, memberOrder, quorum } from '../api/names.js';
import type { MemberView, Observation } from './types.js';

export interface Spread {
  /** Node → etcd members whose pod runs there (pods not yet scheduled are left out). */
  byNode: Record<string, string[]>;
  /** A node that holds a majority of the voters: losing it loses quorum. */
  majority?: { node: string; members: string[]; voters: number };
  /** A member to move to a less crowded schedulable node, one at a time. */
  move?: { member: string; from: string; reason: string };
  /** Why the spread cannot be restored now (only with `majority` and no `move`). */
  stuck?: string;
}

/** Nodes as placement counts them: only pods etcd lists as members, not being deleted. */
function membersByNode(obs: Observation): Map<string, MemberView[]> {
  const members = new Map((obs.etcd?.members ?? []).map((m) => [m.podName, m]));
  const out = new Map<string, MemberView[]>();
  for (const p of obs.pods) {
    const m = members.get(p.name);
    if (!m || p.deleting || !p.node) continue;
    out.set(p.node, [...(out.get(p.node) ?? []), m]);
  }
  return out;
}

export function spreadOf(obs: Observation): Spread {
  const byIndex = (a: MemberView, b: MemberView) => memberOrder(a.podName) - memberOrder(b.podName);
  const byNode = membersByNode(obs);
  const spread: Spread = {
    byNode: Object.fromEntries(
      [...byNode].sort(([a], [b]) => a.localeCompare(b)).map(([n, ms]) => [n, ms.map((m) => m.podName).sort()]),
    ),
  };
  const voters = (obs.etcd?.members ?? []).filter((m) => !m.isLearner).length;
  const [crowded, onIt] = [...byNode].sort(([a, x], [b, y]) => y.length - x.length || a.localeCompare(b))[0] ?? [];
  if (!crowded || !onIt) return spread;
  const votersOnIt = onIt.filter((m) => !m.isLearner).length;
  if (voters >= 2 && votersOnIt >= quorum(voters))
    spread.majority = {
      node: crowded,
      members: onIt
        .filter((m) => !m.isLearner)
        .map((m) => m.podName)
        .sort(),
      voters,
    };

  // A move pays off when a schedulable node has at least two members fewer than the crowded one
  // (the pod's topology spread then sends the new member there).
  if (!obs.nodes) return spread;
  const free = obs.nodes
    .filter((n) => n.schedulable)
    .map((n) => ({ name: n.name, count: byNode.get(n.name)?.length ?? 0 }))
    .sort((a, b) => a.count - b.count || a.name.localeCompare(b.name))[0];
  if (free && onIt.length - free.count >= 2) {
    const member = onIt.slice().sort((a, b) => Number(a.isLeader) - Number(b.isLeader) || byIndex(a, b))[0];
    spread.move = {
      member: member.podName,
      from: crowded,
      reason: `${crowded} runs ${onIt.length} members and ${free.name} runs ${free.count}`,
    };
  } else if (spread.majority) {
    const schedulable = obs.nodes.filter((n) => n.schedulable).map((n) => n.name);
    spread.stuck = `no other schedulable node can take a member (${obs.etcd?.members.length ?? 0} members; schedulable nodes: ${schedulable.join(', ') || 'none'})`;
  }
  return spread;
}

/** The scale-down victim: a learner, else a non-leader on the most crowded node, lowest index first. `removed`: members
 *  taken out since this observation (a look read while the previous member was removed), left out as if gone. */
export function scaleDownVictim(obs: Observation, removed: string[] = []): string | undefined {
  if (removed.length && obs.etcd)
    obs = { ...obs, etcd: { ...obs.etcd, members: obs.etcd.members.filter((m) => !removed.includes(m.podName)) } };
  const onSameNode = new Map(
    [...membersByNode(obs).values()].flatMap((ms) => ms.map((m) => [m.podName, ms.length] as const)),
  );
  const crowding = (m: MemberView) => onSameNode.get(m.podName) ?? 0;
  const ranked = (obs.etcd?.members ?? [])
    .slice()
    .sort(
      (a, b) =>
        Number(b.isLearner) - Number(a.isLearner) ||
        Number(a.isLeader) - Number(b.isLeader) ||
        crowding(b) - crowding(a) ||
        memberOrder(a.podName) - memberOrder(b.podName),
    );
  return ranked[0]?.podName;
}

/** One line for status and Events when a node holds a majority. */
export function majorityWarning(s: Spread): string | undefined {
  if (!s.majority) return undefined;
  const { node, members, voters } = s.majority;
  const next = s.move ? `moving ${s.move.member} to another node` : (s.stuck ?? 'waiting for node information');
  return `node ${node} holds ${members.length} of ${voters} voting members (${members.join(', ')}): losing it loses quorum; ${next}`;
}

/** A rolling operation's order (upgrade, defragmentation, TLS switch, rotation): followers first by member index,
 *  the leader last, so leadership moves at most once. */
export function leaderLast<T extends Pick<MemberView, 'isLeader' | 'podName'>>(cluster: string, members: T[]): T[] {
  return members
    .slice()
    .sort(
      (a, b) =>
        Number(a.isLeader) - Number(b.isLeader) || memberIndex(cluster, a.podName) - memberIndex(cluster, b.podName),
    );
}
