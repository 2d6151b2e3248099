// Shapes shared by workflows and activities. Pure types: safe inside the workflow sandbox.
import type { ClusterRef, EtcdClusterSpec } from '../api/etcdcluster.js';

/** One etcd member as etcd reports it, joined with its pod. */
export interface MemberView {
  id: string; // uint64 as a decimal string: never a number
  name: string; // empty until the member has started
  peerURL: string;
  podName: string; // derived from the peer URL
  isLearner: boolean;
  /** Answered a status call just now. */
  healthy: boolean;
  isLeader: boolean;
  version?: string;
  raftIndex?: string;
  revision?: string;
  error?: string;
  /** Active etcd alarms as this member reports them (cluster-wide, e.g. "NOSPACE on etcd-0001"): not ill health. */
  alarms?: string[];
  /** Backend file size and the part of it in use (Status dbSize, dbSizeInUse). */
  dbSize?: number;
  dbSizeInUse?: number;
  /** Answered a status call on its own endpoint (with or without a leader). */
  answered?: boolean;
  /** Reports a known leader: proof that a quorum exists somewhere, whatever the controller can reach. */
  leaderKnown?: boolean;
}

/** What Kubernetes and etcd together say about one voter's data (issue 12). */
export type Evidence = 'serving' | 'unreachable' | 'data-present' | 'data-gone';
export interface VoterEvidence {
  member: string;
  evidence: Evidence;
  detail: string;
}

export interface PodView {
  name: string;
  phase: string;
  ready: boolean;
  ip?: string;
  deleting: boolean;
  image: string;
  restarts: number;
  /** Container waiting reason (ErrImagePull, CrashLoopBackOff...) or scheduling problem. */
  problem?: string;
  /** Its spec-driven etcd flags differ from the spec's (what differs); absent when equal or unknown. */
  optionsDrift?: string;
  ageSeconds: number;
  /** The node it was scheduled to (absent while unscheduled, and in observations older than placement). */
  node?: string;
}

/** A node as placement sees it: could a new member pod be scheduled there? */
export interface NodeView {
  name: string;
  zone?: string;
  /** Ready, not cordoned, no NoSchedule/NoExecute taint, and matching spec.pod.nodeSelector. */
  schedulable: boolean;
  /** Its Ready condition is True (absent in observations older than issue 15). */
  ready?: boolean;
  /** Why it is not ready: its kubelet's heartbeat is stale, or its Ready condition (absent in older observations). */
  notReady?: string;
}

export interface Observation {
  exists: boolean;
  deleting: boolean;
  /** An unmanaged etcd is being adopted into this cluster: the migration workflow is in charge. */
  adopting?: boolean;
  uid: string;
  generation: number;
  spec?: EtcdClusterSpec;
  /** Why the spec cannot be acted on (beyond what the API schema already refuses). */
  specError?: string;
  pods: PodView[];
  /** Null when no member answered. */
  etcd: {
    members: MemberView[];
    leaderId?: string;
    clusterVersion?: string;
    clusterId?: string;
    /** The member list was read through the leader: safe for destructive decisions. */
    linearizable?: boolean;
  } | null;
  /** Per voter (the last known voters when etcd cannot say): absent in observations older than issue 12. */
  voters?: VoterEvidence[];
  /** Kubernetes says this cluster was created (latched status.clusterID, member pods or claims). */
  created?: boolean;
  /** etcd's cluster ID, live or as latched in status. */
  clusterId?: string;
  /** TLS mode and certificate expiry (issue 18); absent for plain clusters and in older observations. */
  tls?: {
    enabled: boolean;
    refused?: string;
    /** The mode a running cluster is being switched to (spec.tls asks for the other one). */
    switchTo?: boolean;
    caNotAfter?: string;
    notAfter?: string;
    /** Each certificate Secret's expiry, rotations done, and what to renew now (absent in older observations). */
    certificates?: { secret: string; notAfter: string }[];
    rotations?: number;
    renew?: { ca: boolean; reason: string; request?: string };
    /** spec.tls.issuerRef: what keeps cert-manager from issuing the certificates (CRDs, Issuer, a change of issuer). */
    issuerProblem?: string;
  };
  highestIndex: number; // the highest member index seen anywhere (pods, etcd), -1 if none
  /** Nodes for placement; absent when the controller may not list nodes (and in older observations). */
  nodes?: NodeView[];
  /** Owned Services and budget that do not exist (`Kind/name`), and whether spec.backup's tool is missing: the
   *  cluster workflow applies them again (absent in older observations). */
  ownedMissing?: string[];
  backupToolMissing?: boolean;
  observedAt: string;
}

export type Operation =
  | { type: 'create'; size: number }
  | { type: 'scale-up'; from: number; to: number }
  | { type: 'scale-down'; from: number; to: number }
  /** corruptId: etcd's ID of a member replaced for a CORRUPT alarm (disarmed after its removal). */
  | { type: 'replace-member'; member: string; reason: string; corruptId?: string }
  | {
      type: 'restart-member';
      member: string;
      reason: string;
      quorumLost?: boolean;
      /** Its pod still exists (silent, failed): deleted first, then recreated on the same claim. */
      recreate?: boolean;
    }
  | { type: 'remove-ghost-member'; member: string; reason: string }
  | { type: 'remove-orphan-pod'; pod: string; reason: string }
  | { type: 'move-member'; member: string; from: string; reason: string }
  /** A member started with other etcd flags than the spec's: its successor joins with the spec's, then it leaves. */
  | { type: 'reconfigure-member'; member: string; reason: string }
  | { type: 'upgrade'; from: string; to: string }
  | { type: 'recover'; reason: string; lastSeenRevision: number }
  /** NOSPACE: compact, defragment every member (leader last), disarm. Otherwise: defragment these members. */
  | { type: 'defragment'; reason: string; nospace: boolean; members: string[] }
  /** Rotation n of the certificates (and of the CA when ca): due before expiry, or requested (rotate-certs). */
  | { type: 'rotate-certs'; n: number; ca: boolean; reason: string; request?: string }
  /** spec.tls asks for the other mode (or a switch is half done): every member rolled, one at a time (issue 18). */
  | { type: 'switch-tls'; to: boolean; reason: string };

export interface OperationInput {
  ref: ClusterRef;
  spec: EtcdClusterSpec;
  op: Operation;
  /** First free member index: names are never reused. */
  nextIndex: number;
  /** The cluster loop's look that decided this operation (a scale-down since `scale-down-loops-look`): its first
   *  victim is chosen from it instead of a second look. */
  decidedOn?: Observation;
}

export interface OperationResult {
  membersCreated: number;
  message: string;
  details?: Record<string, unknown>;
}

/** Whose snapshot it is (see activities/backup-identity.ts). */
export interface BackupIdentity {
  namespace?: string;
  name?: string;
  uid?: string;
  etcdClusterId?: string;
}

/** One snapshot kept by the backup tool. */
export interface BackupRecord {
  name: string;
  revision: number;
  size: number;
  sha256: string;
  etcdVersion: string;
  time: string;
  member: string;
  reason: string;
  valid: boolean;
  problem?: string;
  /** Absent in records written before issue 12. */
  cluster?: BackupIdentity;
  /** Object storage (issue 19): the stored object is compressed; sha256/size are of the snapshot itself,
   *  compressedSha256/compressedSize of the object as stored. location: s3://bucket/key. */
  compression?: 'gzip';
  compressedSize?: number;
  compressedSha256?: string;
  location?: string;
  /** The backup read back and restored into a scratch data dir (issue 19), when the tool ran that check. */
  verification?: BackupVerification;
  /** Keys read from the source member at the snapshot's revision, compared by verification (absent before). */
  sample?: KeySample;
}

/** A deterministic sample of a snapshot's keys (chosen by sha256(salt + key)), read at exactly its revision. */
export interface KeySample {
  revision: number;
  /** Keys in the keyspace at that revision. */
  keys: number;
  salt: string;
  entries: { key: string /* base64 */; modRevision: number; valueSha256: string }[];
}

/** A restore check of a stored backup: status.lastVerification. */
export interface BackupVerification {
  result: 'Succeeded' | 'Failed';
  backup: string;
  revision: number;
  keys?: number;
  /** Sampled keys compared with the restored etcd (absent: the backup has no sample, revision and keys only). */
  sampled?: number;
  /** What differed (first few), when the sample did not match. */
  mismatches?: string[];
  time: string;
  message: string;
}
