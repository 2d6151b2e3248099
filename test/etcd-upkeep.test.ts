// etcd upkeep, pure parts: alarms are not ill health, maintenance flags and their validation.
import { validateSpec } from '../activities/cluster/spec.js';
import { statusProblems } from '../activities/etcd-client.js';
import { etcdCommand, memberPod, optionFlags, optionsDrift } from '../activities/member-pod.js';
import { decide } from '../workflows/plan.js';
import { buildStatus } from '../workflows/status.js';
import { memberView, observation, podView } from './support/observation.js';
import { optionsAnnotation, type EtcdClusterSpec } from '../api/etcdcluster.js';

const ref = { namespace: 'default', name: 'c', uid: 'u' };
const spec = (over: Partial<EtcdClusterSpec> = {}): EtcdClusterSpec => ({
  size: 3,
  version: '3.6.14',
  repository: 'quay.io/coreos/etcd',
  ...over,
});
const flags = (s: EtcdClusterSpec) =>
  etcdCommand(ref, s, 'c-0000', 'c-0000=http://x:2380', 'new').filter((f) => /compaction|quota/.test(f));

test('Status errors: alarms (as etcd 3.6.14 reports them) apart from other problems', () => {
  expect(statusProblems(['memberID:3319814642761637952 alarm:NOSPACE ', 'etcdserver: no leader'])).toEqual({
    alarms: [{ memberId: '3319814642761637952', alarm: 'NOSPACE' }],
    other: ['etcdserver: no leader'],
  });
  expect(statusProblems(undefined)).toEqual({ alarms: [], other: [] });
});

test('a NOSPACE alarm on every member is not quorum loss; the status shows it', () => {
  const member = (i: number) =>
    memberView(i, { id: String(i + 1), peerURL: '', version: '3.6.14', alarms: ['NOSPACE on c-0000'] });
  const obs = observation({
    spec: spec(),
    pods: [0, 1, 2].map((i) => podView(i)),
    etcd: { members: [0, 1, 2].map(member) },
  });
  // Not quorum loss: the space runbook for every member (and nothing before the etcd-maintenance patch).
  expect(decide(obs, { created: true, unhealthySince: {} }, 0)).toMatchObject({
    kind: 'run',
    op: { type: 'defragment', nospace: true, members: ['c-0000', 'c-0001', 'c-0002'] },
  });
  const decision = decide(obs, { created: true, unhealthySince: {} }, 0, { maintenance: false });
  expect(decision).toMatchObject({ kind: 'idle', reason: 'Running' });
  const status = buildStatus({
    name: 'c',
    namespace: 'default',
    obs,
    decision,
    lastOperations: [],
    previous: [],
    now: 't',
  });
  expect(status.phase).toBe('Running');
  expect(status.conditions).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ type: 'Alarm', status: 'True', message: expect.stringContaining('NOSPACE on c-0000') }),
    ]),
  );
  expect((status.memberStatuses as { alarms?: string[] }[])[1].alarms).toEqual(['NOSPACE on c-0000']);
  // Without alarms the status has neither the condition nor the field (unchanged for existing clusters).
  const clean = buildStatus({
    name: 'c',
    namespace: 'default',
    obs: { ...obs, etcd: { members: [0, 1, 2].map((i) => ({ ...member(i), alarms: undefined })) } },
    decision,
    lastOperations: [],
    previous: [],
    now: 't',
  });
  expect(JSON.stringify(clean)).not.toMatch(/alarm/i);
});

test('compaction defaults on every version; quota only when set', () => {
  for (const version of ['3.4.23', '3.5.33', '3.6.14']) {
    expect(flags(spec({ version }))).toEqual(['--auto-compaction-mode=periodic', '--auto-compaction-retention=5m']);
  }
  expect(
    flags(
      spec({ etcd: { autoCompactionMode: 'revision', autoCompactionRetention: 10000, quotaBackendBytes: 4 << 20 } }),
    ),
  ).toEqual(['--auto-compaction-mode=revision', '--auto-compaction-retention=10000', '--quota-backend-bytes=4194304']);
});

test('maintenance settings etcd would refuse are an invalid spec with a clear message', () => {
  expect(validateSpec(spec())).toBeUndefined();
  expect(
    validateSpec(spec({ etcd: { autoCompactionRetention: '1h30m', quotaBackendBytes: 2 ** 31 } })),
  ).toBeUndefined();
  expect(validateSpec(spec({ etcd: { autoCompactionRetention: 2 } }))).toBeUndefined();
  expect(validateSpec(spec({ etcd: { autoCompactionMode: 'hourly' as 'periodic' } }))).toMatch(
    /autoCompactionMode hourly is not supported: use periodic or revision/,
  );
  expect(validateSpec(spec({ etcd: { autoCompactionRetention: 'five minutes' } }))).toMatch(
    /autoCompactionRetention five minutes is not valid for periodic compaction: use a duration such as 5m/,
  );
  expect(validateSpec(spec({ etcd: { autoCompactionMode: 'revision', autoCompactionRetention: '5m' } }))).toMatch(
    /not valid for revision compaction: use a number of revisions/,
  );
  expect(validateSpec(spec({ etcd: { quotaBackendBytes: 1000 } }))).toMatch(
    /quotaBackendBytes 1000 is out of range: use a number of bytes from 1048576/,
  );
  expect(validateSpec(spec({ etcd: { quotaBackendBytes: 16 * 2 ** 30 } }))).toMatch(/out of range/);
});

test("etcd flags: passed through to members after the controller's; metrics on their own port", () => {
  const cmd = etcdCommand(
    ref,
    spec({
      etcd: {
        flags: { 'election-timeout': '1500', 'heartbeat-interval': 150, metrics: 'extensive', 'experimental-x': true },
      },
    }),
    'c-0000',
    'c-0000=http://x:2380',
    'new',
  );
  expect(cmd.slice(-5)).toEqual([
    '--listen-metrics-urls=http://0.0.0.0:2381',
    '--election-timeout=1500',
    '--heartbeat-interval=150',
    '--metrics=extensive',
    '--experimental-x=true',
  ]);
  expect(
    validateSpec(
      spec({
        etcd: {
          flags: {
            'election-timeout': '1500',
            'heartbeat-interval': 150,
            'log-level': 'debug',
            'experimental-x': true,
          },
        },
      }),
    ),
  ).toBeUndefined();
});

test('etcd flags the controller owns, unknown ones and values etcd would refuse: refused with the reason', () => {
  expect(validateSpec(spec({ etcd: { flags: { 'data-dir': '/x' } } }))).toBe(
    "spec.etcd.flags refused, nothing was changed: --data-dir is owned by the controller: the controller sets it from the cluster's name, member and volume; remove it",
  );
  expect(validateSpec(spec({ etcd: { flags: { 'quota-backend-bytes': 1 } } }))).toMatch(
    /--quota-backend-bytes is owned by the controller: use spec.etcd.quotaBackendBytes/,
  );
  expect(validateSpec(spec({ etcd: { flags: { 'initial-cluster': 'a=b' } } }))).toMatch(
    /--initial-cluster is owned by the controller/,
  );
  expect(validateSpec(spec({ etcd: { flags: { 'peer-cert-file': '/c' } } }))).toMatch(
    /TLS is the controller's \(spec.tls\)/,
  );
  expect(validateSpec(spec({ etcd: { flags: { 'unknown-flag': '1' } } }))).toMatch(
    /--unknown-flag is not a flag the controller passes through/,
  );
  expect(validateSpec(spec({ etcd: { flags: { 'log-level': 'debug --name=x' } } }))).toMatch(/is not a single value/);
  expect(validateSpec(spec({ etcd: { flags: { 'election-timeout': 400 } } }))).toMatch(
    /must be at least 5 × --heartbeat-interval \(100\)/,
  );
});

test('flag drift: what a member started with (its annotation) against the spec; unknown for members started before', () => {
  const started = JSON.stringify(optionFlags(spec({ etcd: { flags: { 'election-timeout': '1500' } } })));
  expect(optionsDrift(started, spec({ etcd: { flags: { 'election-timeout': '1500' } } }))).toBeUndefined();
  expect(optionsDrift(started, spec({ etcd: { flags: { 'election-timeout': '2000' } } }))).toBe(
    'drop --election-timeout=1500, add --election-timeout=2000',
  );
  expect(optionsDrift(started, spec())).toBe('drop --election-timeout=1500');
  expect(optionsDrift(undefined, spec())).toBeUndefined();
  const pod = memberPod(ref, spec({ etcd: { quotaBackendBytes: 1 << 20 } }), 'c-0000', 'c-0000=http://x:2380', 'new');
  expect(JSON.parse(pod.metadata!.annotations![optionsAnnotation])).toEqual([
    '--auto-compaction-mode=periodic',
    '--auto-compaction-retention=5m',
    '--quota-backend-bytes=1048576',
  ]);
});
