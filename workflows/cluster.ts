// One long-lived workflow per EtcdCluster: observe → decide → run one operation → publish status,
// again on every signal from the watcher and at least every 10 s (the etcd health check).
import {
  ApplicationFailure,
  ChildWorkflowCancellationType,
  ParentClosePolicy,
  condition,
  continueAsNew,
  defineQuery,
  isCancellation,
  patched,
  setHandler,
  sleep,
  startChild,
  workflowInfo,
  allHandlersFinished,
  CancellationScope,
} from '@temporalio/workflow';
import { act, look, once, waitCapMemo } from './activities.js';
import { backupScheduleId, clusterWorkflowId, destroyWorkflowId, operationId, searchTags } from '../api/names.js';
import * as operations from './operations.js';
import { majorityWarning, spreadOf } from './placement.js';
import { rotateCertificates } from './rotation.js';
import { decide, hasQuorum, runningVersion, trackHealth, type Decision, type Memory } from './plan.js';
import { buildStatus, failureMessage, type MaintenanceRecord } from './status.js';
import type { Observation, Operation, OperationResult } from './types.js';
import type { BackupSpec, ClusterRef } from '../api/etcdcluster.js';
import { type RunningOperation, type Condition, type OperationRecord } from '../api/etcdcluster.js';
import { cancelOperationSignal, reconcileSignal, restoreSignal } from '../api/workflows.js';

export const clusterStatusQuery = defineQuery<ClusterWorkflowStatus>('status');

export interface EntityState {
  uid?: string;
  memory: Memory;
  nextIndex: number;
  lastOperations: OperationRecord[];
  conditions: Condition[];
  lastHold?: string;
  lastSpreadWarning?: string;
  lastStatus?: string;
  lastBackup?: Record<string, unknown>;
  lastBackupAt?: number;
  /** The tool's last restore check of a backup (status.lastVerification). */
  lastVerification?: Record<string, unknown>;
  backupTool?: boolean;
  /** The backup Schedule as last made to match spec.backup (its arguments), and when to try again if that failed. */
  backupSchedule?: string;
  backupScheduleRetryAt?: number;
  lastRecovery?: Record<string, unknown>;
  /** What a cluster created from a backup (spec.restore) was restored from. */
  restoredFrom?: Record<string, unknown>;
  /** Owned objects last applied for this `<uid>/<generation>`, when (workflow ms), and when to try again after a
   *  failure. */
  owned?: { applied?: string; at?: number; retryAt?: number };
  /** spec.auth as last made so in etcd (`<uid>/<JSON>`), whether that enabled it, when, and when to try again. */
  auth?: { applied?: string; enabled?: boolean; at?: number; retryAt?: number };
  maintenance?: MaintenanceRecord;
  /** The last operation that did not succeed, how many times in a row, and when it may run again (workflow ms). */
  lastFailure?: { workflowId: string; count: number; retryAt: number };
}

export interface ClusterWorkflowInput {
  namespace: string;
  name: string;
  state?: EntityState;
  healthCheckSeconds?: number;
  continueAsNewAfter?: number;
  /** Caps every operation's wait deadlines (seconds; tests only, see waitCapMemo). */
  waitCapSeconds?: number;
}

export interface ClusterWorkflowStatus {
  decision?: Decision;
  running?: RunningOperation;
  lastOperations: OperationRecord[];
  nextIndex: number;
}

/** The child workflow of each operation type (each must be exported by workflows/index.ts). */
export const operationWorkflows = {
  create: operations.createCluster,
  'scale-up': operations.resizeCluster,
  'scale-down': operations.resizeCluster,
  'replace-member': operations.replaceMember,
  'restart-member': operations.restartMember,
  'remove-ghost-member': operations.removeGhostMember,
  'remove-orphan-pod': operations.removeOrphanPod,
  upgrade: operations.upgradeCluster,
  recover: operations.recoverCluster,
  'move-member': operations.moveMember,
  defragment: operations.defragmentCluster,
  'reconfigure-member': operations.reconfigureMember,
  'rotate-certs': rotateCertificates,
  'switch-tls': operations.switchTls,
} as const;

/** Owned objects are applied again at least this often (besides spec changes and deletions seen at once). */
const convergePeriodMs = 10 * 60_000;
/** How long an operation runs before its current step goes to the status (step-status-after-2s). */
const stepStatusAfterMs = 2000;

export async function etcdClusterWorkflow(input: ClusterWorkflowInput): Promise<string> {
  const state: EntityState = input.state ?? {
    memory: { created: false, unhealthySince: {} },
    nextIndex: 0,
    lastOperations: [],
    conditions: [],
  };
  let poked = true;
  let decision: Decision | undefined;
  let running: RunningOperation | undefined;
  // State the handlers touch is declared before them: signals buffered before this run started are
  // delivered inside setHandler, so a handler must never reach a `let` that is not declared yet.
  let cancelRequested = false;
  let stepChanged = false;
  /** The scheduled backup in flight: the loop never waits for it. */
  let backupRun: Promise<void> | undefined;
  /** The last operation's end (its Event and metric) being recorded beside the next look and status. */
  let endRecorded: Promise<unknown> | undefined;
  setHandler(reconcileSignal, () => {
    poked = true;
  });
  setHandler(cancelOperationSignal, () => {
    cancelRequested = true;
  });
  setHandler(restoreSignal, () => {
    state.memory.restoreRequested = true;
    poked = true;
  });
  // A scheduled backup run's outcome (the Schedule's runs are not our children).
  setHandler(operations.backupFinishedSignal, (record) => {
    const { verification, ...rest } = record;
    state.lastBackup = rest;
    if (verification) state.lastVerification = verification as Record<string, unknown>;
    poked = true;
  });
  setHandler(operations.operationProgressSignal, (step) => {
    if (running) {
      running = { ...running, step };
      stepChanged = true;
    }
  });
  setHandler(clusterStatusQuery, () => ({
    decision,
    running,
    lastOperations: state.lastOperations,
    nextIndex: state.nextIndex,
  }));
  let backupInterval = 1800;
  const base = { namespace: input.namespace, name: input.name };

  for (;;) {
    await condition(() => poked, nextWake());
    poked = false;
    // Since this patch the look is a local activity: an idle cluster adds ~6 history events per health check, not 11.
    const obs = lookLocally() ? await look.observeCluster(base) : await act.observeCluster(base);
    backupInterval = obs.spec?.backup?.snapshotIntervalInSecond ?? 1800;
    if (!obs.exists || (state.uid && obs.uid !== state.uid)) {
      await dropBackupSchedule({ ...base, uid: state.uid ?? '' });
      return `${clusterWorkflowId(base)} is gone`;
    }
    state.uid ??= obs.uid;
    const ref: ClusterRef = { ...base, uid: obs.uid };

    if (obs.deleting) {
      running = {
        type: 'destroy',
        workflowId: destroyWorkflowId(base),
        startedAt: new Date().toISOString(),
      };
      await publish(ref, obs, {
        kind: 'wait',
        reason: 'Destroying',
        message: 'deleting member pods, services and claims',
      });
      await dropBackupSchedule(ref);
      try {
        await startChild(operations.destroyCluster, {
          workflowId: running.workflowId,
          args: [{ ref }],
          typedSearchAttributes: searchTags(ref, 'destroy'),
          staticSummary: `destroy ${ref.namespace}/${ref.name}`,
        }).then((h) => h.result());
        return `${clusterWorkflowId(base)} destroyed`;
      } catch (e) {
        // A destroy past its deadline is tried again, backing off: the cluster workflow itself never fails.
        if (isCancellation(e)) throw e;
        running = undefined;
        await act.recordEvent(ref, 'Warning', 'DestroyFailed', failureMessage(e));
        await sleep(backOff(destroyWorkflowId(base)) - Date.now());
        poked = true;
        continue;
      }
    }

    const now = Date.now();
    state.memory = trackHealth(obs, state.memory, now);
    state.memory.created ||= obs.etcd !== null || !!obs.created;
    state.nextIndex = Math.max(state.nextIndex, obs.highestIndex + 1);
    // Since these patches a silent member with a claim is restarted in place unless its data is known lost (issue 12),
    // and etcd alarms run their runbooks (NOSPACE, CORRUPT) and fragmented members are defragmented (issue 14).
    decision = decide(obs, state.memory, now, {
      claimsInPlace: patched('claims-restart-in-place'),
      maintenance: patched('etcd-maintenance'),
      certRotation: patched('tls-cert-rotation'),
      // Since this patch a change of spec.tls on a running cluster is a rolling switch (issue 18), no longer refused.
      tlsSwitch: obs.tls?.switchTo !== undefined && patched('tls-switch'),
      // Since this patch a silent member with a claim on a NotReady node is held, never recreated (issue 15).
      nodeDown: patched('member-node-not-ready'),
      lostClaimReplaces: patched('lost-claim-replaces'),
    });
    if (decision.kind === 'run') decision = backingOff(decision.op, now) ?? decision;
    await reportHold(ref, decision);
    await reportSpread(ref, obs);
    // Since this patch an operation's child starts first, its status and Event go out right after (issue 17):
    // the status published here would be replaced at once by the one naming the running operation.
    const startFirst = decision.kind === 'run' && patched('operation-starts-first');
    if (!startFirst) await publish(ref, obs, decision);
    await operationEndRecorded();
    // Since this patch owned objects converge: applied again on a spec change, when one is gone, and every
    // convergePeriodMs (edits in place, a newer controller's builders); before any operation (members need the headless Service).
    const converge = patched('owned-objects-converge');
    // Since this patch (issue 17) a scale-down starts first and they converge beside it: no member joins.
    const convergeBeside =
      converge && decision.kind === 'run' && decision.op.type === 'scale-down' && patched('scale-down-converge-beside');
    if (converge && !convergeBeside) await convergeOwned(ref, obs, decision);
    // Since this patch spec.auth is made so in etcd (issue 18): users, roles, auth on or off; only with spec.auth set.
    if (obs.spec?.auth && patched('etcd-auth')) await convergeAuth(ref, obs, decision);

    if (decision.kind === 'run') {
      const beside = convergeBeside ? () => convergeOwned(ref, obs, decision!) : undefined;
      await runOperation(ref, obs, decision.op, startFirst, beside);
      poked = true; // look again at once: the next step may be due
    } else {
      await keepBackups(ref, obs, decision);
    }

    // Not while a scheduled backup runs: closing this run would cancel it.
    if (
      !backupRun &&
      (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > (input.continueAsNewAfter ?? 4000))
    ) {
      await operationEndRecorded();
      await condition(allHandlersFinished);
      await continueAsNew<typeof etcdClusterWorkflow>({ ...input, state });
    }
  }

  /** A local activity's time counts toward the workflow task (10 s). Since this patch (issue 17) only a healthy
   *  running cluster looks locally: a look at starting or silent members waits on etcd dials (2 s deadlines), and with
   *  many clusters at once on a loaded machine such tasks ran past their timeout, lost the look and ran it again. */
  function lookLocally(): boolean {
    if (!patched('observe-local')) return false;
    return (decision?.kind === 'idle' && decision.reason === 'Running') || !patched('look-locally-when-running');
  }

  /** Scheduled backups while the cluster serves; spec.backup removed → the tool goes (its claim stays). */
  async function keepBackups(ref: ClusterRef, obs: Observation, d: Decision): Promise<void> {
    const backup = obs.spec?.backup;
    if (!backup) {
      await dropBackupSchedule(ref);
      if (state.backupTool) {
        await act.removeBackupTool(ref);
        state.backupTool = false;
      }
      return;
    }
    if (!state.backupTool) {
      // A refused create (no StorageClass, quota) is non-retryable: say so and try again at the next look.
      try {
        await act.ensureBackupTool(ref, backup);
        state.backupTool = true;
      } catch (e) {
        state.lastBackup = { result: 'Failed', message: failureMessage(e), time: new Date().toISOString() };
        return;
      }
    }
    const serving = d.kind === 'idle' && d.reason === 'Running';
    // Since this patch backups are the cluster's Temporal Schedule (<ns>/<name>/backups), made once the cluster
    // serves and kept matching spec.backup; its runs report back (backupFinishedSignal). Nothing waits here.
    if (patched('backups-on-schedule')) {
      state.lastBackupAt = undefined;
      if (d.kind === 'idle' && !serving) return; // paused or adopting: hands off
      if (!serving && !hasQuorum(obs)) return;
      await keepBackupSchedule(ref, backup);
      return;
    }
    const due = (state.lastBackupAt ?? 0) + (backup.snapshotIntervalInSecond ?? 1800) * 1000;
    if (backupRun || Date.now() < due) return;
    if (d.kind === 'idle' && !serving) return; // paused or adopting: hands off
    if (!serving && !hasQuorum(obs)) return;
    // Since this patch a backup never blocks the loop (health checks, replacement, destroy go on while it
    // runs), and a degraded cluster that still has quorum keeps taking backups: that is when they matter.
    const offPath = patched('backup-off-reconcile-path');
    if (!serving && !offPath) return;
    state.lastBackupAt = Date.now();
    const workflowId = `${clusterWorkflowId(ref)}/backup-${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}`;
    if (offPath) {
      backupRun = runBackup(ref, backup, workflowId).finally(() => {
        backupRun = undefined;
        poked = true;
      });
      return;
    }
    await runBackup(ref, backup, workflowId);
    await publish(ref, obs, d);
  }

  /** Creates or updates the backup Schedule when spec.backup changed. A failure (Temporal refusing) is said in
   *  status.lastBackup and tried again a minute later: it never holds the loop. */
  async function keepBackupSchedule(ref: ClusterRef, backup: BackupSpec): Promise<void> {
    const want = JSON.stringify({ uid: ref.uid, backup, cap: input.waitCapSeconds });
    if (want === state.backupSchedule || Date.now() < (state.backupScheduleRetryAt ?? 0)) return;
    try {
      await once.ensureBackupSchedule(ref, backup, { waitCapSeconds: input.waitCapSeconds });
      state.backupSchedule = want;
      state.backupScheduleRetryAt = undefined;
    } catch (e) {
      if (isCancellation(e)) throw e;
      const message = `backup schedule ${backupScheduleId(ref)} not made: ${failureMessage(e)}`;
      state.lastBackup = { result: 'Failed', message, time: new Date().toISOString() };
      state.backupScheduleRetryAt = Date.now() + 60_000;
    }
  }

  /** Deletes the backup Schedule, if this workflow made one (spec.backup removed, destroy, cluster gone). */
  async function dropBackupSchedule(ref: ClusterRef): Promise<void> {
    if (!state.backupSchedule) return;
    try {
      await once.ensureBackupSchedule(ref, null);
      state.backupSchedule = undefined;
    } catch (e) {
      if (isCancellation(e)) throw e;
      await act.recordEvent(ref, 'Warning', 'BackupScheduleFailed', `${backupScheduleId(ref)}: ${failureMessage(e)}`);
    }
  }

  /** One scheduled backup child, its outcome kept for the status (a failure is also an Event). */
  async function runBackup(ref: ClusterRef, backup: BackupSpec, workflowId: string): Promise<void> {
    try {
      const res = await startChild(operations.backupCluster, {
        workflowId,
        args: [{ ref, backup, reason: 'scheduled' }],
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        typedSearchAttributes: searchTags(ref, 'backup'),
        staticSummary: 'scheduled backup',
      }).then((h) => h.result());
      state.lastBackup = { ...res.details, workflowId, result: 'Succeeded' };
    } catch (e) {
      state.lastBackup = { workflowId, result: 'Failed', message: failureMessage(e), time: new Date().toISOString() };
      await act.recordEvent(ref, 'Warning', 'BackupFailed', `${workflowId}: ${failureMessage(e)}`);
    }
  }

  /** Counts one more failure of this operation in a row; returns when it may run again: 5 s, doubling, at most 5 min. */
  function backOff(workflowId: string): number {
    const count = state.lastFailure?.workflowId === workflowId ? state.lastFailure.count + 1 : 1;
    state.lastFailure = { workflowId, count, retryAt: Date.now() + Math.min(5000 * 2 ** (count - 1), 300_000) };
    return state.lastFailure.retryAt;
  }

  /** A hold instead of the operation while it backs off after failing (status Degraded, with the reason; one
   *  Event per failure): the loop keeps checking health, taking backups and destroying meanwhile. */
  function backingOff(op: Operation, nowMs: number): Decision | undefined {
    const f = state.lastFailure;
    if (!f || f.workflowId !== operationId(base.namespace, base.name, op) || nowMs >= f.retryAt) return undefined;
    return {
      kind: 'hold',
      reason: 'RetryBackoff',
      message: `${op.type} did not succeed ${f.count} time(s) in a row; next attempt at ${new Date(f.retryAt).toISOString()}`,
    };
  }

  /** Applies the owned Services, budget and (once keepBackups made it) the backup tool when the spec changed, one is
   *  missing, or the slow period passed; never while paused or adopting. Cheap otherwise: no activity. A failure
   *  (a refusal by RBAC or admission) is said in an event and tried again a minute later: it never holds the loop. */
  async function convergeOwned(ref: ClusterRef, obs: Observation, d: Decision): Promise<void> {
    if (!state.memory.created || (d.kind === 'idle' && d.reason !== 'Running')) return;
    const want = `${obs.uid}/${obs.generation}`;
    const now = Date.now();
    const tool = !!obs.spec?.backup && !!state.backupTool;
    const owned = state.owned ?? {};
    const due =
      owned.applied !== want ||
      !!obs.ownedMissing?.length ||
      (tool && obs.backupToolMissing) ||
      now >= (owned.at ?? 0) + convergePeriodMs;
    if (!due || now < (owned.retryAt ?? 0)) return;
    try {
      await once.ensureServices(ref);
      if (tool) await once.ensureBackupTool(ref, obs.spec!.backup!);
      state.owned = { applied: want, at: now };
    } catch (e) {
      if (isCancellation(e)) throw e;
      state.owned = { ...owned, retryAt: now + 60_000 };
      await act.recordEvent(ref, 'Warning', 'ConvergeFailed', `owned objects not applied: ${failureMessage(e)}`);
    }
  }

  /** etcd auth as spec.auth says (activities/auth.ts), while the cluster serves and no operation runs: on a change of
   *  spec.auth, and every convergePeriodMs (a user or Secret deleted by hand). Each change is an Event. */
  async function convergeAuth(ref: ClusterRef, obs: Observation, d: Decision): Promise<void> {
    if (!state.memory.created || d.kind !== 'idle' || d.reason !== 'Running') return;
    const want = `${obs.uid}/${JSON.stringify(obs.spec!.auth)}`;
    const now = Date.now();
    const was = state.auth ?? {};
    const due = was.applied !== want || now >= (was.at ?? 0) + convergePeriodMs;
    if (!due || now < (was.retryAt ?? 0)) return;
    try {
      const out = await once.reconcileAuth(ref, obs.spec!.auth!);
      for (const change of out.changes) await act.recordEvent(ref, 'Normal', 'AuthChanged', change);
      if (out.enabled !== was.enabled)
        await act.recordEvent(
          ref,
          'Normal',
          out.enabled ? 'AuthEnabled' : 'AuthDisabled',
          out.enabled
            ? `etcd auth on: users root, ${out.users.join(', ') || '(no application user)'}`
            : 'etcd auth off (users kept)',
        );
      state.auth = { applied: want, enabled: out.enabled, at: now };
    } catch (e) {
      if (isCancellation(e)) throw e;
      state.auth = { ...was, retryAt: now + 60_000 };
      await act.recordEvent(ref, 'Warning', 'AuthFailed', `etcd auth not made as spec.auth says: ${failureMessage(e)}`);
    }
  }

  /** The next health check, or sooner when a backup is due. */
  function nextWake(): string | number {
    const base = (input.healthCheckSeconds ?? 10) * 1000;
    if (!state.backupTool || state.lastBackupAt === undefined) return base;
    return Math.max(1000, Math.min(base, state.lastBackupAt + 1000 * backupInterval - Date.now()));
  }

  /** Runs the operation's child to its end; `beside` once the child started (while it runs). */
  async function runOperation(
    ref: ClusterRef,
    obs: Observation,
    op: Operation,
    startFirst = false,
    beside?: () => Promise<void>,
  ): Promise<void> {
    const workflowId = operationId(ref.namespace, ref.name, op);
    const startedAt = new Date().toISOString();
    running = { type: op.type, workflowId, startedAt };
    const announce = async () => {
      await publish(ref, obs, decision!);
      await act.recordEvent(ref, 'Normal', 'OperationStarted', `${op.type} started (workflow ${workflowId})`);
    };
    if (!startFirst) await announce();
    let result: OperationRecord['result'] = 'Succeeded';
    let message: string;
    cancelRequested = false;
    // New members run what the cluster runs now, until an upgrade changes it.
    const current = runningVersion((obs.etcd?.members ?? []).map((m) => m.version).filter((v): v is string => !!v));
    const spec = op.type === 'upgrade' || !current ? obs.spec! : { ...obs.spec!, version: current };
    // Since this patch (issue 17) a scale-down chooses its first victim from this look, the one that decided it,
    // instead of looking again (~0.15 s): the same observation the wish was read from.
    const decidedOn = op.type === 'scale-down' && patched('scale-down-loops-look') ? { decidedOn: obs } : {};
    try {
      const scope = new CancellationScope();
      let finished = false;
      const outcome = scope
        .run(async () => {
          const child = await startChild(operationWorkflows[op.type], {
            workflowId,
            args: [{ ref, spec, op, nextIndex: state.nextIndex, ...decidedOn }],
            typedSearchAttributes: searchTags(ref, op.type),
            staticSummary: summarize(op),
            parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
            cancellationType: ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
            ...(input.waitCapSeconds ? { memo: { [waitCapMemo]: input.waitCapSeconds } } : {}),
          });
          return child.result();
        })
        .finally(() => {
          finished = true;
        });
      // Awaited after the loop below; handled now, so a failure is not an unhandled rejection meanwhile
      // (that failed the workflow task once per failed operation).
      outcome.catch(() => undefined);
      if (startFirst) await announce(); // the child's start command went out first, in this same workflow task
      await beside?.();
      // Since this patch (issue 17) a step goes to the status only once the operation has run stepStatusAfterMs: a
      // quick one (a create, a replacement) ends before its steps would be published, and 50 creates at once no longer
      // add three status writes and six workflow tasks each. A step reported earlier is published when that time comes.
      const stepsAfter = patched('step-status-after-2s') ? Date.now() + stepStatusAfterMs : 0;
      const stepWait = () => Math.max(0, stepsAfter - Date.now());
      // While it runs, its current step goes to the status; a cancel request cancels it.
      while (!finished) {
        if (stepChanged && stepWait() > 0) await condition(() => finished || cancelRequested, stepWait());
        else await condition(() => finished || stepChanged || cancelRequested);
        if (cancelRequested && !finished) {
          cancelRequested = false;
          scope.cancel();
        }
        if (stepChanged && !finished && stepWait() === 0) {
          stepChanged = false;
          await publish(ref, obs, decision!);
        }
      }
      const res = (await outcome) as OperationResult;
      state.nextIndex += res.membersCreated;
      message = res.message;
      if (op.type === 'defragment') rememberMaintenance(res);
      if (op.type === 'create' && res.details?.restoredFrom)
        state.restoredFrom = res.details.restoredFrom as Record<string, unknown>;
      // Since this patch (issue 17) the owned objects a create applied (its first step, for the spec it was decided
      // on) count as applied: the look after it no longer applies them again.
      if (op.type === 'create' && patched('create-applies-owned'))
        state.owned = { applied: `${obs.uid}/${obs.generation}`, at: Date.parse(startedAt) };
      if (op.type === 'recover') {
        state.lastRecovery = { ...res.details, time: new Date().toISOString() };
        state.memory.restoreRequested = false;
      }
    } catch (e) {
      result = isCancellation(e) || (e as ApplicationFailure).type === 'Cancelled' ? 'Cancelled' : 'Failed';
      message = failureMessage(e);
      // A failed upgrade stops there: resuming or rolling back is the user's call.
      // A cancelled one too (held as UpgradeCancelled): otherwise the next look would start it again.
      if (op.type === 'upgrade') {
        const refused = failureType(e) === 'UpgradeRefused'; // a precondition failed before any member changed
        const how = result === 'Cancelled' ? 'cancelled' : refused ? 'refused' : 'stopped';
        const why = refused ? innermostMessage(e) : message; // the precondition's own words, not the child's wrapper
        state.memory.upgradeFailed = { generation: obs.generation, message: `upgrade to ${op.to} ${how}: ${why}` };
        if (result === 'Cancelled') state.memory.upgradeFailed.cancelled = true;
        else if (refused) state.memory.upgradeFailed.refused = true;
      }
      // Names handed to a failed run may be in use: never give them out again.
      state.nextIndex +=
        op.type === 'create'
          ? op.size
          : op.type === 'scale-up'
            ? op.to - op.from
            : op.type === 'replace-member' || op.type === 'move-member' || op.type === 'reconfigure-member'
              ? 1
              : 0;
    }
    running = undefined;
    state.lastOperations = [
      ...state.lastOperations,
      { type: op.type, workflowId, result, message, startedAt, finishedAt: new Date().toISOString() },
    ].slice(-5);
    const ended = () =>
      act.recordEvent(
        ref,
        result === 'Succeeded' ? 'Normal' : 'Warning',
        `Operation${result}`,
        `${op.type}: ${message}`,
      );
    const metric = () => act.recordOperationMetric(op.type, result, (Date.now() - Date.parse(startedAt)) / 1000);
    // Since this patch the status after an operation comes first (issue 17): its Event and metric are recorded beside
    // the next look and status publish (operationEndRecorded), no longer before them.
    if (patched('status-before-operation-events')) {
      endRecorded = Promise.all([ended(), metric()]);
      endRecorded.catch(() => undefined); // awaited by the loop: not an unhandled rejection meanwhile
    } else if (startFirst) await Promise.all([ended(), metric()]);
    else {
      await ended();
      await metric();
    }
    if (result === 'Succeeded') state.lastFailure = undefined;
    // Do not hammer a failing step. Since this patch the retry backs off (5 s → 5 min, e.g. a disaster
    // recovery with no restore source) without blocking the loop: decide() → backingOff() holds it.
    else if (patched('failed-operation-backoff')) backOff(workflowId);
    else await sleep('5s');
  }

  /** Waits for the last operation's end Event and metric, when they are still being recorded. */
  async function operationEndRecorded(): Promise<void> {
    const pending = endRecorded;
    endRecorded = undefined;
    await pending;
  }

  function rememberMaintenance(res: OperationResult): void {
    const m = state.maintenance ?? { lastDefrag: {} };
    const revision = res.details?.compactedRevision as string | undefined;
    if (revision) m.lastCompaction = { revision, time: new Date().toISOString() };
    for (const d of (res.details?.defragmented ?? []) as Record<string, unknown>[]) {
      m.lastDefrag[String(d.member)] = { time: d.time, ms: d.ms, beforeBytes: d.beforeBytes, afterBytes: d.afterBytes };
    }
    state.maintenance = m;
  }

  async function reportHold(ref: ClusterRef, d: Decision): Promise<void> {
    const key = d.kind === 'hold' ? `${d.reason}: ${d.message}` : undefined;
    if (key && key !== state.lastHold) await act.recordEvent(ref, 'Warning', d.kind === 'hold' ? d.reason : '', key);
    state.lastHold = key;
  }

  /** A Warning Event when a node comes to hold a majority of the voters (once per situation). */
  async function reportSpread(ref: ClusterRef, obs: Observation): Promise<void> {
    const warning = majorityWarning(spreadOf(obs));
    if (warning && warning !== state.lastSpreadWarning)
      await act.recordEvent(ref, 'Warning', 'MajorityOnOneNode', warning);
    state.lastSpreadWarning = warning;
  }

  async function publish(ref: ClusterRef, obs: Observation, d: Decision): Promise<void> {
    const status = buildStatus({
      name: ref.name,
      namespace: ref.namespace,
      obs,
      decision: d,
      running,
      lastOperations: state.lastOperations,
      previous: state.conditions,
      now: new Date().toISOString(),
      maintenance: state.maintenance,
    });
    status.nextMemberIndex = state.nextIndex;
    status.lastSeenRevision = state.memory.lastSeenRevision ?? 0;
    if (state.lastBackup) status.lastBackup = state.lastBackup;
    if (state.lastVerification) status.lastVerification = state.lastVerification;
    if (state.backupSchedule) status.backupSchedule = backupScheduleId(ref);
    if (state.lastRecovery) status.lastRecovery = state.lastRecovery;
    if (state.restoredFrom) status.restoredFrom = state.restoredFrom;
    const json = JSON.stringify(status);
    if (json === state.lastStatus) return;
    await act.publishStatus(ref, status);
    state.lastStatus = json;
    state.conditions = status.conditions as Condition[];
  }
}

/** The ApplicationFailure type somewhere in the cause chain (a child workflow's failure wraps its cause). */
function failureType(e: unknown): string | undefined {
  for (let err = e as { type?: string; cause?: unknown } | undefined; err; err = err.cause as typeof err)
    if (err.type) return err.type;
  return undefined;
}

function innermostMessage(e: unknown): string {
  let err = e as { message?: string; cause?: unknown };
  while ((err.cause as typeof err)?.message) err = err.cause as typeof err;
  return (err.message ?? '').slice(0, 1000);
}

/** One line for the Temporal UI: what this operation does. */
function summarize(op: Operation): string {
  switch (op.type) {
    case 'create':
      return `create ${op.size} members`;
    case 'scale-up':
    case 'scale-down':
      return `resize ${op.from} → ${op.to} members`;
    case 'upgrade':
      return `upgrade etcd ${op.from} → ${op.to}`;
    case 'remove-orphan-pod':
      return `remove orphan pod ${op.pod}: ${op.reason}`;
    case 'recover':
      return `recover from quorum loss: ${op.reason}`;
    case 'move-member':
      return `move ${op.member} off node ${op.from}: ${op.reason}`;
    case 'defragment':
      return `${op.nospace ? 'free space (NOSPACE)' : 'defragment'} ${op.members.join(', ')}: ${op.reason}`;
    case 'rotate-certs':
      return `rotate the certificates${op.ca ? ' and the CA' : ''}: ${op.reason}`;
    case 'switch-tls':
      return `switch ${op.to ? 'plain → TLS' : 'TLS → plain'}, one member at a time: ${op.reason}`;
    default:
      return `${op.type} ${op.member}: ${op.reason}`;
  }
}
