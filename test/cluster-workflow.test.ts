// The cluster workflow's own logic in seconds: Temporal's test environment (a private dev server from
// the toolchain) with stub activities standing in for Kubernetes and etcd. The real-stack tests stay
// the proof of the operations themselves; these pin workflow-level behaviour.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import pino from 'pino';
import { bins } from '../local/toolchain.js';
import { scheduleActivities } from '../activities/schedules.js';
import { searchKeys } from '../api/names.js';
import type { Activities } from '../activities/index.js';
import type { Bootstrap } from '../activities/member-pod.js';
import type { ClusterWorkflowStatus } from '../workflows/cluster.js';
import type { Observation } from '../workflows/types.js';
import { noCluster } from '../activities/cluster/observe.js';
import { memberView, observation as existing, podView } from './support/observation.js';
import { eventually } from './support/stack.js';
import { bundleWorkflows, quietTemporalRuntime } from './support/workflows.js';
import { cancelOperationSignal, clusterWorkflowType } from '../api/workflows.js';
import { EtcdClusterStatus } from '../api/etcdcluster.js';

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;
let queue = 0;

beforeAll(async () => {
  quietTemporalRuntime();
  env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: bins.temporal },
      ip: '127.0.0.1',
      searchAttributes: Object.values(searchKeys),
    },
  });
  bundle = await bundleWorkflows();
}, 120000);
afterAll(async () => {
  await env?.teardown();
});

/** Runs fn with a worker on a fresh task queue that uses these stub activities. */
async function withWorker<T>(activities: Partial<Activities>, fn: (taskQueue: string) => Promise<T>): Promise<T> {
  const taskQueue = `wf-test-${queue++}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: bundle,
    activities,
  });
  return worker.runUntil(fn(taskQueue));
}

const ref = { namespace: 'default', name: 'c', uid: 'uid-1' };
const member = (i: number, healthy = true) => memberView(i, { healthy, isLeader: i === 1, revision: '10' });
const pod = (i: number) => podView(i, { ip: undefined, image: 'quay.io/coreos/etcd:v3.5.33', ageSeconds: 100 });
/** A cluster of these members; a member without a pod is dead (its pod is gone). */
function observation(members: number[], pods = members): Observation {
  return existing({
    uid: ref.uid,
    highestIndex: Math.max(...members),
    spec: { size: 3, version: '3.5.33', repository: 'quay.io/coreos/etcd', backup: { snapshotIntervalInSecond: 3600 } },
    pods: pods.map(pod),
    etcd: { members: members.map((i) => member(i, pods.includes(i))) },
    observedAt: new Date().toISOString(),
  });
}
const quiet = {
  publishStatus: async () => undefined,
  recordEvent: async () => undefined,
  recordOperationMetric: async () => undefined,
};

test("a cancel signal delivered at a run's first activation does not fail the workflow task", async () => {
  const gone = noCluster('');
  await withWorker({ ...quiet, observeCluster: async () => gone }, async (taskQueue) => {
    // signal-with-start buffers the signal: its handler runs inside the run's first activation.
    const handle = await env.client.workflow.signalWithStart(clusterWorkflowType, {
      workflowId: 'default/c-cancel-first',
      taskQueue,
      args: [{ namespace: 'default', name: 'c-cancel-first' }],
      signal: cancelOperationSignal,
      signalArgs: [],
    });
    const result = await Promise.race([handle.result(), new Promise((r) => setTimeout(() => r('timed out'), 20000))]);
    const failedTasks = (await handle.fetchHistory()).events?.filter((e) => e.workflowTaskFailedEventAttributes) ?? [];
    expect(failedTasks.map((e) => e.workflowTaskFailedEventAttributes?.failure?.message)).toEqual([]);
    expect(result).toBe('default/c-cancel-first is gone');
  });
}, 60000);

test('a scheduled backup that cannot succeed never stops a member replacement running meanwhile; its failure is an Event and status.lastBackup; destroy deletes the Schedule', async () => {
  let world = observation([0, 1, 2]);
  let backupAttempts = 0;
  const events: string[] = [];
  let status: Partial<EtcdClusterStatus> = {};
  const stubs: Partial<Activities> = {
    ...quiet,
    // The real Schedule activity against the test server: the backup runs as the Schedule's own workflow.
    ...scheduleActivities(env.client, pino({ level: 'silent' })),
    publishStatus: async (_ref, s) => {
      status = s;
    },
    recordEvent: async (_ref, _type, reason) => {
      events.push(reason);
    },
    observeCluster: async () => world,
    ensureBackupTool: async () => undefined,
    takeBackup: async () => {
      backupAttempts++;
      throw new Error('backup claim full: ENOSPC');
    },
    checkClusterHealthy: async () => '3 healthy',
    removeMember: async () => 'removed',
    deleteMemberPod: async () => undefined,
    createJoiningPod: async () => 'created',
    waitHeldPodStarted: async () => '10.0.0.4',
    addLearner: async () => ({ id: '1003', initialCluster: 'c-0001=…,c-0002=…,c-0003=…' }),
    releaseJoiningPod: async () => 'released',
    waitMemberPodRunning: async () => 'running',
    waitLearnerCaughtUp: async () => 'caught up',
    promoteLearner: async () => undefined,
    waitMemberHealthy: async () => {
      world = observation([1, 2, 3]);
      return 'healthy';
    },
    deleteClusterResources: async () => 'deleted',
    removeFinalizer: async () => undefined,
  };
  await withWorker(stubs, async (taskQueue) => {
    const handle = await env.client.workflow.start(clusterWorkflowType, {
      workflowId: 'default/c',
      taskQueue,
      args: [
        {
          namespace: 'default',
          name: 'c',
          healthCheckSeconds: 1,
          waitCapSeconds: 3, // the run's takeBackup deadline
          state: {
            uid: ref.uid,
            memory: { created: true, unhealthySince: {} },
            nextIndex: 3,
            lastOperations: [],
            conditions: [],
            backupTool: true,
          },
        },
      ],
    });
    try {
      await eventually('the scheduled backup failing', async () => backupAttempts > 0, 20000, 200);
      world = observation([0, 1, 2], [1, 2]); // c-0000's pod is gone: replace it
      const s = await eventually(
        'replacement done',
        async () => {
          const st = await handle.query<ClusterWorkflowStatus>('status');
          return st.lastOperations.find((o) => o.type === 'replace-member') && st;
        },
        30000,
        500,
      );
      expect(s.lastOperations.find((o) => o.type === 'replace-member')).toMatchObject({
        workflowId: 'default/c/replace-c-0000',
        result: 'Succeeded',
      });
      expect(status.backupSchedule).toBe('default/c/backups');
      await eventually('the backup failure reported', async () => events.includes('BackupFailed'), 20000, 200);
      await eventually(
        'status.lastBackup failed',
        async () => (status.lastBackup as { result?: string } | undefined)?.result === 'Failed',
        20000,
        200,
      );
      expect((status.lastBackup as { message?: string }).message).toMatch(/backup claim full: ENOSPC/);
      // Destroy deletes the Schedule.
      world = { ...observation([1, 2, 3]), deleting: true };
      expect(await handle.result()).toBe('default/c destroyed');
      await expect(env.client.schedule.getHandle('default/c/backups').describe()).rejects.toThrow(/not found/i);
    } finally {
      await handle.terminate('test done').catch(() => undefined);
      await env.client.schedule
        .getHandle('default/c/backups')
        .delete()
        .catch(() => undefined);
    }
  });
}, 90000);

test('a disaster recovery that keeps failing backs off (5 s, 10 s, …) and says so in the status', async () => {
  const lost: Observation = { ...observation([0, 1, 2], []), etcd: null };
  const attempts: number[] = [];
  await withWorker(
    {
      ...quiet,
      observeCluster: async () => lost,
      chooseRestoreSource: async () => {
        attempts.push(Date.now());
        throw ApplicationFailure.nonRetryable('no backup and no surviving member', 'NoRestoreSource');
      },
    },
    async (taskQueue) => {
      const handle = await env.client.workflow.start(clusterWorkflowType, {
        workflowId: 'default/c-dr',
        taskQueue,
        args: [
          {
            namespace: 'default',
            name: 'c-dr',
            healthCheckSeconds: 1,
            state: {
              uid: ref.uid,
              memory: { created: true, unhealthySince: {}, quorumLostSince: 0 },
              nextIndex: 3,
              lastOperations: [],
              conditions: [],
              backupTool: true,
            },
          },
        ],
      });
      try {
        await eventually('three recovery attempts', async () => attempts.length >= 3, 40000, 200);
        const gaps = attempts.slice(1).map((t, i) => (t - attempts[i]) / 1000);
        expect(gaps[0]).toBeGreaterThanOrEqual(4.5);
        expect(gaps[1]).toBeGreaterThanOrEqual(9.5);
        const s = await eventually(
          'the third failure recorded',
          async () => {
            const st = await handle.query<ClusterWorkflowStatus>('status');
            return st.decision?.kind === 'hold' && / 3 time/.test(st.decision.message) && st;
          },
          20000,
          200,
        );
        expect(s.decision).toMatchObject({ kind: 'hold', reason: 'RetryBackoff' });
        expect(s.decision?.kind === 'hold' && s.decision.message).toMatch(
          /^recover did not succeed 3 time\(s\) in a row; next attempt at /,
        );
        const failedTasks =
          (await handle.fetchHistory()).events?.filter((e) => e.workflowTaskFailedEventAttributes) ?? [];
        expect(failedTasks.map((e) => e.workflowTaskFailedEventAttributes?.failure?.message)).toEqual([]);
      } finally {
        await handle.terminate('test done');
      }
    },
  );
}, 90000);

/** A wait that never ends by itself but notices cancellation (as the real polling activities do). */
const hang = async (): Promise<never> => {
  for (;;) {
    Context.current().heartbeat();
    await Context.current().sleep(200);
  }
};

/** The cluster workflow's state once the cluster was created (members 0..2). */
const createdState = () => ({
  uid: ref.uid,
  memory: { created: true, unhealthySince: {} },
  nextIndex: 3,
  lastOperations: [],
  conditions: [],
});

/** Starts the cluster workflow on `world`, waits until `running` says the operation reached its wait, sends the
 *  cancel signal the CLI sends, and returns the status once the operation has ended. */
async function cancelDuring(id: string, world: Observation, stubs: Partial<Activities>, running: () => boolean) {
  const base = { ...quiet, observeCluster: async () => world, checkClusterHealthy: async () => '3 healthy' };
  return withWorker({ ...base, ...stubs }, async (taskQueue): Promise<ClusterWorkflowStatus> => {
    const state = createdState();
    const handle = await env.client.workflow.start(clusterWorkflowType, {
      workflowId: `default/${id}`,
      taskQueue,
      args: [{ namespace: 'default', name: id, healthCheckSeconds: 1, state }],
    });
    try {
      await eventually('the operation waiting', async () => running(), 20000, 100);
      await handle.signal(cancelOperationSignal);
      return await eventually(
        'the operation ended',
        async () => {
          const st = await handle.query<ClusterWorkflowStatus>('status');
          return st.lastOperations.length > 0 && st.decision?.kind !== 'run' && st;
        },
        30000,
        200,
      );
    } finally {
      await handle.terminate('test done');
    }
  });
}

test('a cancelled join removes its learner, then its pod, and is recorded as Cancelled', async () => {
  const undone: string[] = [];
  let waiting = false;
  const world = { ...observation([0, 1, 2]), spec: { ...observation([0]).spec!, size: 4 } };
  const s = await cancelDuring(
    'c-join',
    world,
    {
      ensureServices: async () => undefined,
      createJoiningPod: async () => 'created',
      waitHeldPodStarted: async () => '10.0.0.4',
      addLearner: async () => ({ id: '1003', initialCluster: 'c-0000=…,c-0001=…,c-0002=…,c-0003=…' }),
      releaseJoiningPod: async () => 'released',
      waitMemberPodRunning: async () => {
        waiting = true;
        return hang();
      },
      removeLearner: async (_r, m) => {
        undone.push(`learner ${m}`);
        return 'removed';
      },
      deleteMemberPod: async (_r, m) => {
        undone.push(`pod ${m}`);
      },
    },
    () => waiting,
  );
  expect(undone).toEqual(['learner c-join-0003', 'pod c-join-0003']);
  expect(s.lastOperations[0]).toMatchObject({ type: 'scale-up', result: 'Cancelled' });
}, 60000);

test('a cancelled upgrade is recorded as Cancelled, and held as UpgradeCancelled until the spec changes', async () => {
  let waiting = false;
  const world = { ...observation([0, 1, 2]), spec: { ...observation([0]).spec!, version: '3.5.34' } };
  const s = await cancelDuring(
    'c-upgrade',
    world,
    {
      moveLeaderAway: async () => 'not the leader',
      setMemberImage: async () => 'image set',
      waitMemberUpgraded: async () => {
        waiting = true;
        return hang();
      },
    },
    () => waiting,
  );
  expect(s.lastOperations[0]).toMatchObject({ type: 'upgrade', result: 'Cancelled' });
  expect(s.decision).toMatchObject({ kind: 'hold', reason: 'UpgradeCancelled' });
}, 60000);

test('spec.restore: a new cluster starts from the chosen backup with its own token, every member restored and started together, and says what it restored (issues 17, 19)', async () => {
  const bootstraps: { members: string[]; initialCluster: string; bootstrap: Bootstrap }[] = [];
  const spec = {
    size: 3,
    version: '3.5.33',
    repository: 'quay.io/coreos/etcd',
    backup: { s3: { bucket: 'b-1', credentialsSecret: 's' } },
    restore: { cluster: 'src' },
  };
  const chosen = {
    snapshot: 'default/src/etcd-snapshot-rev42-x.db.gz',
    revision: 42,
    source: 'backup s3://b-1/default/src/etcd-snapshot-rev42-x.db.gz of default/src (uid u-src)',
    url: 'http://10.0.0.9:19999',
    newestKnownRevision: 42,
    time: '2026-11-28T10:00:00Z',
  };
  const stubs: Partial<Activities> = {
    ensureFinalizer: async () => undefined,
    ensureServices: async () => undefined,
    ensureBackupTool: async () => undefined,
    recordEvent: async () => undefined,
    chooseBackupToRestore: async (_ref, restore) => {
      expect(restore).toEqual({ cluster: 'src' });
      return chosen;
    },
    bootstrapMembers: async (_ref, _spec, members, initialCluster, bootstrap) => {
      bootstraps.push({ members, initialCluster, bootstrap });
      return { started: members, lost: [] };
    },
    waitMembersHealthy: async () => 'healthy',
  };
  const res = await withWorker(stubs, (taskQueue) =>
    env.client.workflow.execute('createCluster', {
      taskQueue,
      workflowId: `wf-restore-${queue}`,
      args: [{ ref, spec, op: { type: 'create', size: 3 }, nextIndex: 0 }],
    }),
  );
  expect(bootstraps).toEqual([
    {
      members: ['c-0000', 'c-0001', 'c-0002'],
      initialCluster: expect.stringMatching(/^c-0000=http:.*,c-0001=http:.*,c-0002=http:/),
      bootstrap: { token: expect.stringMatching(/-b0$/), restore: { url: chosen.url, snapshot: chosen.snapshot } },
    },
  ]);
  expect(res.details.restoredFrom).toMatchObject({
    source: chosen.source,
    backup: chosen.snapshot,
    revision: 42,
    backupTime: chosen.time,
  });
}, 60000);

test('owned objects are applied once per spec generation and again when one is missing, not on every pass', async () => {
  let world: Observation = { ...observation([0, 1, 2]), ownedMissing: [] };
  const applied: string[] = [];
  const events: string[] = [];
  const stubs: Partial<Activities> = {
    ...quiet,
    recordEvent: async (_ref, _type, reason) => {
      events.push(reason);
    },
    observeCluster: async () => world,
    ensureServices: async () => {
      applied.push(`services@${world.generation}`);
    },
    ensureBackupTool: async (_ref, backup) => {
      applied.push(`backup-tool maxSnapshot=${backup.maxSnapshot ?? 0}`);
    },
    ensureBackupSchedule: async () => 'made',
  };
  await withWorker(stubs, async (taskQueue) => {
    const state = { ...createdState(), backupTool: true };
    const handle = await env.client.workflow.start(clusterWorkflowType, {
      workflowId: 'default/c-owned',
      taskQueue,
      args: [{ namespace: 'default', name: 'c-owned', healthCheckSeconds: 1, state }],
    });
    try {
      await eventually('first apply', async () => applied.length >= 2, 20000, 100);
      expect(applied).toEqual(['services@1', 'backup-tool maxSnapshot=0']);
      await new Promise((r) => setTimeout(r, 3000)); // three quiet passes: nothing applied
      expect(applied).toHaveLength(2);
      world = { ...world, ownedMissing: ['Service/c-client'] }; // deleted by hand
      await eventually('applied again', async () => applied.length >= 4, 20000, 100);
      world = { ...world, ownedMissing: [], generation: 2, spec: { ...world.spec!, backup: { maxSnapshot: 3 } } };
      await eventually('spec change rolled out', async () => applied.includes('backup-tool maxSnapshot=3'), 20000, 100);
      expect(applied.slice(4)).toEqual(['services@2', 'backup-tool maxSnapshot=3']);
      const failedTasks =
        (await handle.fetchHistory()).events?.filter((e) => e.workflowTaskFailedEventAttributes) ?? [];
      expect(failedTasks).toEqual([]);
      expect(events).not.toContain('ConvergeFailed');
    } finally {
      await handle.terminate('test done');
    }
  });
}, 60000);

test('a scale-down 5 → 3 retires two non-leaders one at a time, the first chosen from the look that decided it', async () => {
  const spec = { size: 3, version: '3.5.33', repository: 'quay.io/coreos/etcd' };
  let world: Observation = { ...observation([0, 1, 2, 3, 4]), spec };
  const retired: string[] = [];
  const events: string[] = [];
  const leftOut: string[][] = [];
  let retiring = 0;
  let maxRetiring = 0;
  const stubs: Partial<Activities> = {
    ...quiet,
    recordEvent: async (_ref, _type, reason) => {
      events.push(reason);
    },
    observeCluster: async () => world,
    ensureServices: async () => undefined,
    retireFromEtcd: async (_ref, member, _reason, opts) => {
      leftOut.push(opts?.removed ?? []);
      maxRetiring = Math.max(maxRetiring, ++retiring);
      await new Promise((r) => setTimeout(r, 100));
      retired.push(member);
      const left = world.etcd!.members.filter((m) => m.podName !== member);
      world = { ...world, etcd: { ...world.etcd!, members: left } };
      retiring--;
      return 'removed';
    },
    deleteMemberPod: async (_ref, member) => {
      world = { ...world, pods: world.pods.filter((p) => p.name !== member) };
    },
  };
  await withWorker(stubs, async (taskQueue) => {
    const handle = await env.client.workflow.start(clusterWorkflowType, {
      workflowId: 'default/c',
      taskQueue,
      args: [{ namespace: 'default', name: 'c', healthCheckSeconds: 1, state: createdState() }],
    });
    try {
      const s = await eventually(
        'the resize done',
        async () => {
          const st = await handle.query<ClusterWorkflowStatus>('status');
          return st.lastOperations.some((o) => o.type === 'scale-down') && st;
        },
        30000,
        200,
      );
      expect(s.lastOperations.at(-1)).toMatchObject({ workflowId: 'default/c/resize-5-to-3', result: 'Succeeded' });
      expect(retired).toHaveLength(2);
      expect(retired).not.toContain('c-0001'); // the leader
      expect(maxRetiring).toBe(1); // one membership change at a time
      // The second removal's view leaves the first victim out (its pod may still run a stopping etcd).
      expect(leftOut).toEqual([[], [retired[0]]]);
      await eventually('its end recorded', async () => events.includes('OperationSucceeded'), 10000, 200);
      const child = (await env.client.workflow.getHandle('default/c/resize-5-to-3').fetchHistory()).events ?? [];
      const looks = child.filter(
        (e) =>
          e.activityTaskScheduledEventAttributes?.activityType?.name === 'observeCluster' ||
          e.markerRecordedEventAttributes?.markerName === 'core_local_activity',
      );
      // One look of its own (beside the first removal, for the second victim): the first is the loop's.
      expect(looks).toHaveLength(1);
    } finally {
      await handle.terminate('test done').catch(() => undefined);
    }
  });
}, 60000);
