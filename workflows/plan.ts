// What the cluster needs next, decided from one observation: the runbook's triage order.
// Pure and deterministic, so the cluster workflow can call it and unit tests can cover it.
import { dataClaimName, quorum } from '../api/names.js';
import { spreadOf } from './placement.js';
import type { MemberView, Observation, Operation } from './types.js';
import {
  compareVersions,
  formatVersion,
  minimum35For36,
  parseVersion,
  previousMinimum35For36,
  upgradeRefusal,
} from './versions.js';

export interface Memory {
  /** The cluster finished its first create (so "no members" now means disaster, not "new"). */
  created: boolean;
  /** Member pod name → workflow time (ms) when it was first seen unhealthy. */
  unhealthySince: Record<string, number>;
  /** An upgrade that failed: held (no automatic retry) until the spec changes again. */
  upgradeFailed?: { generation: number; message: string; cancelled?: boolean; refused?: boolean };
  /** Workflow time (ms) since when quorum is lost; undefined while the cluster has quorum. */
  quorumLostSince?: number;
  /** A user asked for a restore (manual disaster recovery). */
  restoreRequested?: boolean;
  /** The highest revision ever seen: what a restore is measured against. */
  lastSeenRevision?: number;
}

/** Quorum must stay lost this long before an automatic restore (a restarting member is not a disaster).
 *  The rule for observations without per-voter evidence (histories from before issue 12). */
export const quorumLossGraceMs = 20_000;

/** Default of spec.backup.autoRestoreGraceSeconds: a majority's data must be provably gone this long. */
export const autoRestoreGraceSeconds = 60;

export type Decision =
  | { kind: 'idle'; reason: 'Running' | 'Paused' | 'Adopting'; message: string }
  | { kind: 'wait'; reason: string; message: string }
  | { kind: 'hold'; reason: string; message: string }
  | { kind: 'run'; op: Operation };

/** A member that stays unreachable this long with its pod still present is replaced. */
export const unhealthyGraceMs = 45_000;

export const normalizeVersion = (v: string) => v.replace(/^v/, '');

/** Scheduled defragmentation defaults: a member is defragmented when this much of its file is free (after compaction). */
export const defragDefaults = { freeBytes: 256 * 2 ** 20, freeRatio: 0.5 } as const;

/** Behaviour changes decide() makes only when the workflow took their patch (see cluster.ts); old histories replay
 *  without them. */
export interface DecideOptions {
  /** A dead member with a claim is restarted in place, also when its pod exists; replaced only when its data is lost. */
  claimsInPlace?: boolean;
  /** etcd alarms run their runbooks; fragmented members are defragmented. */
  maintenance?: boolean;
  /** TLS certificates are renewed before they expire, and on request (issue 18). */
  certRotation?: boolean;
  /** spec.tls asking for the other mode of a running cluster is a rolling switch (refused before). */
  tlsSwitch?: boolean;
  /** A silent member with a claim whose pod's node is NotReady is left alone (held, said why), never recreated. */
  nodeDown?: boolean;
  /** A dead member whose pod is gone with its claim deleted or lost is replaced (was: restarted on a new empty claim). */
  lostClaimReplaces?: boolean;
}

export function decide(obs: Observation, mem: Memory, nowMs: number, opts: DecideOptions = {}): Decision {
  const maintenance = opts.maintenance ?? true;
  const spec = obs.spec!;
  if (spec.paused)
    return {
      kind: 'idle',
      reason: 'Paused',
      message: 'spec.paused is true: the controller makes no changes until it is false',
    };
  if (obs.adopting)
    return {
      kind: 'idle',
      reason: 'Adopting',
      message: 'an unmanaged etcd is being adopted: the migration workflow is making the changes',
    };
  if (obs.specError) return { kind: 'hold', reason: 'InvalidSpec', message: obs.specError };
  const pods = obs.pods.filter((p) => !p.deleting);
  const etcd = obs.etcd;

  if (!etcd) {
    // Kubernetes (latched cluster ID, member pods, claims) overrules a fresh workflow's memory: never a second cluster.
    if (!mem.created && !obs.created) return { kind: 'run', op: { type: 'create', size: spec.size } };
    if (obs.voters) return quorumLossByEvidence(obs, mem, nowMs, 'no etcd member answers the controller');
    const stuck = pods.find((p) => p.problem);
    return quorumLost(
      obs,
      mem,
      nowMs,
      `no etcd member answers (${pods.length} member pod(s) left${stuck ? `; ${stuck.name}: ${stuck.problem}` : ''})`,
      quorumLossGraceMs,
    );
  }

  const members = etcd.members;
  const voters = members.filter((m) => !m.isLearner);
  const healthyVoters = voters.filter((m) => m.healthy);
  const what = `only ${healthyVoters.length} of ${voters.length} voting members are healthy (quorum is ${quorum(voters.length)})`;
  if (healthyVoters.length < quorum(voters.length)) {
    if (!obs.voters) return quorumLost(obs, mem, nowMs, what, quorumLossGraceMs);
    // A member that knows a leader proves a quorum elsewhere: the controller's own reach is not the cluster's.
    if (!quorumProven(obs)) return quorumLossByEvidence(obs, mem, nowMs, what);
  }
  if (etcd.linearizable === false)
    return {
      kind: 'wait',
      reason: 'MembershipUnknown',
      message: 'the member list could not be read through the leader: no membership change until it can',
    };
  const podOf = new Map(pods.map((p) => [p.name, p]));

  if (maintenance) {
    const alarm = alarmDecision(members, voters, healthyVoters);
    if (alarm) return alarm;
  }

  // 1. Ghosts: members etcd knows that never started and have no pod (a join interrupted before its pod).
  const ghost = members.find((m) => !podOf.has(m.podName) && (m.isLearner || !m.name));
  if (ghost)
    return {
      kind: 'run',
      op: {
        type: 'remove-ghost-member',
        member: ghost.podName,
        reason: `member ${ghost.podName} was added to etcd but its pod does not exist`,
      },
    };

  // 2. Dead voters: pod gone, or unreachable through etcd for longer than the grace period.
  let nodeHold: Decision | undefined;
  for (const m of voters.filter((v) => !v.healthy)) {
    // A silent member with a claim may hold data: restart it in place (no membership change), never replace
    // and wipe it, unless Kubernetes (claim deleted or lost) or etcd (CORRUPT alarm) says its data is lost.
    const lost =
      spec.pod?.persistentVolumeClaimSpec && opts.claimsInPlace && obs.voters ? dataLost(obs, m.podName) : undefined;
    // Its pod's node is NotReady: a recreated pod cannot start there, nor elsewhere on a volume pinned to that node, and
    // a force-deleted pod may still run there (two etcds on one data dir). Wait for the node, say so (issue 15).
    const down = lost === '' && opts.nodeDown ? nodeDownHold(obs, m.podName) : undefined;
    if (down) {
      nodeHold ??= down;
      continue;
    }
    const dead = deadReason(m, podOf.get(m.podName), mem, nowMs);
    if (!dead) continue;
    if (lost === '') {
      const pod = podOf.get(m.podName);
      return {
        kind: 'run',
        op: { type: 'restart-member', member: m.podName, reason: dead, ...(pod ? { recreate: true } : {}) },
      };
    }
    if (healthyVoters.length < quorum(voters.length - 1)) {
      return {
        kind: 'hold',
        reason: 'ReplacementUnsafe',
        message: `${m.podName} is dead (${dead}) but removing it would leave ${healthyVoters.length} healthy of ${voters.length - 1}: below quorum`,
      };
    }
    // Its claim deleted or lost (e.g. with its node, gone for good): a restart would start an empty member under
    // the old ID, which never joins; it is replaced instead (issue 15).
    const restartable = !(lost && opts.lostClaimReplaces);
    if (spec.pod?.persistentVolumeClaimSpec && !podOf.has(m.podName) && restartable) {
      return { kind: 'run', op: { type: 'restart-member', member: m.podName, reason: dead } };
    }
    return { kind: 'run', op: { type: 'replace-member', member: m.podName, reason: lost ? `${dead}; ${lost}` : dead } };
  }

  if (nodeHold) return nodeHold;

  // 3. Orphans: member pods etcd does not list (removed from membership, pod left behind).
  const listed = new Set(members.map((m) => m.podName));
  const orphan = pods.find((p) => !listed.has(p.name));
  if (orphan)
    return {
      kind: 'run',
      op: { type: 'remove-orphan-pod', pod: orphan.name, reason: `pod ${orphan.name} is not an etcd member` },
    };

  // 4. Something is still settling: never change membership while a member is not healthy.
  const settling = members.find((m) => !m.healthy);
  if (settling) {
    const pod = podOf.get(settling.podName);
    return {
      kind: 'wait',
      reason: 'MemberNotHealthy',
      message: `waiting for ${settling.podName} to become healthy${pod?.problem ? ` (${pod.problem})` : ''}`,
    };
  }

  // 5. Version before size, so new members never mix versions with an unfinished upgrade.
  const want = normalizeVersion(spec.version);
  const versions = members.map((m) => m.version).filter((v): v is string => !!v);
  if (versions.some((v) => v !== want)) {
    if (mem.upgradeFailed && mem.upgradeFailed.generation === obs.generation) {
      return {
        kind: 'hold',
        reason: mem.upgradeFailed.cancelled
          ? 'UpgradeCancelled'
          : mem.upgradeFailed.refused
            ? 'UpgradeRefused'
            : 'UpgradeFailed',
        message: mem.upgradeFailed.refused
          ? mem.upgradeFailed.message // a precondition says what to do itself; no member changed
          : `${mem.upgradeFailed.message}. The other members are left as they are; fix the cause and change the spec to resume (or set spec.version back to roll back)`,
      };
    }
    const refusal = upgradeRefusal(versions, want, maintenance ? minimum35For36 : previousMinimum35For36);
    if (refusal) return { kind: 'hold', reason: 'UpgradeRefused', message: refusal };
    return { kind: 'run', op: { type: 'upgrade', from: runningVersion(versions), to: want } };
  }

  // 6. Size.
  if (members.length < spec.size) return { kind: 'run', op: { type: 'scale-up', from: members.length, to: spec.size } };
  if (members.length > spec.size)
    return { kind: 'run', op: { type: 'scale-down', from: members.length, to: spec.size } };

  // 6b. TLS: spec.tls asks for the other mode, or a switch stopped half way: every member rolled, one at a time.
  const to = obs.tls?.switchTo;
  if (opts.tlsSwitch && to !== undefined && !obs.tls?.refused) {
    const reason = `spec.tls.enabled is ${to}: switching the running cluster ${to ? 'plain → TLS' : 'TLS → plain'}`;
    return { kind: 'run', op: { type: 'switch-tls', to, reason } };
  }

  // 7. Flags: a member started with other spec-driven etcd flags is replaced by one with the spec's, the leader last (before
  // placement: a move would be undone by the roll, and the roll's successors land on the freest nodes anyway).
  const drifted = maintenance
    ? members.filter((m) => podOf.get(m.podName)?.optionsDrift).sort((a, b) => Number(a.isLeader) - Number(b.isLeader))
    : [];
  if (drifted.length) {
    const m = drifted[0];
    const reason = `etcd flags changed in spec.etcd (${podOf.get(m.podName)!.optionsDrift})`;
    return { kind: 'run', op: { type: 'reconfigure-member', member: m.podName, reason } };
  }

  // 7½. Certificates (TLS): renewed when a third of their lifetime remains, or on request; no member restarts.
  const renew = opts.certRotation ? obs.tls?.renew : undefined;
  if (renew) return { kind: 'run', op: { type: 'rotate-certs', n: (obs.tls?.rotations ?? 0) + 1, ...renew } };

  // 8. Placement: a member moves (learner joins elsewhere first) while a node is crowded and another is free.
  // A user's own affinity owns placement: then the status only warns.
  const move = spec.pod?.affinity ? undefined : spreadOf(obs).move;
  if (move) return { kind: 'run', op: { type: 'move-member', ...move } };

  // 9. Space: defragment members whose backend is mostly free (compaction frees pages, only a defrag returns them).
  const frag = maintenance ? fragmented(members, spec.etcd) : [];
  if (frag.length) {
    return {
      kind: 'run',
      op: {
        type: 'defragment',
        nospace: false,
        members: frag.map((m) => m.podName),
        reason: `fragmented: ${frag.map((m) => `${m.podName} ${mib(m.dbSize! - m.dbSizeInUse!)} of ${mib(m.dbSize!)} free`).join(', ')}`,
      },
    };
  }

  return { kind: 'idle', reason: 'Running', message: `${members.length} healthy members` };
}

/** Why Kubernetes or etcd says this member's data is lost; '' when its data may still exist. */
function dataLost(obs: Observation, member: string): string {
  const ev = obs.voters?.find((v) => v.member === member);
  if (ev?.evidence === 'data-gone') return ev.detail;
  const corrupt = obs.etcd?.members.flatMap((m) => m.alarms ?? []).find((a) => a === `CORRUPT on ${member}`);
  return corrupt ? `etcd raised ${corrupt}` : '';
}

/** The hold for a member whose pod (even one being deleted) is on a node that is not Ready; undefined otherwise. */
function nodeDownHold(obs: Observation, member: string): Decision | undefined {
  const node = obs.pods.find((p) => p.name === member && p.node)?.node;
  const view = obs.nodes?.find((n) => n.name === node);
  if (!node || view?.ready !== false) return undefined;
  const claim = dataClaimName(member);
  return {
    kind: 'hold',
    reason: 'MemberNodeNotReady',
    message:
      `${member} does not answer and its node ${node} is not ready (${view.notReady ?? 'NotReady'}); ` +
      `its data is on claim ${claim}, whose volume may be ` +
      `pinned to ${node}, so the member is neither restarted elsewhere nor replaced: waiting for ${node} to be Ready. ` +
      `If ${node} is gone for good, delete its Node object (and the claim ${claim} if its volume was local to ${node})`,
  };
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** Members whose backend file has enough free space to be worth a defragmentation (spec.etcd.defrag*). */
export function fragmented(
  members: MemberView[],
  o: { defragFreeBytes?: number; defragFreeRatio?: number } = {},
): MemberView[] {
  const minFree = o.defragFreeBytes ?? defragDefaults.freeBytes;
  const minRatio = o.defragFreeRatio ?? defragDefaults.freeRatio;
  return members.filter((m) => {
    if (!m.healthy || !m.dbSize || m.dbSizeInUse === undefined) return false;
    const free = m.dbSize - m.dbSizeInUse;
    return free >= minFree && free / m.dbSize >= minRatio;
  });
}

/**
 * etcd alarms. CORRUPT names the member whose data differs from the others': it is replaced (its data is
 * never copied anywhere), while the others keep a quorum without it. NOSPACE (cluster-wide, writes refused):
 * the space runbook runs before anything else, since joins and upgrades need writes.
 */
function alarmDecision(members: MemberView[], voters: MemberView[], healthyVoters: MemberView[]): Decision | undefined {
  const raised = [...new Set(members.flatMap((m) => m.alarms ?? []))];
  const corrupt = raised
    .map((a) => /^CORRUPT on (\S+)$/.exec(a)?.[1])
    .map((n) => members.find((m) => m.podName === n || m.name === n))
    .find((m) => !!m);
  if (corrupt) {
    const others = healthyVoters.filter((m) => m !== corrupt).length;
    if (!corrupt.isLearner && others < quorum(voters.length - 1)) {
      return {
        kind: 'hold',
        reason: 'ReplacementUnsafe',
        message: `etcd raised CORRUPT for ${corrupt.podName} but removing it would leave ${others} healthy of ${voters.length - 1}: below quorum`,
      };
    }
    return {
      kind: 'run',
      op: {
        type: 'replace-member',
        member: corrupt.podName,
        corruptId: corrupt.id,
        reason: `etcd raised a CORRUPT alarm for ${corrupt.podName}: its data differs from the other members'`,
      },
    };
  }
  if (raised.some((a) => a.startsWith('NOSPACE'))) {
    return {
      kind: 'run',
      op: {
        type: 'defragment',
        nospace: true,
        members: members.filter((m) => m.healthy).map((m) => m.podName),
        reason: `NOSPACE alarm (${raised.filter((a) => a.startsWith('NOSPACE')).join(', ')}): writes are refused`,
      },
    };
  }
  return undefined;
}

/** The controller's own view: a quorum of the voters answer it and know the leader. */
export function hasQuorum(obs: Observation): boolean {
  const voters = (obs.etcd?.members ?? []).filter((m) => !m.isLearner);
  return voters.filter((m) => m.healthy).length >= quorum(voters.length);
}

const quorumProven = (obs: Observation) => !!obs.etcd?.members.some((m) => m.leaderKnown);

/**
 * No quorum in sight. While the data of a quorum of voters may still exist, bring it back (restart
 * members on their claims) or wait for it, and say so; restore only when more than size − quorum
 * voters' data is provably gone.
 */
function quorumLossByEvidence(obs: Observation, mem: Memory, nowMs: number, what: string): Decision {
  const voters = obs.voters!;
  const need = quorum(voters.length);
  const mayExist = voters.filter((v) => v.evidence !== 'data-gone');
  // Member and evidence only (details are in status): the message keys the Event, so it must stay stable.
  const missing = voters.filter((v) => v.evidence !== 'serving').map((v) => `${v.member} (${v.evidence})`);
  if (mayExist.length < need || (mem.restoreRequested && obs.spec?.backup)) {
    const grace = (obs.spec?.backup?.autoRestoreGraceSeconds ?? autoRestoreGraceSeconds) * 1000;
    return quorumLost(
      obs,
      mem,
      nowMs,
      `${what}; the data of ${voters.length - mayExist.length} of ${voters.length} voters is gone: ${missing.join(', ')}`,
      grace,
    );
  }
  const claimed = voters.find((v) => v.evidence === 'data-present');
  if (claimed)
    return {
      kind: 'run',
      op: {
        type: 'restart-member',
        member: claimed.member,
        reason: `quorum lost and its pod is gone; ${claimed.detail}`,
        quorumLost: true,
      },
    };
  const waitingFor = voters.filter((v) => v.evidence === 'unreachable').map((v) => v.member);
  return {
    kind: 'hold',
    reason: 'QuorumLost',
    message: `${what}; the data of ${mayExist.length} of ${voters.length} voters may still exist (quorum is ${need}), so nothing is restored or deleted. Missing: ${missing.join(', ')}. Waiting for ${waitingFor.join(', ') || 'the members'} to answer again`,
  };
}

/** Quorum is gone: restore from the freshest source when allowed, otherwise say what the user must do. */
function quorumLost(obs: Observation, mem: Memory, nowMs: number, what: string, graceMs: number): Decision {
  const backup = obs.spec?.backup;
  const lastSeen = mem.lastSeenRevision ?? 0;
  if (!backup) {
    return {
      kind: 'hold',
      reason: 'QuorumLost',
      message: `${what}: the cluster cannot serve and no backup is configured (spec.backup), so it cannot be restored automatically; nothing is deleted`,
    };
  }
  if (mem.restoreRequested)
    return { kind: 'run', op: { type: 'recover', reason: `${what}; restore requested`, lastSeenRevision: lastSeen } };
  if (backup.autoRestore === false) {
    return {
      kind: 'hold',
      reason: 'QuorumLost',
      message: `${what}: automatic restore is off (spec.backup.autoRestore=false); run \`npm run cli -- restore <cluster>\` to restore from the freshest source`,
    };
  }
  const since = mem.quorumLostSince ?? nowMs;
  if (nowMs - since < graceMs) {
    return {
      kind: 'hold',
      reason: 'QuorumLost',
      message: `${what}: restoring automatically if it lasts ${graceMs / 1000}s`,
    };
  }
  return { kind: 'run', op: { type: 'recover', reason: what, lastSeenRevision: lastSeen } };
}

function deadReason(m: MemberView, pod: { phase: string } | undefined, mem: Memory, nowMs: number): string | undefined {
  if (!pod) return `its pod ${m.podName} is gone`;
  if (pod.phase === 'Failed' || pod.phase === 'Succeeded') return `its pod ${m.podName} has terminated (${pod.phase})`;
  const since = mem.unhealthySince[m.podName];
  if (since !== undefined && nowMs - since >= unhealthyGraceMs)
    return `unreachable through etcd for ${Math.round((nowMs - since) / 1000)}s${m.error ? ` (${m.error})` : ''}`;
  return undefined;
}

/** Updates the unhealthy-since bookkeeping from a fresh observation. */
export function trackHealth(obs: Observation, mem: Memory, nowMs: number): Memory {
  const next: Record<string, number> = {};
  for (const m of obs.etcd?.members ?? []) if (!m.healthy) next[m.podName] = mem.unhealthySince[m.podName] ?? nowMs;
  const lost =
    ((mem.created || !!obs.created) && !obs.etcd) ||
    (!!obs.etcd && !hasQuorum(obs) && !(obs.voters && quorumProven(obs)));
  const revisions = (obs.etcd?.members ?? []).map((m) => Number(m.revision ?? 0));
  return {
    ...mem,
    unhealthySince: next,
    quorumLostSince: lost ? (mem.quorumLostSince ?? nowMs) : undefined,
    restoreRequested: lost ? mem.restoreRequested : false,
    lastSeenRevision: Math.max(mem.lastSeenRevision ?? 0, ...revisions),
  };
}

/** The version the cluster runs now: the oldest member's (etcd's cluster version follows the oldest). */
export function runningVersion(versions: string[]): string {
  const parsed = versions.map(parseVersion).filter((v): v is NonNullable<typeof v> => !!v);
  return parsed.length ? formatVersion(parsed.reduce((a, b) => (compareVersions(a, b) <= 0 ? a : b))) : '';
}
