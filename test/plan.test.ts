// Pure decision logic of the cluster workflow: the runbook's triage order.
import { decide, operationId, trackHealth, unhealthyGraceMs, type Memory } from '../workflows/plan.js';
import type { MemberView, Observation } from '../workflows/types.js';

const member = (i: number, over: Partial<MemberView> = {}): MemberView => ({
  id: String(1000 + i), name: `c-000${i}`, peerURL: `http://c-000${i}.c.default.svc:2380`, podName: `c-000${i}`,
  isLearner: false, healthy: true, isLeader: i === 0, version: '3.5.33', ...over,
});
const pod = (i: number) => ({ name: `c-000${i}`, phase: 'Running', ready: true, ip: `10.0.0.${i}`, deleting: false, image: 'x', restarts: 0, ageSeconds: 60 });
const obs = (members: MemberView[] | null, pods: number[], size = 3, extra: Partial<Observation> = {}): Observation => ({
  exists: true, deleting: false, uid: 'u', generation: 1, spec: { size, version: '3.5.33', repository: 'quay.io/coreos/etcd' },
  pods: pods.map(pod), etcd: members ? { members } : null, highestIndex: 2, observedAt: '', ...extra,
});
const fresh: Memory = { created: false, unhealthySince: {} };
const created: Memory = { created: true, unhealthySince: {} };

test('a new cluster is created', () => {
  expect(decide(obs(null, []), fresh, 0)).toEqual({ kind: 'run', op: { type: 'create', size: 3 } });
});

test('no member answering after creation is quorum loss, held: never a silent re-create', () => {
  expect(decide(obs(null, [0]), created, 0)).toMatchObject({ kind: 'hold', reason: 'QuorumLost' });
});

test('paused wins over everything', () => {
  const o = obs(null, []);
  o.spec!.paused = true;
  expect(decide(o, fresh, 0)).toMatchObject({ kind: 'idle', reason: 'Paused' });
});

test('a member whose pod is gone is replaced when quorum allows', () => {
  const d = decide(obs([member(0), member(1), member(2, { healthy: false })], [0, 1]), created, 0);
  expect(d).toMatchObject({ kind: 'run', op: { type: 'replace-member', member: 'c-0002' } });
});

test('with a claim, a member whose pod is gone is restarted in place', () => {
  const o = obs([member(0), member(1), member(2, { healthy: false })], [0, 1]);
  o.spec!.pod = { persistentVolumeClaimSpec: {} };
  expect(decide(o, created, 0)).toMatchObject({ kind: 'run', op: { type: 'restart-member', member: 'c-0002' } });
});

test('two dead of three is quorum loss: nothing is removed', () => {
  const d = decide(obs([member(0), member(1, { healthy: false }), member(2, { healthy: false })], [0]), created, 0);
  expect(d).toMatchObject({ kind: 'hold', reason: 'QuorumLost' });
});

test('an unreachable member with a pod is replaced only after the grace period', () => {
  const o = obs([member(0), member(1), member(2, { healthy: false })], [0, 1, 2]);
  const mem = trackHealth(o, created, 1000);
  expect(decide(o, mem, 1000)).toMatchObject({ kind: 'wait' });
  expect(decide(o, mem, 1000 + unhealthyGraceMs)).toMatchObject({ kind: 'run', op: { type: 'replace-member', member: 'c-0002' } });
});

test('a learner without a pod is a ghost and is removed first', () => {
  const d = decide(obs([member(0), member(1), member(2), member(3, { isLearner: true, name: '' })], [0, 1, 2]), created, 0);
  expect(d).toMatchObject({ kind: 'run', op: { type: 'remove-ghost-member', member: 'c-0003' } });
});

test('a pod that is not a member is an orphan', () => {
  expect(decide(obs([member(0), member(1), member(2)], [0, 1, 2, 3]), created, 0)).toMatchObject({ kind: 'run', op: { type: 'remove-orphan-pod', pod: 'c-0003' } });
});

test('size changes become one resize operation with a readable id', () => {
  const d = decide(obs([member(0), member(1), member(2)], [0, 1, 2], 5), created, 0);
  expect(d).toEqual({ kind: 'run', op: { type: 'scale-up', from: 3, to: 5 } });
  if (d.kind === 'run') expect(operationId('default', 'c', d.op)).toBe('default/c/resize-3-to-5');
});

test('no resize while a member is unhealthy', () => {
  const o = obs([member(0), member(1), member(2, { healthy: false })], [0, 1, 2], 5);
  expect(decide(o, trackHealth(o, created, 0), 0)).toMatchObject({ kind: 'wait', reason: 'MemberNotHealthy' });
});
