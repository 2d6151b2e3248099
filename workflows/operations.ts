// One child workflow per operation, each with a readable ID (<ns>/<cluster>/resize-3-to-5) and its
// own page in the Temporal UI. The query "progress" tells the current step.
import {
  ApplicationFailure,
  CancellationScope,
  defineQuery,
  defineSignal,
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import { act, gate, lastSeen, look, upgradeWait, waitFor } from './activities.js';
import { clusterToken, clusterWorkflowId, memberName, peerURL, v2StoreCheckContainer } from '../api/names.js';
import { failureMessage } from './status.js';
import { leaderLast, scaleDownVictim } from './placement.js';
import {
  addMember,
  deleteUnjoinedPod,
  bootstrapMembers,
  certificatesIssued,
  retireMember,
  startSeed,
  type StepReporter,
} from './steps.js';
import type { Observation, OperationInput, OperationResult } from './types.js';
import { needsV2StoreCheck, v2CheckReadsWal, v2StoreRefusal, v2WalOnly } from './versions.js';

export interface Progress {
  step: string;
  stepsDone: number;
  log: string[];
}
export const progressQuery = defineQuery<Progress>('progress');

export const operationProgressSignal = defineSignal<[string]>('operationProgress');

/** Tracks the current step for the "progress" query and tells the cluster workflow (for status). */
export function tracker(): (step: string) => void {
  const p: Progress = { step: 'starting', stepsDone: 0, log: [] };
  setHandler(progressQuery, () => p);
  const parent = workflowInfo().parent;
  return (step) => {
    if (p.log.length) p.stepsDone++;
    p.step = step;
    p.log.push(step);
    if (parent)
      void getExternalWorkflowHandle(parent.workflowId, parent.runId)
        .signal(operationProgressSignal, step)
        .catch(() => undefined);
  };
}

export async function createCluster(input: OperationInput): Promise<OperationResult> {
  if (input.op.type !== 'create') throw new Error('createCluster needs a create operation');
  const step = tracker();
  const { ref, spec } = input;
  step('add finalizer and services');
  await act.ensureFinalizer(ref);
  await act.ensureServices(ref);
  // A new cluster from a backup (issue 19): every member restored from it, started together (see growFromSnapshot).
  if (spec.restore && patched('restore-into-new-cluster')) return restoreIntoNew(input, step);
  // A brand-new cluster has no data to protect: its members start together, as etcd's clustering guide does
  // (the plan runs create only without pods, claims or a latched cluster ID). Later changes join as learners.
  if (patched('static-bootstrap')) {
    const members = Array.from({ length: input.op.size }, (_, i) => memberName(ref.name, input.nextIndex + i));
    const lost = await bootstrapMembers(ref, spec, members, `${clusterToken(ref)}-b${input.nextIndex}`, step);
    step('done');
    const lostNote = lost.length ? `; lost during it: ${lost.join(', ')}` : '';
    return {
      membersCreated: input.op.size,
      message: `created ${input.op.size} member(s) together (static bootstrap)${lostNote}`,
    };
  }
  const seed = memberName(ref.name, input.nextIndex);
  await startSeed(ref, spec, seed, peerURL(ref, seed), step);
  for (let i = 1; i < input.op.size; i++) await addMember(ref, spec, memberName(ref.name, input.nextIndex + i), step);
  step('done');
  return { membersCreated: input.op.size, message: `created ${input.op.size} member(s) from seed ${seed}` };
}

export async function resizeCluster(input: OperationInput): Promise<OperationResult> {
  const { ref, spec, op } = input;
  if (op.type !== 'scale-up' && op.type !== 'scale-down') throw new Error('resizeCluster needs a scale operation');
  const step = tracker();
  // Since this patch (issue 17) a scale-down ensures no services (no member joins; the cluster loop applied them) and
  // takes one step per member after the first look (scaleDownOneStep): the next look runs beside the removal.
  const oneStep = op.type === 'scale-down' && patched('scale-down-one-step');
  if (!oneStep) await act.ensureServices(ref);
  let created = 0;
  if (op.type === 'scale-up') {
    created = await scaleUp(input, step);
  } else if (oneStep) {
    await scaleDownOneStep(input, step);
  } else if (patched('scale-down-pipelined')) {
    // One look per member (the wish and the victim from the same observation); each victim's pod terminates
    // while the next member is removed (etcd no longer counts it); all are gone before the resize is done.
    const later: Promise<void>[] = [];
    for (let n = op.from; n > op.to; n--) {
      const obs = await act.observeCluster(input.ref);
      if (!wantedBy(input, obs, n)) break;
      step('choose a member to remove (never the leader)');
      const victim = scaleDownVictim(obs);
      if (!victim) throw new Error('no member to remove');
      await retireMember(ref, spec, victim, `scale down ${op.from} → ${op.to}`, step, { later });
    }
    if (later.length) step(`wait for the removed members' pods to be gone`);
    await Promise.all(later);
  } else {
    for (let n = op.from; n > op.to; n--) {
      if (!(await stillWanted(input, n))) break;
      step('choose a member to remove (never the leader)');
      const victim = await chooseScaleDownVictim(input);
      await retireMember(ref, spec, victim, `scale down ${op.from} → ${op.to}`, step);
    }
  }
  step('done');
  return { membersCreated: created, message: `resized ${op.from} → ${op.to}` };
}

/** Scale-up: one learner join per member, the wish re-read before each. Since `scale-up-pods-ahead` (issue 17) the
 *  next member's pod starts, held, once the one before it is released, so its start overlaps that member's catch-up;
 *  a pod started ahead that never joins (the wish changed, a join failed) is deleted: it never ran etcd. Not with
 *  spec.tls.issuerRef (each member's certificates are waited for before its own join). */
async function scaleUp(input: OperationInput, step: StepReporter): Promise<number> {
  const { ref, spec, op } = input;
  if (op.type !== 'scale-up') return 0;
  const podsAhead = patched('scale-up-pods-ahead') && !spec.tls?.issuerRef;
  let created = 0;
  let ahead: { member: string; started: Promise<unknown> } | undefined; // a pod started ahead, not yet joining
  try {
    for (let n = op.from; n < op.to; n++) {
      // Re-read the wish before every step: stop if the user changed their mind (Gardener DEP-08).
      if (!(await stillWanted(input, n))) break;
      const member = memberName(ref.name, input.nextIndex + created);
      if (ahead?.member === member) ahead = undefined; // from here its own join undoes it
      const next = memberName(ref.name, input.nextIndex + created + 1);
      const startNext =
        podsAhead && n + 1 < op.to
          ? () => {
              ahead = { member: next, started: act.createJoiningPod(ref, spec, next).catch(() => undefined) };
            }
          : undefined;
      await addMember(ref, spec, member, step, startNext);
      created++;
    }
  } finally {
    const unused = ahead;
    if (unused)
      await CancellationScope.nonCancellable(async () => {
        step(`delete pod ${unused.member}, started ahead and not joined`);
        await unused.started;
        // Bounded: the planner's orphan-pod handling is the backstop.
        await deleteUnjoinedPod(ref, spec, unused.member).catch(() => undefined);
      });
  }
  return created;
}

/** Scale-down since `scale-down-one-step`: the next member's look (the wish and the victim) is read while the previous
 *  one is removed, its victim chosen without the members removed since; each removal is one activity (retireFromEtcd:
 *  health gate in etcd's linearizable view → leadership moved away → MemberRemove), one change at a time. Each pod
 *  terminates while the next member is removed; all are gone before the resize is done. */
async function scaleDownOneStep(input: OperationInput, step: StepReporter): Promise<void> {
  const { ref, spec, op } = input;
  if (op.type !== 'scale-down') return;
  const later: Promise<void>[] = [];
  const removed: string[] = [];
  // The first look is the cluster loop's that decided this resize, else local (nothing else runs yet); the next ones
  // are activities, so they run beside the removal.
  let next = input.decidedOn ? Promise.resolve(input.decidedOn) : look.observeCluster(ref);
  for (let n = op.from; n > op.to; n--) {
    const obs = await next;
    if (!wantedBy(input, obs, n)) break;
    step('choose a member to remove (never the leader)');
    const victim = scaleDownVictim(obs, removed);
    if (!victim) throw new Error('no member to remove');
    const retiring = retireMember(ref, spec, victim, `scale down ${op.from} → ${op.to}`, step, {
      later,
      oneStep: true,
      removed: [...removed],
    });
    if (n - 1 > op.to) {
      next = act.observeCluster(ref);
      next.catch(() => undefined); // awaited above on the next turn: not an unhandled rejection if this one fails
    }
    await retiring;
    removed.push(victim);
  }
  if (later.length) step(`wait for the removed members' pods to be gone`);
  await Promise.all(later);
}

/** A learner, else a non-leader on the most crowded node, lowest index first (see placement.ts). */
async function chooseScaleDownVictim(input: OperationInput): Promise<string> {
  const pick = scaleDownVictim(await act.observeCluster(input.ref));
  if (!pick) throw new Error('no member to remove');
  return pick;
}

async function stillWanted(input: OperationInput, current: number): Promise<boolean> {
  return wantedBy(input, await act.observeCluster(input.ref), current);
}

function wantedBy(input: OperationInput, obs: Observation, current: number): boolean {
  if (!obs.exists || obs.deleting || obs.uid !== input.ref.uid || obs.spec?.paused) return false;
  const want = obs.spec?.size ?? current;
  return input.op.type === 'scale-up' ? want > current : want < current;
}

export async function replaceMember(input: OperationInput): Promise<OperationResult> {
  const { ref, spec, op } = input;
  if (op.type !== 'replace-member') throw new Error('replaceMember needs a replace-member operation');
  const step = tracker();
  await act.recordEvent(
    ref,
    'Warning',
    'MemberDead',
    `${op.member} is dead (${op.reason}); replacing it with ${memberName(ref.name, input.nextIndex)}`,
  );
  // Its claim goes only once the successor is healthy: until then it is the last copy of that member's data.
  const claimLast = !!spec.pod?.persistentVolumeClaimSpec && patched('claim-after-successor');
  await retireMember(ref, spec, op.member, op.reason, step, { dead: true, keepClaim: claimLast });
  if (op.corruptId) {
    // While CORRUPT is raised etcd refuses reads and writes everywhere: the member it named is gone now.
    step(`disarm the CORRUPT alarm of ${op.member}`);
    await act.recordEvent(ref, 'Normal', 'AlarmDisarmed', await act.disarmCorrupt(ref, op.corruptId));
  }
  await addMember(ref, spec, memberName(ref.name, input.nextIndex), step);
  if (claimLast) {
    step(`delete claim of ${op.member} (its successor is healthy)`);
    await act.deleteMemberClaim(ref, op.member);
  }
  step('done');
  return { membersCreated: 1, message: `replaced ${op.member} with ${memberName(ref.name, input.nextIndex)}` };
}

/** A healthy member leaves a crowded node: its successor joins first (on the freest node, by the pod's
 *  topology spread), then it is removed, leadership moved away first. Quorum never depends on the move. */
export async function moveMember(input: OperationInput): Promise<OperationResult> {
  const { ref, spec, op } = input;
  if (op.type !== 'move-member') throw new Error('moveMember needs a move-member operation');
  const step = tracker();
  const successor = memberName(ref.name, input.nextIndex);
  await act.recordEvent(
    ref,
    'Normal',
    'MemberMoving',
    `moving ${op.member} off node ${op.from} (${op.reason}): ${successor} joins first`,
  );
  await addMember(ref, spec, successor, step);
  await retireMember(ref, spec, op.member, `moved off node ${op.from}: ${op.reason}`, step);
  step('done');
  return { membersCreated: 1, message: `moved ${op.member} off node ${op.from}: replaced by ${successor}` };
}

/** A member started with other etcd flags than the spec's: its successor joins with the spec's flags, then it
 *  leaves (leadership moved away first). One member per operation, each step behind a health gate. */
export async function reconfigureMember(input: OperationInput): Promise<OperationResult> {
  const { ref, spec, op } = input;
  if (op.type !== 'reconfigure-member') throw new Error('reconfigureMember needs a reconfigure-member operation');
  const step = tracker();
  const successor = memberName(ref.name, input.nextIndex);
  await act.ensureServices(ref); // clusters created before the metrics Service get it with their first roll
  await act.recordEvent(
    ref,
    'Normal',
    'MemberReconfiguring',
    `${op.member}: ${op.reason}; ${successor} joins with the spec's flags, then ${op.member} leaves`,
  );
  await addMember(ref, spec, successor, step);
  await retireMember(ref, spec, op.member, op.reason, step);
  step('done');
  return { membersCreated: 1, message: `replaced ${op.member} by ${successor} with the spec's etcd flags` };
}

/**
 * A running cluster switched plain ↔ TLS (issue 18): every member restarted in place on its claim, one at a time,
 * followers first, the leader last after handing leadership away; a health gate before each, the member healthy in
 * etcd's view after it. Two passes, so that every member always reaches every other: first each member becomes a
 * bridge (plain listeners, peers dialled with its certificate: it reaches plain and TLS peers alike), then each takes
 * the target mode. A member's peer URL in etcd's member list follows its peer listener's scheme, changed just before
 * its restart. Every step looks first: a switch resumes where it stopped (a crash, a change of mind half way).
 */
export async function switchTls(input: OperationInput): Promise<OperationResult> {
  const { ref, spec, op } = input;
  if (op.type !== 'switch-tls') throw new Error('switchTls needs a switch-tls operation');
  const step = tracker();
  const what = op.to ? 'plain → TLS' : 'TLS → plain';
  const target = op.to ? 'tls' : 'plain';
  await act.recordEvent(ref, 'Normal', 'TLSSwitching', `${op.reason}: one member at a time, in two passes`);
  type State = Awaited<ReturnType<typeof act.memberTlsState>>;
  // Done with a pass: the member serves as the pass wants and its peer URL has the scheme of its peer listener (a
  // member restarted by another operation half way may not).
  const final = (m: State) => m.pod === target && m.peerTls === op.to;
  const passes = [
    {
      name: 'pass 1/2 (bridge)',
      listen: 'bridge' as const,
      done: (m: State) => final(m) || (m.pod === 'bridge' && !m.peerTls),
    },
    { name: `pass 2/2 (${target})`, listen: op.to, done: final },
  ];
  let restarted = 0;
  for (const pass of passes) {
    const obs = await act.observeCluster(ref);
    const order = leaderLast(ref.name, obs.etcd?.members ?? []);
    const todo: string[] = [];
    for (const m of order) if (!pass.done(await act.memberTlsState(ref, m.podName))) todo.push(m.podName);
    if (op.to)
      await certificatesIssued(
        ref,
        spec,
        order.map((m) => m.podName),
        step,
      );
    for (const [i, member] of todo.entries()) {
      const at = `${what} ${pass.name} ${i + 1}/${todo.length}: ${member}`;
      step(`${at}: health gate`);
      await gate.checkClusterHealthy(ref);
      if (await act.isLeader(ref, member)) {
        step(`${at}: move leadership away`);
        await act.moveLeaderAway(ref, member, `restarting ${member} (${what})`);
      }
      const peerTls = pass.listen === true;
      if ((await act.memberTlsState(ref, member)).peerTls !== peerTls) {
        step(`${at}: peer URL to ${peerTls ? 'https' : 'http'} in etcd's member list`);
        await act.setMemberPeerURL(ref, member, peerTls);
      }
      step(`${at}: restart in place`);
      await waitFor.recreateMemberPodAs(ref, spec, member, pass.listen);
      await waitFor.waitMemberPodRunning(ref, member);
      step(`${at}: wait for it to be healthy`);
      await waitFor.waitMemberHealthy(ref, member);
      restarted++;
    }
  }
  // The backup tool dials the members in the cluster's mode: applied again in the new one.
  if (spec.backup) {
    step('backup tool in the new mode');
    await act.ensureBackupTool(ref, spec.backup);
  }
  const message = `switched ${what}: ${restarted} member restart(s)`;
  await act.recordEvent(ref, 'Normal', 'TLSSwitched', message);
  step('done');
  return { membersCreated: 0, message };
}

/** With a claim, a member whose pod is gone (or silent) comes back in place: same name, same data, same member ID. */
export async function restartMember(input: OperationInput): Promise<OperationResult> {
  const { ref, spec, op } = input;
  if (op.type !== 'restart-member') throw new Error('restartMember needs a restart-member operation');
  const step = tracker();
  await act.recordEvent(
    ref,
    'Warning',
    'MemberRestarting',
    `${op.member}: ${op.reason}; restarting it in place from its claim`,
  );
  // Without quorum there is no health to gate on or wait for: each member comes back, then quorum does.
  if (!op.quorumLost) {
    step(`health gate before restarting ${op.member}`);
    await gate.checkClusterHealthy(ref, [op.member], 0); // bounded: a gate that never passes fails the restart
  }
  if (op.recreate) {
    step(`delete the silent pod ${op.member} (its claim stays)`);
    await waitFor.deleteMemberPod(ref, op.member, { force: true, unlessNodeDown: true });
  }
  step(`recreate pod ${op.member} on its claim`);
  // With its data dir intact etcd reads membership from its WAL; --initial-cluster only names itself.
  await act.createMemberPod(ref, spec, op.member, `${op.member}=${peerURL(ref, op.member)}`, 'existing');
  await waitFor.waitMemberPodRunning(ref, op.member);
  if (!op.quorumLost) {
    step(`wait for ${op.member} to be healthy`);
    await waitFor.waitMemberHealthy(ref, op.member);
  }
  step('done');
  return { membersCreated: 0, message: `restarted ${op.member} in place` };
}

export async function removeGhostMember(input: OperationInput): Promise<OperationResult> {
  const { ref, op } = input;
  if (op.type !== 'remove-ghost-member') throw new Error('removeGhostMember needs a remove-ghost-member operation');
  const step = tracker();
  step(`remove ${op.member} from etcd (${op.reason})`);
  await act.removeMember(ref, op.member, op.reason);
  step('done');
  return { membersCreated: 0, message: `removed ghost member ${op.member}` };
}

export async function removeOrphanPod(input: OperationInput): Promise<OperationResult> {
  const { ref, spec, op } = input;
  if (op.type !== 'remove-orphan-pod') throw new Error('removeOrphanPod needs a remove-orphan-pod operation');
  const step = tracker();
  step(`delete pod ${op.pod} (${op.reason})`);
  await waitFor.deleteMemberPod(ref, op.pod, { force: true });
  if (spec.pod?.persistentVolumeClaimSpec) await act.deleteMemberClaim(ref, op.pod);
  await act.recordEvent(ref, 'Normal', 'OrphanPodDeleted', `deleted pod ${op.pod}: ${op.reason}`);
  step('done');
  return { membersCreated: 0, message: `deleted orphan pod ${op.pod}` };
}

export async function destroyCluster(input: { ref: OperationInput['ref'] }): Promise<OperationResult> {
  const step = tracker();
  step('delete member pods, services and claims');
  const message = await waitFor.deleteClusterResources(input.ref);
  await act.recordEvent(input.ref, 'Normal', 'Destroyed', message);
  step('release the EtcdCluster (remove finalizer)');
  await act.removeFinalizer(input.ref);
  step('done');
  return { membersCreated: 0, message };
}

/** Rolling upgrade: one member at a time, followers first, the leader last after handing leadership away. */
export async function upgradeCluster(input: OperationInput): Promise<OperationResult> {
  const { ref, spec, op } = input;
  if (op.type !== 'upgrade') throw new Error('upgradeCluster needs an upgrade operation');
  const step = tracker();
  const image = `${spec.repository}:v${op.to}`;
  const obs = await act.observeCluster(ref);
  const members = leaderLast(ref.name, obs.etcd?.members ?? []);
  const todo = members.filter((m) => m.version !== op.to);
  let done = members.length - todo.length;
  const [fromMinor, toMinor] = [op.from, op.to].map((v) => Number(v.split('.')[1]));
  if (toMinor === 6 && fromMinor <= 5 && todo.length === members.length) {
    if (needsV2StoreCheck(op.from, op.to) && patched('v2store-check')) {
      // etcd's documented gate: 3.5's etcdutl check v2store on every member's data before any member starts 3.6
      // (which panics replaying v2 WAL requests and refuses a v2 store with data). v2 requests in a WAL (3.4's /health
      // went through raft) are cleared by a snapshot: the barrier runs only then, and the check again after it.
      const check = async (attempt: number) => {
        step(`check every member's data with etcdutl check v2store (${op.from})${attempt > 1 ? ', again' : ''}`);
        const name = v2StoreCheckContainer(workflowInfo().runId, attempt);
        return Promise.all(members.map((m) => waitFor.checkV2Store(ref, m.podName, name)));
      };
      // An older etcdutl (clusters kept on the 3.5.26 floor) does not read the WAL: the barrier first, as before.
      const readsWal = v2CheckReadsWal(op.from);
      if (!readsWal) {
        step('flush v2 WAL entries into a snapshot on every member (3.6 cannot replay them)');
        await waitFor.forceSnapshots(ref);
      }
      let results = await check(1);
      if (readsWal && v2WalOnly(results)) {
        const dirty = members.filter((_, i) => results[i].exitCode !== 0).map((m) => m.podName);
        const why = `etcdutl check v2store found v2 requests in the WAL of ${dirty.join(', ')} (etcd 3.6 cannot replay them)`;
        await act.recordEvent(ref, 'Normal', 'V2WalFlushing', `${why}: a snapshot on every member clears them`);
        step('flush the v2 WAL requests into a snapshot on every member');
        await waitFor.forceSnapshots(ref);
        results = await check(2);
      }
      const refusal = v2StoreRefusal(
        results.map((r, i) => ({ member: members[i].podName, ...r })),
        op.from,
      );
      if (refusal) {
        await act.recordEvent(ref, 'Warning', 'V2StoreCheckFailed', refusal);
        throw ApplicationFailure.nonRetryable(refusal, 'UpgradeRefused');
      }
    } else {
      step('flush v2 WAL entries into a snapshot on every member (3.6 cannot replay them)');
      await waitFor.forceSnapshots(ref);
    }
  }
  for (const m of todo) {
    step(`upgraded ${done}/${members.length}: health gate before ${m.podName}`);
    await gate.checkClusterHealthy(ref);
    step(`upgraded ${done}/${members.length}: move leadership away from ${m.podName} if it leads`);
    await act.moveLeaderAway(ref, m.podName);
    step(`upgraded ${done}/${members.length}: restart ${m.podName} on ${op.to}`);
    await act.setMemberImage(ref, m.podName, image);
    step(`upgraded ${done}/${members.length}: wait for ${m.podName} healthy on ${op.to}`);
    try {
      await upgradeWait.waitMemberUpgraded(ref, m.podName, op.to);
    } catch (e) {
      // Since this patch a user's cancel ends the upgrade as Cancelled, not as UpgradeFailed.
      if (isCancellation(e) && patched('cancelled-upgrade-is-cancelled')) throw e;
      const seen = lastSeen(e);
      const why = `${m.podName} did not come back healthy on ${op.to}${seen ? `: ${seen}` : ''}`;
      throw ApplicationFailure.nonRetryable(why, 'UpgradeFailed', { member: m.podName });
    }
    done++;
  }
  step(`upgraded ${done}/${members.length}`);
  return { membersCreated: 0, message: `upgraded ${members.length} member(s) ${op.from} → ${op.to}` };
}

/** Disaster recovery: freshest source → stop what is left → every member restored from the snapshot, started together. */
export async function recoverCluster(input: OperationInput): Promise<OperationResult> {
  const { ref, spec, op } = input;
  if (op.type !== 'recover') throw new Error('recoverCluster needs a recover operation');
  const step = tracker();
  step('choose the freshest restore source (a surviving member, else the newest valid backup)');
  const src = await act.chooseRestoreSource(ref);
  const lastSeen = Math.max(op.lastSeenRevision, src.newestKnownRevision);
  const lost = Math.max(0, lastSeen - src.revision);
  await act.recordEvent(
    ref,
    'Warning',
    'DisasterRecovery',
    `quorum lost (${op.reason}); restoring from ${src.source} at revision ${src.revision}; ${lost} revision(s) lost compared with the last seen revision ${lastSeen}`,
  );
  step('stop the remaining members');
  await waitFor.deleteAllMemberPods(ref);
  // A new token: old members must never talk to the restored cluster.
  await growFromSnapshot(input, src, `${clusterToken(ref)}-r${input.nextIndex}`, step);
  const message = `restored from ${src.source} at revision ${src.revision}; ${lost} revision(s) lost`;
  await act.recordEvent(ref, 'Normal', 'Recovered', message);
  step('done');
  return {
    membersCreated: spec.size,
    message,
    details: {
      source: src.source,
      snapshot: src.snapshot,
      revision: src.revision,
      lostRevisions: lost,
      lastSeenRevision: lastSeen,
    },
  };
}

/**
 * Every member restored from a snapshot the backup tool serves, all started together (static bootstrap, issue 17);
 * members lost during it join as learners afterwards (the plan). Before this patch: a seed restored, healthy, then
 * the other members joined as learners one by one.
 */
async function growFromSnapshot(
  input: OperationInput,
  src: { url: string; snapshot: string },
  token: string,
  step: StepReporter,
): Promise<void> {
  const { ref, spec } = input;
  if (patched('restore-static-bootstrap')) {
    const members = Array.from({ length: spec.size }, (_, i) => memberName(ref.name, input.nextIndex + i));
    const restore = { url: src.url, snapshot: src.snapshot };
    const lost = await bootstrapMembers(ref, spec, members, token, step, restore);
    if (lost.length) step(`lost during the restore, left to learner joins: ${lost.join(', ')}`);
    return;
  }
  const seed = memberName(ref.name, input.nextIndex);
  await certificatesIssued(ref, spec, [seed], step);
  step(`restore seed ${seed} from ${src.snapshot}`);
  await act.createMemberPod(ref, spec, seed, `${seed}=${peerURL(ref, seed)}`, 'new', {
    url: src.url,
    snapshot: src.snapshot,
    token,
  });
  await waitFor.waitMemberPodRunning(ref, seed);
  step(`wait for seed ${seed} to be healthy`);
  await waitFor.waitMemberHealthy(ref, seed);
  for (let i = 1; i < spec.size; i++) await addMember(ref, spec, memberName(ref.name, input.nextIndex + i), step);
}

/**
 * spec.restore: the new cluster starts from another cluster's backup, read through its own backup destination
 * (spec.backup). Its token is its own, so its etcd cluster ID is new: its backups never pass for the source's.
 */
async function restoreIntoNew(input: OperationInput, step: StepReporter): Promise<OperationResult> {
  const { ref, spec } = input;
  const restore = spec.restore!;
  if (!spec.backup)
    throw ApplicationFailure.nonRetryable(
      'spec.restore needs spec.backup: the destination that holds the backup to start from',
      'NoRestoreSource',
    );
  step('ensure the backup tool (it reads the backup)');
  await act.ensureBackupTool(ref, spec.backup);
  step(`choose the backup of ${restore.namespace ?? ref.namespace}/${restore.cluster}`);
  const src = await waitFor.chooseBackupToRestore(ref, restore);
  await act.recordEvent(
    ref,
    'Normal',
    'RestoringFromBackup',
    `starting from ${src.source} at revision ${src.revision}`,
  );
  await growFromSnapshot(
    input,
    { url: src.url, snapshot: src.snapshot },
    `${clusterToken(ref)}-b${input.nextIndex}`,
    step,
  );
  step('done');
  const restoredFrom = { source: src.source, backup: src.snapshot, revision: src.revision, backupTime: src.time };
  return {
    membersCreated: spec.size,
    message: `created ${spec.size} member(s) from ${src.source} at revision ${src.revision}`,
    details: { restoredFrom: { ...restoredFrom, time: new Date().toISOString() } },
  };
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(2)} MiB`;

/**
 * The space runbook. NOSPACE: compact to the current revision, defragment every member one at a time
 * (followers first, the leader last), then disarm once every member is below the quota with margin.
 * Scheduled: defragment the fragmented members the same way. An Event for each step.
 */
export async function defragmentCluster(input: OperationInput): Promise<OperationResult> {
  const { ref, spec, op } = input;
  if (op.type !== 'defragment') throw new Error('defragmentCluster needs a defragment operation');
  const step = tracker();
  let compactedRevision: string | undefined;
  if (op.nospace) {
    await act.recordEvent(
      ref,
      'Warning',
      'NoSpace',
      `${op.reason}: compacting, defragmenting one member at a time (leader last), then disarming`,
    );
    step('compact to the current revision');
    compactedRevision = (await waitFor.compactToCurrent(ref)).revision;
    await act.recordEvent(ref, 'Normal', 'Compacted', `compacted the key history up to revision ${compactedRevision}`);
  }
  const obs = await act.observeCluster(ref);
  const order = leaderLast(
    ref.name,
    (obs.etcd?.members ?? []).filter((m) => op.members.includes(m.podName)),
  );
  const defragmented: Record<string, unknown>[] = [];
  for (const [i, m] of order.entries()) {
    // A defragmentation stalls that member's requests: only while the others serve.
    step(`defragment ${i + 1}/${order.length}: health gate before ${m.podName}`);
    await gate.checkClusterHealthy(ref);
    step(`defragment ${i + 1}/${order.length}: ${m.podName}${m.isLeader ? ' (leader, last)' : ''}`);
    const r = await waitFor.defragmentMember(ref, m.podName);
    defragmented.push({ ...r });
    await act.recordEvent(
      ref,
      'Normal',
      'Defragmented',
      `${i + 1}/${order.length} ${m.podName}${m.isLeader ? ' (leader)' : ''}: ` +
        `${mib(r.beforeBytes)} → ${mib(r.afterBytes)} (${mib(r.inUseBytes)} in use) in ${r.ms} ms`,
    );
  }
  let message = `defragmented ${order.map((m) => m.podName).join(', ') || 'no member'}`;
  if (op.nospace) {
    step('disarm NOSPACE once every member is below the quota with margin');
    const disarmed = await act.disarmNospace(ref, spec.etcd?.quotaBackendBytes);
    await act.recordEvent(ref, 'Normal', 'AlarmDisarmed', disarmed);
    message = `compacted to revision ${compactedRevision}, ${message}; ${disarmed}`;
  }
  step('done');
  return { membersCreated: 0, message, details: { ...(compactedRevision ? { compactedRevision } : {}), defragmented } };
}

export interface BackupInput {
  ref: OperationInput['ref'];
  backup: NonNullable<OperationInput['spec']['backup']>;
  reason: string;
  /** Runs of the cluster's backup Schedule: the outcome goes to the cluster workflow (status.lastBackup), a
   *  failure also as a BackupFailed Event. */
  report?: boolean;
}

/** A backup run's outcome, for status.lastBackup (sent by scheduled runs to the cluster workflow). */
export const backupFinishedSignal = defineSignal<[Record<string, unknown>]>('backupFinished');

/** One backup run: make sure the tool exists, take a snapshot from the freshest member, verified by the tool. */
export async function backupCluster(input: BackupInput): Promise<OperationResult> {
  if (!input.report) return takeOneBackup(input);
  const { workflowId } = workflowInfo();
  const cluster = getExternalWorkflowHandle(clusterWorkflowId(input.ref));
  try {
    const res = await takeOneBackup(input);
    await cluster
      .signal(backupFinishedSignal, { ...res.details, workflowId, result: 'Succeeded' })
      .catch(() => undefined);
    return res;
  } catch (e) {
    if (isCancellation(e)) throw e;
    const message = failureMessage(e);
    const time = new Date().toISOString();
    await act.recordEvent(input.ref, 'Warning', 'BackupFailed', `${workflowId}: ${message}`);
    await cluster.signal(backupFinishedSignal, { workflowId, result: 'Failed', message, time }).catch(() => undefined);
    throw e;
  }
}

async function takeOneBackup(input: BackupInput): Promise<OperationResult> {
  const step = tracker();
  step('ensure the backup tool');
  await act.ensureBackupTool(input.ref, input.backup);
  step('take a snapshot');
  const rec = await waitFor.takeBackup(input.ref, input.reason);
  step('done');
  return {
    membersCreated: 0,
    message: `snapshot ${rec.name} at revision ${rec.revision} (${rec.size} bytes)`,
    details: {
      name: rec.name,
      revision: rec.revision,
      size: rec.size,
      sha256: rec.sha256,
      time: rec.time,
      // The tool's restore check of this backup, for status.lastVerification (via the scheduled run's signal).
      ...(rec.verification && patched('backup-verification') ? { verification: rec.verification } : {}),
    },
  };
}
