// Placement rules (pure): scale-down victim, moves off a crowded node, the majority warning.
import { operationWorkflows } from '../workflows/cluster.js';
import * as registered from '../workflows/index.js';
import { decide } from '../workflows/plan.js';
import { majorityWarning, scaleDownVictim, spreadOf } from '../workflows/placement.js';
import type { NodeView, Observation } from '../workflows/types.js';
import { memberView, observation, podView } from './support/observation.js';
import type { V1Node } from '@kubernetes/client-node';
import { nodeView, staleHeartbeatMs } from '../activities/cluster/observe.js';

const member = memberView;
const node = (name: string, schedulable = true): NodeView => ({ name, schedulable });
/** placement: member index → node name. */
function obs(
  placement: Record<number, string>,
  nodes: NodeView[] | undefined,
  over: { size?: number; leader?: number } = {},
): Observation {
  const idx = Object.keys(placement).map(Number);
  return observation({
    spec: { size: over.size ?? idx.length, version: '3.5.33', repository: 'quay.io/coreos/etcd' },
    pods: idx.map((i) => podView(i, { node: placement[i] })),
    etcd: { members: idx.map((i) => member(i, { isLeader: i === (over.leader ?? idx[0]) })) },
    highestIndex: Math.max(...idx),
    nodes,
  });
}
const created = { created: true, unhealthySince: {} };
const three = [node('n1'), node('n2'), node('n3')];

test('scale-down removes a non-leader from a node that holds two members, before the index rule (issue 20, seed 66080)', () => {
  // 3 → 4 on 3 nodes put 3 and 4 together on n1; the old rule removed c-0000 (lowest index, on n2).
  const o = obs({ 0: 'n2', 2: 'n3', 3: 'n1', 4: 'n1' }, three, { size: 3, leader: 2 });
  expect(scaleDownVictim(o)).toBe('c-0003');
  expect(decide(o, created, 0)).toMatchObject({ kind: 'run', op: { type: 'scale-down', from: 4, to: 3 } });
});

test('a scale-down by two chooses the second victim without the first: the crowding is counted again', () => {
  // 5 on 3 nodes: c-0000 goes from n1 (crowded, lowest index); then n2 is the crowded node, not n1 again.
  const o = obs({ 0: 'n1', 1: 'n1', 2: 'n2', 3: 'n2', 4: 'n3' }, three, { size: 3, leader: 4 });
  expect(scaleDownVictim(o)).toBe('c-0000');
  expect(scaleDownVictim(o, ['c-0000'])).toBe('c-0002');
});

test('scale-down never picks the leader while another member can go; learners go first', () => {
  expect(scaleDownVictim(obs({ 0: 'n1', 1: 'n1', 2: 'n2' }, three, { leader: 0 }))).toBe('c-0001');
  const o = obs({ 0: 'n1', 1: 'n2', 2: 'n3' }, three);
  o.etcd!.members[2].isLearner = true;
  expect(scaleDownVictim(o)).toBe('c-0002');
  // Without node information (older observations): the old rule, lowest-index non-leader.
  expect(scaleDownVictim(obs({ 0: '', 1: '', 2: '' }, undefined, { leader: 0 }))).toBe('c-0001');
});

test('a node with a majority and a free schedulable node: move one member, a non-leader, learner first', () => {
  const o = obs({ 0: 'n1', 1: 'n1', 2: 'n2' }, three, { leader: 0 });
  expect(decide(o, created, 0)).toEqual({
    kind: 'run',
    op: { type: 'move-member', member: 'c-0001', from: 'n1', reason: 'n1 runs 2 members and n3 runs 0' },
  });
  expect(majorityWarning(spreadOf(o))).toMatch(
    /node n1 holds 2 of 3 voting members \(c-0000, c-0001\): losing it loses quorum; moving c-0001/,
  );
});

test('no free node (cordoned): no move, the warning says why', () => {
  const o = obs({ 0: 'n1', 1: 'n1', 2: 'n2' }, [node('n1'), node('n2'), node('n3', false)]);
  expect(decide(o, created, 0)).toMatchObject({ kind: 'idle', reason: 'Running' });
  expect(majorityWarning(spreadOf(o))).toMatch(
    /no other schedulable node can take a member \(3 members; schedulable nodes: n1, n2\)/,
  );
});

test('an even spread is left alone: 4 members on 3 nodes, 3 on 3', () => {
  expect(decide(obs({ 0: 'n1', 1: 'n1', 2: 'n2', 3: 'n3' }, three), created, 0)).toMatchObject({ kind: 'idle' });
  const spread = obs({ 0: 'n1', 1: 'n2', 2: 'n3' }, three);
  expect(decide(spread, created, 0)).toMatchObject({ kind: 'idle' });
  expect(majorityWarning(spreadOf(spread))).toBeUndefined();
});

test('a user affinity owns placement: warn, never move', () => {
  const o = obs({ 0: 'n1', 1: 'n1', 2: 'n2' }, three);
  o.spec!.pod = { affinity: { nodeAffinity: {} } };
  expect(decide(o, created, 0)).toMatchObject({ kind: 'idle' });
  expect(majorityWarning(spreadOf(o))).toMatch(/holds 2 of 3/);
});

test('every operation decide() can start is a workflow the worker registers', () => {
  for (const [op, fn] of Object.entries(operationWorkflows))
    expect([op, (registered as Record<string, unknown>)[fn.name]]).toEqual([op, fn]);
});

describe('nodeView: a node whose kubelet stopped renewing its heartbeat Lease is not ready', () => {
  const node = {
    metadata: { name: 'n1' },
    status: { conditions: [{ type: 'Ready', status: 'True' }] },
  } as V1Node;
  const now = Date.parse('2026-11-29T04:00:00Z');
  it('a fresh heartbeat (or none: no Lease) keeps the Ready condition', () => {
    expect(nodeView(node, {}, new Date(now - 10_000), now)).toMatchObject({ ready: true, schedulable: true });
    expect(nodeView(node, {}, undefined, now)).toMatchObject({ ready: true, schedulable: true });
  });
  it('a heartbeat older than staleHeartbeatMs makes it not ready before the node controller says NotReady', () => {
    const old = new Date(now - staleHeartbeatMs - 1000).toISOString();
    expect(nodeView(node, {}, old, now)).toMatchObject({
      ready: false,
      schedulable: false,
      notReady: `its kubelet's heartbeat Lease was last renewed ${staleHeartbeatMs / 1000 + 1} s ago`,
    });
    expect(nodeView(node, {}, undefined, now)).not.toHaveProperty('notReady');
  });
  it('says which Ready condition made it not ready', () => {
    const lost = {
      ...node,
      status: { conditions: [{ type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown' }] },
    } as V1Node;
    expect(nodeView(lost, {}, undefined, now)).toMatchObject({
      ready: false,
      notReady: 'NotReady: its Ready condition is Unknown (NodeStatusUnknown)',
    });
  });
});
