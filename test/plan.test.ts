// Pure decision logic of the cluster workflow: the runbook's triage order.
import { decide, trackHealth, unhealthyGraceMs, type Memory } from '../workflows/plan.js';
import { knownVoters, voterEvidence } from '../workflows/evidence.js';
import { needsV2StoreCheck, v2CheckReadsWal, v2StoreRefusal, v2WalOnly } from '../workflows/versions.js';
import type { Evidence, MemberView, Observation } from '../workflows/types.js';
import { operationId } from '../api/names.js';
import { memberView, observation, podView } from './support/observation.js';

const member = memberView;
const pod = (i: number) => podView(i);
const obs = (members: MemberView[] | null, pods: number[], size = 3, extra: Partial<Observation> = {}): Observation =>
  observation({
    spec: { size, version: '3.5.33', repository: 'quay.io/coreos/etcd' },
    pods: pods.map(pod),
    etcd: members ? { members } : null,
    ...extra,
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
  expect(decide(o, mem, 1000 + unhealthyGraceMs)).toMatchObject({
    kind: 'run',
    op: { type: 'replace-member', member: 'c-0002' },
  });
});

test('a learner without a pod is a ghost and is removed first', () => {
  const d = decide(
    obs([member(0), member(1), member(2), member(3, { isLearner: true, name: '' })], [0, 1, 2]),
    created,
    0,
  );
  expect(d).toMatchObject({ kind: 'run', op: { type: 'remove-ghost-member', member: 'c-0003' } });
});

test('a pod that is not a member is an orphan', () => {
  expect(decide(obs([member(0), member(1), member(2)], [0, 1, 2, 3]), created, 0)).toMatchObject({
    kind: 'run',
    op: { type: 'remove-orphan-pod', pod: 'c-0003' },
  });
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

// Issue 12: automatic restore only when the data of a majority of voters is provably gone.
describe('quorum loss by per-voter evidence', () => {
  const withVoters = (o: Observation, evidence: Evidence[], backup = true): Observation => {
    o.voters = evidence.map((e, i) => ({ member: `c-000${i}`, evidence: e, detail: e }));
    if (backup) o.spec!.backup = { autoRestoreGraceSeconds: 30 };
    o.etcd = o.etcd ? { ...o.etcd, linearizable: false } : null;
    return o;
  };
  const lostFor = (ms: number): Memory => ({ ...created, quorumLostSince: 1000 - ms });

  test('every member unreachable (network cut, all processes restarting): held, never restored, whatever the time', () => {
    const o = withVoters(obs(null, [0, 1, 2]), ['unreachable', 'unreachable', 'unreachable']);
    const d = decide(o, lostFor(3_600_000), 1000);
    expect(d).toMatchObject({ kind: 'hold', reason: 'QuorumLost' });
    if (d.kind === 'hold')
      expect(d.message).toMatch(
        /c-0000 \(unreachable\), c-0001 \(unreachable\), c-0002 \(unreachable\).*Waiting for c-0000, c-0001, c-0002/,
      );
  });

  test('a member that knows a leader proves quorum: the controller reaching only it is not quorum loss', () => {
    const o = withVoters(
      obs(
        [
          member(0, { answered: true, leaderKnown: true }),
          member(1, { healthy: false }),
          member(2, { healthy: false }),
        ],
        [0, 1, 2],
      ),
      ['serving', 'unreachable', 'unreachable'],
    );
    const mem = trackHealth(o, created, 1000);
    expect(mem.quorumLostSince).toBeUndefined();
    expect(decide(o, mem, 1000)).not.toMatchObject({ reason: 'QuorumLost' });
    expect(decide(o, mem, 1000)).not.toMatchObject({ kind: 'run' });
  });

  test("one survivor without a leader and two emptyDir pods gone: the majority's data is gone, restored after the spec grace", () => {
    const o = withVoters(
      obs(
        [
          member(0, { healthy: false, answered: true, leaderKnown: false }),
          member(1, { healthy: false }),
          member(2, { healthy: false }),
        ],
        [0],
      ),
      ['serving', 'data-gone', 'data-gone'],
    );
    expect(decide(o, lostFor(29_000), 1000)).toMatchObject({ kind: 'hold', reason: 'QuorumLost' });
    expect(decide(o, lostFor(30_000), 1000)).toMatchObject({ kind: 'run', op: { type: 'recover' } });
  });

  test('claims: two pods gone with their claims intact are restarted in place, never restored', () => {
    const o = withVoters(obs(null, [0]), ['unreachable', 'data-present', 'data-present']);
    expect(decide(o, lostFor(3_600_000), 1000)).toMatchObject({
      kind: 'run',
      op: { type: 'restart-member', member: 'c-0001', quorumLost: true },
    });
  });

  test("one member's data gone of three: the other two may come back, so held", () => {
    expect(
      decide(withVoters(obs(null, [0, 1]), ['unreachable', 'unreachable', 'data-gone']), lostFor(3_600_000), 1000),
    ).toMatchObject({ kind: 'hold', reason: 'QuorumLost' });
  });

  test('autoRestore false still holds on proven loss; a restore request runs it', () => {
    const o = withVoters(obs(null, []), ['data-gone', 'data-gone', 'data-gone']);
    o.spec!.backup!.autoRestore = false;
    expect(decide(o, lostFor(3_600_000), 1000)).toMatchObject({ kind: 'hold', reason: 'QuorumLost' });
    expect(decide(o, { ...lostFor(0), restoreRequested: true }, 1000)).toMatchObject({
      kind: 'run',
      op: { type: 'recover' },
    });
  });

  test('a fresh workflow (Temporal forgot) never creates over a cluster Kubernetes says exists', () => {
    const o = withVoters(obs(null, [0, 1, 2], 3, { created: true }), ['unreachable', 'unreachable', 'unreachable']);
    expect(decide(o, fresh, 0)).toMatchObject({ kind: 'hold', reason: 'QuorumLost' });
  });

  test('orphan pods are removed only on a member list read through the leader', () => {
    const o = obs([member(0), member(1), member(2)], [0, 1, 2, 3], 3, { voters: [] });
    o.etcd = { ...o.etcd!, linearizable: false };
    expect(decide(o, created, 0)).toMatchObject({ kind: 'wait', reason: 'MembershipUnknown' });
    o.etcd = { ...o.etcd!, linearizable: true };
    expect(decide(o, created, 0)).toMatchObject({ kind: 'run', op: { type: 'remove-orphan-pod', pod: 'c-0003' } });
  });
});

describe('claims: a silent member is restarted in place unless its data is known lost (issue 12, item 8)', () => {
  const silent = (claim: Evidence, alarms?: string[]) => {
    const o = obs(
      [member(0, { alarms }), member(1), member(2, { healthy: false, error: 'context deadline exceeded' })],
      [0, 1, 2],
    );
    o.spec!.pod = { persistentVolumeClaimSpec: {} };
    o.etcd = { ...o.etcd!, linearizable: true };
    o.voters = [
      { member: 'c-0000', evidence: 'serving', detail: '' },
      { member: 'c-0001', evidence: 'serving', detail: '' },
      {
        member: 'c-0002',
        evidence: claim,
        detail: claim === 'data-gone' ? 'claim c-0002-data lost' : 'pod Running, not answering',
      },
    ];
    return o;
  };
  const since = (o: Observation) => trackHealth(o, created, 1000);

  test('pod present, claim intact, silent past the grace: recreated in place on its claim, never replaced', () => {
    const o = silent('unreachable');
    expect(decide(o, since(o), 1000 + unhealthyGraceMs - 1, { claimsInPlace: true })).toMatchObject({ kind: 'wait' });
    expect(decide(o, since(o), 1000 + unhealthyGraceMs, { claimsInPlace: true })).toEqual({
      kind: 'run',
      op: {
        type: 'restart-member',
        member: 'c-0002',
        reason: expect.stringMatching(/unreachable through etcd for 45s/),
        recreate: true,
      },
    });
    // Histories from before the patch keep replacing it.
    expect(decide(o, since(o), 1000 + unhealthyGraceMs)).toMatchObject({
      kind: 'run',
      op: { type: 'replace-member', member: 'c-0002' },
    });
  });

  test('pod gone, claim intact: restarted in place (no pod to delete first)', () => {
    const o = silent('data-present');
    o.pods = o.pods.filter((p) => p.name !== 'c-0002');
    expect(decide(o, created, 0, { claimsInPlace: true })).toEqual({
      kind: 'run',
      op: { type: 'restart-member', member: 'c-0002', reason: 'its pod c-0002 is gone' },
    });
  });

  test('Kubernetes says the data is lost (claim deleted or Lost): replaced, with the reason', () => {
    const o = silent('data-gone');
    expect(decide(o, since(o), 1000 + unhealthyGraceMs, { claimsInPlace: true })).toMatchObject({
      kind: 'run',
      op: { type: 'replace-member', member: 'c-0002', reason: expect.stringMatching(/claim c-0002-data lost/) },
    });
  });

  test('its node NotReady: held with the reason, never recreated (issue 15); a Ready node or an old history restarts it', () => {
    const o = silent('unreachable');
    o.pods = o.pods.map((p, i) => ({ ...p, node: `node-${i + 1}` }));
    o.nodes = ['node-1', 'node-2', 'node-3'].map((name) => ({
      name,
      schedulable: name !== 'node-3',
      ready: name !== 'node-3',
    }));
    const past = 1000 + unhealthyGraceMs * 10;
    const opts = { claimsInPlace: true, nodeDown: true };
    const held = {
      kind: 'hold',
      reason: 'MemberNodeNotReady',
      message: expect.stringMatching(
        /^c-0002 does not answer and its node node-3 is not ready \(NotReady\); its data is on claim c-0002-data/,
      ),
    };
    expect(decide(o, since(o), 1000, opts)).toMatchObject(held);
    expect(decide(o, since(o), past, opts)).toMatchObject(held);
    // Also while its pod is being deleted (evicted from the unreachable node: the deletion cannot finish).
    const evicted = { ...o, pods: o.pods.map((p) => (p.name === 'c-0002' ? { ...p, deleting: true } : p)) };
    expect(decide(evicted, since(o), past, opts)).toMatchObject(held);
    const restart = { kind: 'run', op: { type: 'restart-member', member: 'c-0002', recreate: true } };
    expect(decide(o, since(o), past, { claimsInPlace: true })).toMatchObject(restart);
    const ready = { ...o, nodes: o.nodes.map((n) => ({ ...n, ready: true })) };
    expect(decide(ready, since(o), past, opts)).toMatchObject(restart);
    // Observations from before the field (ready absent) and a deleted Node: as before.
    const unknown = { ...o, nodes: o.nodes.map(({ name, schedulable }) => ({ name, schedulable })) };
    expect(decide(unknown, since(o), past, opts)).toMatchObject(restart);
    const deleted = { ...o, nodes: o.nodes.filter((n) => n.name !== 'node-3') };
    expect(decide(deleted, since(o), past, opts)).toMatchObject(restart);
    // Its claim deleted or Lost (the user's word that the node and its data are gone): replaced, NotReady node or not.
    const two = silent('data-gone');
    two.pods = o.pods;
    two.nodes = o.nodes;
    expect(decide(two, since(two), past, opts)).toMatchObject({
      kind: 'run',
      op: { type: 'replace-member', member: 'c-0002' },
    });
  });

  test('pod gone and claim deleted (a node gone for good, its claim deleted by the user): replaced, never restarted empty', () => {
    const o = silent('data-gone');
    o.pods = o.pods.filter((p) => p.name !== 'c-0002');
    o.voters![2].detail = 'claim c-0002-data deleted';
    expect(decide(o, created, 0, { claimsInPlace: true, lostClaimReplaces: true })).toMatchObject({
      kind: 'run',
      op: { type: 'replace-member', member: 'c-0002', reason: 'its pod c-0002 is gone; claim c-0002-data deleted' },
    });
    // Histories from before the patch restarted it.
    expect(decide(o, created, 0, { claimsInPlace: true })).toMatchObject({ op: { type: 'restart-member' } });
  });

  test('etcd says the data is lost (CORRUPT alarm on the member): replaced', () => {
    const o = silent('unreachable', ['CORRUPT on c-0002']);
    expect(decide(o, since(o), 1000 + unhealthyGraceMs, { claimsInPlace: true })).toMatchObject({
      kind: 'run',
      op: {
        type: 'replace-member',
        member: 'c-0002',
        reason: expect.stringMatching(/etcd raised (a )?CORRUPT (on|alarm for) c-0002/),
      },
    });
  });
});

describe('voter evidence from Kubernetes and etcd', () => {
  const p = (i: number, over: Partial<ReturnType<typeof pod>> = {}) => ({ ...pod(i), ...over });
  test('serving, unreachable, data-present, data-gone', () => {
    const members = [member(0, { answered: true, leaderKnown: false }), member(1), member(2), member(3)];
    const claims = [0, 1, 2].map((i) => ({ member: `c-000${i}`, deleting: false, lost: false }));
    const ev = voterEvidence(['c-0003', 'c-0002', 'c-0001', 'c-0000'], members, [p(0), p(1)], claims, true);
    expect(ev.map((e) => e.evidence)).toEqual(['serving', 'unreachable', 'data-present', 'data-gone']);
    // Unreachable with its pod Ready (the kubelet's probe passes): the detail says so, the controller's path may be cut.
    expect(ev[1].detail).toMatch(
      /^pod Running and Ready \(its etcd answers the kubelet on its node\), not answering the controller/,
    );
    expect(voterEvidence(['c-0001'], members, [p(1, { ready: false })], claims, true)[0].detail).toMatch(
      /^pod Running, not answering the controller/,
    );
    // emptyDir: a pod gone (or being deleted) takes its data with it.
    expect(voterEvidence(['c-0001'], members, [p(1, { deleting: true })], [], false)[0].evidence).toBe('data-gone');
    // A pod on a lost claim starts empty.
    expect(
      voterEvidence(['c-0001'], members, [p(1)], [{ member: 'c-0001', deleting: false, lost: true }], true)[0].evidence,
    ).toBe('data-gone');
  });

  test('voters: through the leader when possible, else the latched list, else every pod and claim', () => {
    const etcd = { members: [member(0), member(1), member(3, { isLearner: true })], linearizable: true };
    expect(knownVoters(etcd, ['c-0002'], [], [])).toEqual(['c-0000', 'c-0001']);
    expect(knownVoters(null, ['c-0000', 'c-0001', 'c-0002'], [pod(0)], [])).toEqual(['c-0000', 'c-0001', 'c-0002']);
    expect(knownVoters(null, [], [pod(0)], [{ member: 'c-0001', deleting: false, lost: false }])).toEqual([
      'c-0000',
      'c-0001',
    ]);
  });
});

describe('etcd alarms and space (issue 14)', () => {
  const corrupt = (i: number) => ['c-0000', 'c-0001', 'c-0002'].map(() => `CORRUPT on c-000${i}`);
  test('CORRUPT: the member etcd names is replaced (its alarm disarmed after), before anything else', () => {
    const names = corrupt(1);
    const o = obs(
      [member(0, { alarms: [names[0]] }), member(1, { alarms: [names[1]] }), member(2, { alarms: [names[2]] })],
      [0, 1, 2, 3],
    );
    expect(decide(o, created, 0)).toEqual({
      kind: 'run',
      op: {
        type: 'replace-member',
        member: 'c-0001',
        corruptId: '1001',
        reason: "etcd raised a CORRUPT alarm for c-0001: its data differs from the other members'",
      },
    });
    // Before the etcd-maintenance patch: as if there were no alarm (here the orphan pod).
    expect(decide(o, created, 0, { maintenance: false })).toMatchObject({
      kind: 'run',
      op: { type: 'remove-orphan-pod' },
    });
  });

  test('CORRUPT: never removed when the others would not keep a quorum', () => {
    const o = obs(
      [member(0, { alarms: corrupt(0) }), member(1, { alarms: corrupt(0) }), member(2, { healthy: false })],
      [0, 1, 2],
    );
    expect(decide(o, created, 0)).toMatchObject({
      kind: 'hold',
      reason: 'ReplacementUnsafe',
      message: expect.stringContaining('CORRUPT for c-0000'),
    });
  });

  test('NOSPACE: the space runbook over the healthy members; it comes before upgrades and resizes', () => {
    const full = ['NOSPACE on c-0002'];
    const o = obs(
      [member(0, { alarms: full }), member(1, { alarms: full }), member(2, { alarms: full })],
      [0, 1, 2],
      5,
    );
    expect(decide(o, created, 0)).toMatchObject({
      kind: 'run',
      op: { type: 'defragment', nospace: true, members: ['c-0000', 'c-0001', 'c-0002'] },
    });
    expect(operationId('ns', 'c', { type: 'defragment', nospace: true, members: [], reason: '' })).toBe('ns/c/nospace');
  });

  test('scheduled defragmentation: only members with enough free space, only when nothing else is due', () => {
    const mib = 2 ** 20;
    const members = [
      member(0, { dbSize: 1000 * mib, dbSizeInUse: 100 * mib }),
      member(1, { dbSize: 1000 * mib, dbSizeInUse: 900 * mib }),
      member(2, { dbSize: 100 * mib, dbSizeInUse: 10 * mib }),
    ];
    expect(decide(obs(members, [0, 1, 2]), created, 0)).toMatchObject({
      kind: 'run',
      op: { type: 'defragment', nospace: false, members: ['c-0000'] },
    });
    expect(decide(obs(members, [0, 1, 2]), created, 0, { maintenance: false })).toMatchObject({ kind: 'idle' });
    // Thresholds from the spec (here: 50 MiB free and 80% of the file).
    const spec = {
      size: 3,
      version: '3.5.33',
      repository: 'quay.io/coreos/etcd',
      etcd: { defragFreeBytes: 50 * mib, defragFreeRatio: 0.8 },
    };
    expect(decide(obs(members, [0, 1, 2], 3, { spec }), created, 0)).toMatchObject({
      kind: 'run',
      op: { members: ['c-0000', 'c-0002'] },
    });
    // A resize first: a defragmentation never runs beside or before another operation.
    expect(decide(obs(members, [0, 1, 2], 5), created, 0)).toMatchObject({ kind: 'run', op: { type: 'scale-up' } });
  });
});

test('3.5 → 3.6 needs every member on 3.5.32 or later first (etcd upgrade guide); refused with what to do', () => {
  const on = (v: string) =>
    obs([member(0, { version: v }), member(1), member(2)], [0, 1, 2], 3, {
      spec: { size: 3, version: '3.6.14', repository: 'quay.io/coreos/etcd' },
    });
  expect(decide(on('3.5.30'), created, 0)).toEqual({
    kind: 'hold',
    reason: 'UpgradeRefused',
    message:
      'upgrading to 3.6 needs every member on 3.5.32 or later first (oldest runs 3.5.30); set spec.version to the latest 3.5 patch (e.g. 3.5.33), then to 3.6.14',
  });
  // Histories from before the etcd-maintenance patch keep the old floor.
  expect(decide(on('3.5.30'), created, 0, { maintenance: false })).toMatchObject({
    kind: 'run',
    op: { type: 'upgrade', from: '3.5.30', to: '3.6.14' },
  });
  expect(decide(on('3.5.32'), created, 0)).toMatchObject({ kind: 'run', op: { type: 'upgrade', from: '3.5.32' } });
});

test('etcdutl check v2store gates 3.5 → 3.6 only; what its result means for the upgrade, and the hold that follows', () => {
  expect(needsV2StoreCheck('3.5.33', '3.6.14')).toBe(true);
  expect(needsV2StoreCheck('3.4.23', '3.5.33')).toBe(false);
  expect(needsV2StoreCheck('3.5.32', '3.5.33')).toBe(false);
  // Only a WAL-aware etcdutl (3.5.32+) can say no barrier is needed.
  expect([v2CheckReadsWal('3.5.26'), v2CheckReadsWal('3.5.32'), v2CheckReadsWal('3.5.33')]).toEqual([
    false,
    true,
    true,
  ]);
  const one = (exitCode: number, output: string, member = 'c-0001') =>
    v2StoreRefusal([{ member, exitCode, output }], '3.5.33');
  expect(v2StoreRefusal([{ member: 'c-0000', exitCode: 0, output: '' }], '3.5.33')).toBeUndefined();
  // etcdutl 3.5.33 (etcdutl/check_command.go): "Error: <what>" on stderr, exit 1.
  const wal = one(1, 'Error: detected custom v2 content in WAL records\n');
  expect(wal).toMatch(
    /^etcdutl check v2store found v2 requests in the WAL after its last snapshot on c-0001: let the member/,
  );
  expect(wal).toMatch(/The members stay on 3\.5\.33 and keep serving; then change spec\.version again to retry$/);
  expect(one(1, 'Error: detected custom content in v2store')).toMatch(
    /found custom content in the v2 store on c-0001: migrate the v2 data to v3/,
  );
  expect(one(1, 'Error: detected custom v2 content in both v2store and WAL records')).toMatch(
    /found custom content in the v2 store and v2 requests in the WAL .*: migrate .*; let the member take/,
  );
  expect(one(1, 'Error: failed to open WAL: permission denied')).toMatch(
    /could not check the data of c-0001 \(exit 1: Error: failed to open WAL: permission denied\); the upgrade needs a clean check/,
  );
  // Members with the same finding are named together, once.
  const store = 'Error: detected custom content in v2store';
  expect(
    v2StoreRefusal(
      [
        { member: 'c-0000', exitCode: 1, output: store },
        { member: 'c-0001', exitCode: 0, output: '' },
        { member: 'c-0002', exitCode: 1, output: store },
      ],
      '3.5.33',
    ),
  ).toMatch(
    /^etcdutl check v2store found custom content in the v2 store on c-0000, c-0002: migrate [^;]*\. The members/,
  );
  // Only v2 requests in a WAL (3.4's /health): a snapshot barrier, then the check again; v2 store data: refused at once.
  const r = (exitCode: number, output = '') => ({ exitCode, output });
  const walOut = 'Error: detected custom v2 content in WAL records';
  expect(v2WalOnly([r(0), r(1, walOut), r(0)])).toBe(true);
  expect(v2WalOnly([r(0), r(0), r(0)])).toBe(false);
  expect(v2WalOnly([r(1, walOut), r(1, 'Error: detected custom content in v2store')])).toBe(false);
  expect(v2WalOnly([r(1, 'Error: failed to open WAL: permission denied')])).toBe(false);
  // The refused upgrade is held for this generation as UpgradeRefused (the cluster workflow remembers it).
  const o = obs([member(0), member(1), member(2)], [0, 1, 2], 3, {
    spec: { size: 3, version: '3.6.14', repository: 'quay.io/coreos/etcd' },
  });
  const mem: Memory = {
    ...created,
    upgradeFailed: { generation: 1, message: `upgrade to 3.6.14 refused: ${wal}`, refused: true },
  };
  expect(decide(o, mem, 0)).toMatchObject({ kind: 'hold', reason: 'UpgradeRefused' });
  expect(decide({ ...o, generation: 2 }, mem, 0)).toMatchObject({ kind: 'run', op: { type: 'upgrade' } });
});

test('a member started with other spec-driven etcd flags is replaced, one per operation, the leader last', () => {
  const o = obs([member(0), member(1), member(2)], [0, 1, 2]);
  o.pods[0].optionsDrift = 'add --election-timeout=2000';
  o.pods[2].optionsDrift = 'add --election-timeout=2000';
  expect(decide(o, created, 0)).toEqual({
    kind: 'run',
    op: {
      type: 'reconfigure-member',
      member: 'c-0002',
      reason: 'etcd flags changed in spec.etcd (add --election-timeout=2000)',
    },
  });
  expect(operationId('ns', 'c', { type: 'reconfigure-member', member: 'c-0002', reason: '' })).toBe(
    'ns/c/reconfigure-c-0002',
  );
  expect(decide(o, created, 0, { maintenance: false })).toMatchObject({ kind: 'idle' });
});

test('spec.tls asking for the other mode: a rolling switch, only with the patch, never while a member is unhealthy', () => {
  const o = obs([member(0), member(1), member(2)], [0, 1, 2], 3, { tls: { enabled: false, switchTo: true } });
  expect(decide(o, created, 0)).toMatchObject({ kind: 'idle' });
  expect(decide(o, created, 0, { tlsSwitch: true })).toMatchObject({
    kind: 'run',
    op: { type: 'switch-tls', to: true },
  });
  const sick = obs([member(0), member(1), member(2, { healthy: false })], [0, 1, 2], 3, {
    tls: { enabled: true, switchTo: false },
  });
  expect(decide(sick, created, 0, { tlsSwitch: true })).toMatchObject({ kind: 'wait' });
  expect(operationId('ns', 'c', { type: 'switch-tls', to: true, reason: '' })).toBe('ns/c/tls-plain-to-tls');
  expect(operationId('ns', 'c', { type: 'switch-tls', to: false, reason: '' })).toBe('ns/c/tls-tls-to-plain');
});
