// The EtcdCluster status the user sees, built from an observation and the current decision. Pure.
import { clientServiceName } from '../api/names.js';
import { majorityWarning, spreadOf } from './placement.js';
import type { Decision } from './plan.js';
import type { Observation } from './types.js';
import {
  EtcdClusterStatus,
  RunningOperation,
  memberSelector,
  type Condition,
  type OperationRecord,
} from '../api/etcdcluster.js';

export interface StatusInput {
  name: string;
  namespace: string;
  obs: Observation;
  decision: Decision;
  running?: RunningOperation;
  lastOperations: OperationRecord[];
  previous: Condition[];
  now: string;
  maintenance?: MaintenanceRecord;
}

/** The controller's last compaction and each member's last defragmentation (space runbook). */
export interface MaintenanceRecord {
  lastCompaction?: { revision: string; time: string };
  lastDefrag: Record<string, Record<string, unknown>>;
}

export function buildStatus(i: StatusInput): EtcdClusterStatus {
  const { obs, decision, running } = i;
  const members = obs.etcd?.members ?? [];
  const pods = new Map(obs.pods.map((p) => [p.name, p]));
  const ready = members
    .filter((m) => m.healthy && !m.isLearner)
    .map((m) => m.podName)
    .sort();
  const unready = [
    ...members.filter((m) => !m.healthy || m.isLearner).map((m) => m.podName),
    ...obs.pods.filter((p) => !members.some((m) => m.podName === p.name)).map((p) => p.name),
  ].sort();
  const versions = [...new Set(members.map((m) => m.version).filter((v): v is string => !!v))];
  const hold = decision.kind === 'hold' ? decision : undefined;
  const alarms = [...new Set(members.flatMap((m) => m.alarms ?? []))].sort();
  // Per-voter evidence; voters etcd cannot list now (no member answers) are listed from the last known membership.
  const evidence = new Map((obs.voters ?? []).map((v) => [v.member, v]));
  const evidenceOf = (name: string) =>
    obs.voters
      ? { evidence: evidence.get(name)?.evidence ?? null, evidenceDetail: evidence.get(name)?.detail ?? null }
      : {};
  const unlisted = (obs.voters ?? []).filter((v) => !members.some((m) => m.podName === v.member));
  const available = !!obs.etcd && ready.length > 0 && hold?.reason !== 'QuorumLost';
  const spread = spreadOf(obs);
  const spreadWarning = majorityWarning(spread);

  const phase =
    !obs.exists || obs.deleting
      ? 'Destroying'
      : decision.kind === 'idle' && decision.reason === 'Paused'
        ? 'Paused'
        : decision.kind === 'idle' && decision.reason === 'Adopting'
          ? 'Adopting'
          : running?.type === 'create'
            ? 'Creating'
            : hold?.reason === 'QuorumLost'
              ? 'Failed'
              : running
                ? running.type.startsWith('scale')
                  ? 'Scaling'
                  : running.type === 'defragment' || running.type === 'reconfigure-member'
                    ? 'Maintaining'
                    : 'Recovering'
                : hold
                  ? 'Degraded'
                  : decision.kind === 'run'
                    ? 'Reconciling'
                    : 'Running';

  const service = `${clientServiceName(i.name)}.${i.namespace}.svc:2379`;
  const cond = (type: string, ok: boolean, reason: string, message: string): Condition => {
    const status = ok ? 'True' : 'False';
    const prev = i.previous.find((c) => c.type === type);
    return {
      type,
      status,
      reason,
      message,
      observedGeneration: obs.generation,
      lastTransitionTime: prev && prev.status === status ? prev.lastTransitionTime : i.now,
    };
  };
  const degradedReason = hold?.reason ?? (unready.length ? 'MembersNotReady' : 'AsExpected');
  const degradedMessage =
    hold?.message ?? (unready.length ? `not ready: ${unready.join(', ')}` : 'all members healthy');
  const conditions = [
    cond(
      'Available',
      available,
      available ? 'QuorumHealthy' : (hold?.reason ?? 'NoHealthyMembers'),
      available
        ? `${ready.length} healthy voting member(s) behind service ${service}`
        : (hold?.message ?? 'no member answers'),
    ),
    cond(
      'Progressing',
      !!running || decision.kind === 'run',
      running ? 'OperationRunning' : decision.kind === 'run' ? 'OperationPending' : 'Idle',
      running
        ? `${running.type} (${running.workflowId})${running.step ? `: ${running.step}` : ''}`
        : decision.kind === 'run'
          ? `next: ${decision.op.type}`
          : decision.kind === 'wait'
            ? decision.message
            : 'nothing to do',
    ),
    cond('Degraded', !!hold || unready.length > 0, degradedReason, degradedMessage),
    cond(
      'MembersSpread',
      !spreadWarning,
      spreadWarning ? 'MajorityOnOneNode' : 'NoMajorityOnOneNode',
      spreadWarning ??
        `no node holds a majority of the voting members (${Object.keys(spread.byNode).length} node(s) in use)`,
    ),
    ...(decision.kind === 'idle' && decision.reason === 'Paused'
      ? [cond('Paused', true, 'SpecPaused', decision.message)]
      : []),
    // Only while refused, so the status of other clusters stays as it was.
    ...(obs.tls?.refused ? [cond('TLSSwitchRefused', true, 'SwitchNeedsClaims', obs.tls.refused)] : []),
    ...(obs.tls?.issuerProblem ? [cond('CertManagerNotReady', true, 'IssuerUnusable', obs.tls.issuerProblem)] : []),
    // Only while an alarm is active, so the status of clusters without one stays as it was.
    ...(alarms.length
      ? [
          cond(
            'Alarm',
            true,
            'EtcdAlarm',
            `active etcd alarm(s): ${alarms.join(', ')}; members still serve reads, NOSPACE refuses writes until compacted, defragmented and disarmed`,
          ),
        ]
      : []),
  ];
  return {
    phase,
    observedGeneration: obs.generation,
    size: members.length,
    readyMembers: ready.length,
    members: { ready, unready },
    memberStatuses: [
      ...members.map((m) => ({
        name: m.podName,
        id: m.id,
        healthy: m.healthy,
        learner: m.isLearner,
        leader: m.isLeader,
        version: m.version ?? null,
        podIP: pods.get(m.podName)?.ip ?? null,
        node: pods.get(m.podName)?.node ?? null,
        error: m.error ?? null,
        ...evidenceOf(m.podName),
        ...(m.alarms?.length ? { alarms: m.alarms } : {}),
        ...(m.dbSize ? { dbSize: m.dbSize, dbSizeInUse: m.dbSizeInUse ?? null } : {}),
        ...(i.maintenance?.lastDefrag[m.podName] ? { lastDefragmentation: i.maintenance.lastDefrag[m.podName] } : {}),
      })),
      ...unlisted.map((v) => ({
        name: v.member,
        id: null,
        healthy: false,
        learner: false,
        leader: false,
        version: null,
        podIP: pods.get(v.member)?.ip ?? null,
        node: pods.get(v.member)?.node ?? null,
        error: null,
        ...evidenceOf(v.member),
      })),
    ],
    placement: spread.byNode,
    // Latched: a fresh workflow reads it back and never creates a second cluster over this one.
    ...(obs.clusterId ? { clusterID: obs.clusterId } : {}),
    selector: memberSelector(i.name),
    serviceName: clientServiceName(i.name),
    clientURLs: [`${obs.tls?.enabled ? 'https' : 'http'}://${service}`],
    ...(obs.tls?.enabled
      ? {
          tls: {
            enabled: true,
            ...(obs.tls.caNotAfter ? { caNotAfter: obs.tls.caNotAfter } : {}),
            ...(obs.tls.notAfter ? { notAfter: obs.tls.notAfter } : {}),
            ...(obs.tls.certificates ? { certificates: obs.tls.certificates } : {}),
            ...(obs.tls.rotations !== undefined ? { rotations: obs.tls.rotations } : {}),
          },
        }
      : // Null, not absent: the status is merge-patched, and a cluster switched to plain must drop its TLS record.
        { tls: null }),
    currentVersion: versions.length === 1 ? versions[0] : versions.length ? versions.sort().join(',') : null,
    conditions,
    currentOperation: running ?? null,
    ...(i.maintenance?.lastCompaction ? { lastCompaction: i.maintenance.lastCompaction } : {}),
    lastOperations: i.lastOperations.slice(-5),
    reason:
      decision.kind === 'idle'
        ? decision.message
        : decision.kind === 'run'
          ? `next operation: ${decision.op.type}`
          : decision.message,
  };
}

/** A failure's message and its cause's, without repeats (at most 500 characters). */
export function failureMessage(e: unknown): string {
  let err = e as { message?: string; cause?: unknown };
  const parts: string[] = [];
  while (err) {
    if (err.message) parts.push(err.message);
    err = err.cause as typeof err;
  }
  return parts
    .filter((m, i) => i === 0 || !parts[i - 1].includes(m))
    .slice(-2)
    .join(': ')
    .slice(0, 500);
}
