// All activities, built from their dependencies (samples-typescript activities-dependency-injection).
import { AsyncLocalStorage } from 'node:async_hooks';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Context } from '@temporalio/activity';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Client } from '@temporalio/client';
import type { Logger } from 'pino';
import { bind, type Deps } from './deps.js';
import { makeKube } from './kube.js';
import { createAdoptingCluster, finishAdoption, inspectLegacyCluster } from './migration.js';
import { ensureBackupTool, removeBackupTool } from './backups/tool.js';
import { takeBackup } from './backups/take.js';
import { chooseRestoreSource } from './backups/recovery-source.js';
import { chooseBackupToRestore } from './backups/restore-spec.js';
import { deleteAllMemberPods } from './backups/stop-members.js';
import { checkV2Store, compactToCurrent, defragmentMember, disarmCorrupt, disarmNospace } from './maintenance.js';
import { scheduleActivities } from './schedules.js';
import { observeCluster } from './cluster/observe.js';
import { ensureFinalizer, removeFinalizer } from './cluster/finalizer.js';
import { ensureServices } from './cluster/objects.js';
import { publishStatus, recordEvent } from './cluster/status.js';
import { deleteClusterResources } from './cluster/destroy.js';
import { bootstrapMembers } from './members/bootstrap.js';
import {
  createJoiningPod,
  createMemberPod,
  deleteMemberPod,
  releaseJoiningPod,
  waitHeldPodStarted,
  waitMemberPodRunning,
} from './members/pod.js';
import { deleteMemberClaim } from './members/claim.js';
import { checkClusterHealthy } from './membership/health-gate.js';
import { addLearner } from './membership/add-learner.js';
import { waitLearnerCaughtUp } from './membership/catch-up.js';
import { promoteLearner } from './membership/promote.js';
import { waitMemberHealthy, waitMembersHealthy } from './membership/wait-healthy.js';
import { isLeader, moveLeaderAway } from './membership/leadership.js';
import { removeLearner, removeMember, retireFromEtcd } from './membership/remove.js';
import { forceSnapshots, setMemberImage, waitMemberUpgraded } from './membership/upgrade.js';
import {
  finishCaRotation,
  recordRotation,
  renewCertificate,
  startCaRotation,
  waitMemberServes,
} from './members/certificates.js';
import { memberTlsState, recreateMemberPodAs, setMemberPeerURL } from './membership/tls-switch.js';
import { waitCertificatesIssued } from './cert-manager.js';
import { reconcileAuth } from './auth.js';

export interface ActivityDeps {
  kc: KubeConfig;
  log: Logger;
  /** The controller's Temporal client: backup Schedules are managed through it. */
  temporal?: Client;
  /** Test-only crash points (see crashPoint): the worker SIGKILLs itself there, once each. */
  crashPoints?: string[];
  crashMarkerDir?: string;
  /** Where the controller's pods run (members' NetworkPolicies admit them); default deploy/controller.yaml's. */
  controllerNamespace?: string;
  /** Metrics hooks of the hosting process (kept out of the activities themselves). */
  observe?: {
    activityError(activity: string): void;
    operationFinished(type: string, result: string, seconds: number): void;
  };
}

export function createActivities(deps: ActivityDeps) {
  const kube = makeKube(deps.kc);
  const d: Deps = { kube, log: deps.log, controllerNamespace: deps.controllerNamespace };
  const raw = {
    // The cluster object and what it owns (cluster/): observe, finalizer, Services + budget, status, Events, destroy.
    ...bind(d, { observeCluster, ensureFinalizer, removeFinalizer, ensureServices, publishStatus, recordEvent }),
    ...bind(d, { deleteClusterResources }),
    // A member's pod and claim in Kubernetes (members/).
    ...bind(d, { bootstrapMembers, createMemberPod, waitMemberPodRunning, deleteMemberPod, deleteMemberClaim }),
    ...bind(d, { createJoiningPod, waitHeldPodStarted, releaseJoiningPod }),
    // etcd membership, in runbook order (membership/): gate, join (add, catch up, promote, healthy), leave, upgrade.
    ...bind(d, { checkClusterHealthy, addLearner, waitLearnerCaughtUp, promoteLearner, waitMemberHealthy }),
    ...bind(d, { waitMembersHealthy }),
    ...bind(d, { isLeader, moveLeaderAway, removeMember, removeLearner, retireFromEtcd }),
    ...bind(d, { setMemberImage, waitMemberUpgraded, forceSnapshots }),
    // Certificate rotation (members/certificates.ts).
    ...bind(d, { startCaRotation, renewCertificate, waitMemberServes, finishCaRotation, recordRotation }),
    ...bind(d, { memberTlsState, setMemberPeerURL, recreateMemberPodAs }),
    // spec.tls.issuerRef: certificates from cert-manager (cert-manager.ts).
    ...bind(d, { waitCertificatesIssued }),
    // etcd auth users, roles, on and off (auth.ts).
    ...bind(d, { reconcileAuth }),
    // Adopting an etcd the controller does not manage (migration.ts).
    ...bind(d, { inspectLegacyCluster, createAdoptingCluster, finishAdoption }),
    // Backups and recovery sources (backups/): the tool, a snapshot, where a restore starts from, old members stopped.
    ...bind(d, { ensureBackupTool, removeBackupTool, takeBackup }),
    ...bind(d, { chooseRestoreSource, chooseBackupToRestore, deleteAllMemberPods }),
    // The space runbook and the v2store check (maintenance.ts).
    ...bind(d, { compactToCurrent, defragmentMember, disarmNospace, disarmCorrupt, checkV2Store }),
    ...scheduleActivities(deps.temporal, deps.log),
    /** Counts a finished operation in the process's metrics. */
    async recordOperationMetric(type: string, result: string, seconds: number): Promise<void> {
      deps.observe?.operationFinished(type, result, seconds);
    },
  };
  return wrapAll(raw, deps);
}

export type Activities = ReturnType<typeof createActivities>;

type AnyFn = (...args: never[]) => Promise<unknown>;

const running = new AsyncLocalStorage<Record<string, string>>();
/** Fields for every log line written inside an activity: cluster, workflow, run and activity. */
export const activityLogFields = () => running.getStore();

/** Every activity heartbeats while it runs (so a dead worker is noticed in seconds, and a cancellation
 *  reaches it), stops when cancelled, and honours crash points. */
function wrapAll<T extends Record<string, AnyFn>>(acts: T, deps: ActivityDeps): T {
  const out: Record<string, AnyFn> = {};
  for (const [name, fn] of Object.entries(acts)) {
    out[name] = (async (...args: never[]) => {
      const ctx = Context.current();
      // The periodic beat repeats the activity's own last details: when a wait misses its deadline they
      // are the reason the workflow reports (TimeoutFailure.lastHeartbeatDetails), e.g. "ErrImagePull: …".
      let details: unknown;
      const send = ctx.heartbeat;
      (ctx as { heartbeat: (d?: unknown) => void }).heartbeat = (d) => {
        details = d;
        send(d);
      };
      // Not a local activity (the loop's look): it cannot heartbeat, and the worker logged a warning per beat.
      const beat = ctx.info.isLocal ? undefined : setInterval(() => send(details), 2000);
      const { workflowId = '', runId = '' } = ctx.info.workflowExecution ?? {};
      // Every workflow ID starts with <namespace>/<cluster>.
      const fields = { cluster: workflowId.split('/').slice(0, 2).join('/'), workflowId, runId, activity: name };
      try {
        crashPoint(deps, name, 'before', ctx.info.workflowType ?? '');
        // A cancelled activity (delivered with a heartbeat) stops now: polling loops also end at their next sleep.
        const result = await Promise.race([running.run(fields, () => fn(...args)), ctx.cancelled]);
        crashPoint(deps, name, 'after', ctx.info.workflowType ?? '');
        return result;
      } catch (e) {
        deps.observe?.activityError(name);
        throw e;
      } finally {
        clearInterval(beat);
      }
    }) as AnyFn;
  }
  return out as T;
}

/** Crash points: "activity" or "activity:after" (after it ran), "activity:before", or "<WorkflowType>/*":
 *  after every distinct activity that workflow type runs, each once (its marker records the boundary). */
function crashPoint(deps: ActivityDeps, activity: string, when: 'before' | 'after', workflowType: string): void {
  const points = deps.crashPoints ?? [];
  let marker: string;
  if (points.includes(`${activity}:${when}`) || (when === 'after' && points.includes(activity)))
    marker = `${activity}:${when}`;
  else if (when === 'after' && points.includes(`${workflowType}/*`)) marker = `${workflowType}.${activity}`;
  else return;
  const dir = deps.crashMarkerDir ?? '/tmp';
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `crashed-${marker.replace(/[^a-zA-Z0-9:._-]/g, '_')}`);
  if (existsSync(file)) return;
  writeFileSync(file, new Date().toISOString());
  deps.log.warn({ point: marker }, 'test crash point reached: killing the worker');
  process.kill(process.pid, 'SIGKILL');
}
