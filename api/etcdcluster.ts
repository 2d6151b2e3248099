// The EtcdCluster contract: the resource's coordinates, and the labels and annotations on what the
// controller owns. One home for each; the watcher, CLI, workflows, activities and tests import them. Pure.
import type { V1NetworkPolicyPeer } from '@kubernetes/client-node';

export const group = 'coreos.com';
export const version = 'v1';
export const kind = 'EtcdCluster';
export const plural = 'etcdclusters';
export const apiVersion = `${group}/${version}`;
/** The custom-objects API's coordinates of the resource (CustomObjectsApi calls take these). */
export const resource = { group, version, plural } as const;

/** Holds an EtcdCluster until its members, Services and claims are gone. */
export const finalizer = 'coreos.com/etcd-cleanup';
/** Set while an unmanaged etcd is being adopted: the cluster workflow leaves the cluster to the migration. */
export const adoptingAnnotation = 'coreos.com/adopting';
export const legacyEndpointsAnnotation = 'coreos.com/legacy-endpoints';

/** On a member pod: the spec-driven etcd flags it was started with (JSON), to see drift from the spec. */
export const optionsAnnotation = 'etcd.coreos.com/etcd-options';
/** On a member pod: `new` (static bootstrap) or `existing` (joined as a learner). */
export const initialClusterStateAnnotation = 'etcd.coreos.com/initial-cluster-state';
/** On a member pod: the snapshot its data was restored from. */
export const restoredFromAnnotation = 'etcd.coreos.com/restored-from';
/** Older controllers created a static bootstrap's pods gated and released them together: a gated pod never ran. */
export const bootstrapGate = 'etcd.coreos.com/bootstrap';
/** On a held member pod (joining, or of a static bootstrap): the --initial-cluster its etcd starts with, set to release
 *  it. Until then an init container holds etcd, so the pod's DNS name exists before any peer looks it up. */
export const initialClusterAnnotation = 'etcd.coreos.com/initial-cluster';

/** Labels: every member pod and per-cluster object carries `app` and the cluster's name. */
export const clusterLabel = 'etcd_cluster';
export const memberLabel = 'etcd_node';
export const metricsLabel = 'etcd_metrics';
const memberApp = 'etcd';
const backupToolApp = 'etcd-backup-tool';

export const clusterLabels = (cluster: string) => ({ app: memberApp, [clusterLabel]: cluster });
export const memberLabels = (cluster: string, member: string) => ({ ...clusterLabels(cluster), [memberLabel]: member });
export const backupToolLabels = (cluster: string) => ({ app: backupToolApp, [clusterLabel]: cluster });
/** The controller's own pods (deploy/controller.yaml): the members' NetworkPolicy lets them reach 2379. */
export const controllerLabels = { app: 'kube-etcd-controller' };
/** Where deploy/controller.yaml runs the controller (its POD_NAMESPACE says otherwise). */
export const defaultControllerNamespace = 'kube-etcd-controller';

/** Selects the member pods of one cluster, or of every cluster. */
export const memberSelector = (cluster?: string) =>
  cluster ? `app=${memberApp},${clusterLabel}=${cluster}` : `app=${memberApp}`;
export const backupToolSelector = (cluster: string) => `app=${backupToolApp},${clusterLabel}=${cluster}`;
/** Everything labelled as belonging to a cluster (pods, Services, claims). */
export const ownedSelector = (cluster: string) => `${clusterLabel}=${cluster}`;
/** The cluster an object's labels say it belongs to. */
export const clusterOf = (labels: Record<string, string> | undefined) => labels?.[clusterLabel];

// The spec, as deploy/crd.yaml's schema declares it (test/crd.test.ts checks they agree).

export interface ClusterRef {
  namespace: string;
  name: string;
  uid: string;
}

export interface PodOptions {
  resources?: Record<string, unknown>;
  nodeSelector?: Record<string, string>;
  affinity?: Record<string, unknown>;
  antiAffinity?: boolean;
  tolerations?: Record<string, unknown>[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  persistentVolumeClaimSpec?: Record<string, unknown>;
}

export interface BackupSpec {
  maxSnapshot?: number;
  snapshotIntervalInSecond?: number;
  volumeSizeInMB?: number;
  storageType?: string;
  autoRestore?: boolean;
  /** How long a majority's data must be provably gone before the automatic restore (default 60). */
  autoRestoreGraceSeconds?: number;
  /** Retention by age, beside maxSnapshot's count (the newest backup is always kept). */
  maxAgeInSecond?: number;
  /** How often the newest stored backup is restored into a scratch data dir and served by a throw-away etcd, its
   *  sampled keys compared, to prove it restores what the cluster held (default 86400; 0 = never):
   *  status.lastVerification. */
  verifyIntervalInSecond?: number;
  /** Object storage instead of the claim (issue 19). */
  s3?: S3BackupSpec;
}

/** An S3-compatible bucket; credentials from a Secret (keys accessKeyID, secretAccessKey). */
export interface S3BackupSpec {
  endpoint?: string;
  bucket: string;
  prefix?: string;
  region?: string;
  forcePathStyle?: boolean;
  credentialsSecret: string;
  /** A Secret whose key ca.crt holds the CA of the endpoint's certificate. */
  caSecret?: string;
}

/** Start a new cluster from a backup (issue 19), read through this cluster's own backup destination. */
export interface RestoreSpec {
  /** The cluster whose backups to use (its namespace by default: this one's). */
  cluster: string;
  namespace?: string;
  /** One backup by name as listed (e.g. ns/cluster/etcd-snapshot-….db.gz); default: the newest valid one. */
  backup?: string;
  /** Only backups of this incarnation (object UID); default: the live cluster's UID, else any. */
  uid?: string;
}

/** etcd settings passed as flags to new members (defaults in activities/member-pod.ts). */
export interface EtcdOptions {
  autoCompactionMode?: 'periodic' | 'revision';
  autoCompactionRetention?: string | number;
  quotaBackendBytes?: number;
  /** Scheduled defragmentation of a member whose backend has at least this many free bytes (default 256 MiB)… */
  defragFreeBytes?: number;
  /** …and at least this share of its file free (default 0.5). */
  defragFreeRatio?: number;
  /** More etcd flags by name without dashes (e.g. election-timeout: "1500"); those the controller owns are refused. */
  flags?: Record<string, string | number | boolean>;
}

/** TLS for peer and client traffic (issue 18), on by default for new clusters (see effectiveTls). Changing `enabled`
 *  on a running cluster switches it member by member (members need claims); removing the block changes nothing. */
export interface TlsSpec {
  enabled: boolean;
  /** A cert-manager Issuer (kind Issuer by default, or ClusterIssuer; group cert-manager.io by default) that issues
   *  the member and client certificates instead of the controller's own CA: the controller applies cert-manager
   *  Certificates for the same Secrets, and cert-manager renews them. Set it when the cluster is created: changing
   *  it on a running TLS cluster is refused (a CA change cuts members apart). */
  issuerRef?: { name: string; kind?: string; group?: string };
  /** Lifetime of member and client certificates (default 365 days); renewed when a third of it remains. */
  certificateDays?: number;
  /** Lifetime of the CA (default 3650 days); rotated when a third of it remains. */
  caDays?: number;
}

/** Who may reach the members (issue 18): when enabled, a NetworkPolicy `<cluster>` lets peers talk only to members
 *  and clients reach 2379 only from the members, the backup tool, the controller's pods and the peers listed here.
 *  It takes effect only where the network plugin enforces NetworkPolicy. */
export interface NetworkPolicySpec {
  enabled: boolean;
  /** More sources allowed on the client port, as NetworkPolicy peers (podSelector, namespaceSelector, ipBlock);
   *  a controller running outside the cluster needs its address here. */
  clients?: V1NetworkPolicyPeer[];
}

/** etcd authentication (issue 18): a root user (the controller's) and one user + role per application, each with
 *  its password in a Secret the controller generates. Turning it off disables auth in etcd and keeps the users. */
export interface AuthSpec {
  enabled: boolean;
  users?: AuthUser[];
}

/** An application user: read (readOnly) or read and write on the keys under keyPrefix, through its role `<name>`. */
export interface AuthUser {
  name: string;
  keyPrefix: string;
  readOnly?: boolean;
}

/** On the root credentials Secret: "true" while the controller asks etcd with them (set before auth is enabled,
 *  cleared after it is disabled). */
export const authInUseAnnotation = 'etcd.coreos.com/auth-in-use';

/** On a member pod: "true" when it serves TLS, "bridge" while a switch plain ↔ TLS passes through it (plain listeners,
 *  peers dialled with its certificate); absent on plain members. */
export const tlsAnnotation = 'etcd.coreos.com/tls';
/** On an EtcdCluster: a request to rotate certificates now (`certs-<token>`; `ca-<token>` rotates the CA too).
 *  Each new value is one rotation; the CLI's rotate-certs sets it. */
export const rotateCertsAnnotation = 'etcd.coreos.com/rotate-certs';
/** On the CA Secret: the last rotate-certs value handled, and the number of rotations done; on a certificate
 *  Secret: the rotation that issued it. */
export const rotateCertsHandledAnnotation = 'etcd.coreos.com/rotate-certs-handled';
export const certsRotationAnnotation = 'etcd.coreos.com/certs-rotation';

export interface EtcdClusterSpec {
  size: number;
  version: string;
  repository: string;
  paused?: boolean;
  pod?: PodOptions;
  backup?: BackupSpec;
  etcd?: EtcdOptions;
  restore?: RestoreSpec;
  tls?: TlsSpec;
  networkPolicy?: NetworkPolicySpec;
  auth?: AuthSpec;
}

/** Every spec field by section: the compiler holds these to the types above, test/crd.test.ts to deploy/crd.yaml. */
type Fields<T> = { [K in keyof Required<T>]: true };
export const specFields: {
  spec: Fields<EtcdClusterSpec>;
  pod: Fields<PodOptions>;
  backup: Fields<BackupSpec>;
  etcd: Fields<EtcdOptions>;
  tls: Fields<TlsSpec>;
  networkPolicy: Fields<NetworkPolicySpec>;
  auth: Fields<AuthSpec>;
} = {
  spec: {
    size: true,
    version: true,
    repository: true,
    paused: true,
    pod: true,
    backup: true,
    etcd: true,
    restore: true,
    tls: true,
    networkPolicy: true,
    auth: true,
  },
  pod: {
    resources: true,
    nodeSelector: true,
    affinity: true,
    antiAffinity: true,
    tolerations: true,
    labels: true,
    annotations: true,
    persistentVolumeClaimSpec: true,
  },
  backup: {
    maxSnapshot: true,
    snapshotIntervalInSecond: true,
    volumeSizeInMB: true,
    storageType: true,
    autoRestore: true,
    autoRestoreGraceSeconds: true,
    maxAgeInSecond: true,
    verifyIntervalInSecond: true,
    s3: true,
  },
  etcd: {
    autoCompactionMode: true,
    autoCompactionRetention: true,
    quotaBackendBytes: true,
    defragFreeBytes: true,
    defragFreeRatio: true,
    flags: true,
  },
  tls: { enabled: true, issuerRef: true, certificateDays: true, caDays: true },
  networkPolicy: { enabled: true, clients: true },
  auth: { enabled: true, users: true },
};

// The status the controller publishes (the CRD keeps it schemaless: x-kubernetes-preserve-unknown-fields).

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
}

export interface OperationRecord {
  type: string;
  workflowId: string;
  result: 'Succeeded' | 'Failed' | 'Cancelled';
  message: string;
  startedAt: string;
  finishedAt: string;
}

export interface RunningOperation {
  type: string;
  workflowId: string;
  startedAt: string;
  step?: string;
}

/** One member as status reports it: etcd's view joined with its pod and the evidence about its data. */
export interface MemberStatus {
  name: string;
  id: string | null;
  healthy: boolean;
  learner: boolean;
  leader: boolean;
  version: string | null;
  podIP: string | null;
  node: string | null;
  error: string | null;
  evidence?: string | null;
  evidenceDetail?: string | null;
  alarms?: string[];
  dbSize?: number;
  dbSizeInUse?: number | null;
  lastDefragmentation?: Record<string, unknown>;
}

export interface EtcdClusterStatus {
  phase:
    | 'Creating'
    | 'Running'
    | 'Reconciling'
    | 'Scaling'
    | 'Recovering'
    | 'Maintaining'
    | 'Degraded'
    | 'Failed'
    | 'Paused'
    | 'Adopting'
    | 'Destroying';
  observedGeneration: number;
  size: number;
  readyMembers: number;
  members: { ready: string[]; unready: string[] };
  memberStatuses: MemberStatus[];
  /** The voting members on each node. */
  placement: Record<string, string[]>;
  /** etcd's cluster ID, latched once seen: a fresh workflow never creates a second cluster over this one. */
  clusterID?: string;
  selector: string;
  serviceName: string;
  clientURLs: string[];
  currentVersion: string | null;
  conditions: Condition[];
  currentOperation: RunningOperation | null;
  lastCompaction?: { revision: string; time: string };
  lastOperations: OperationRecord[];
  lastBackup?: Record<string, unknown>;
  /** The last restore check of a backup (spec.backup.verifyIntervalInSecond). */
  lastVerification?: Record<string, unknown>;
  /** The Temporal Schedule of this cluster's backups, while spec.backup asks for them. */
  backupSchedule?: string;
  lastRecovery?: Record<string, unknown>;
  /** What a cluster created from a backup (spec.restore) was restored from. */
  restoredFrom?: Record<string, unknown>;
  /** The index the next new member gets (member names are never reused). */
  nextMemberIndex?: number;
  /** The highest revision the controller has seen: what a restore must reach to lose nothing. */
  lastSeenRevision?: number;
  /** The TLS mode the cluster runs in and when its certificates expire (null or absent: plain). */
  tls?: {
    enabled: boolean;
    caNotAfter?: string;
    notAfter?: string;
    /** Each certificate Secret's expiry (members', users' and the controller's). */
    certificates?: { secret: string; notAfter: string }[];
    /** Certificate rotations done so far. */
    rotations?: number;
  } | null;
  /** etcd authentication as the controller last set it (spec.auth): enabled in etcd, and the users it keeps. */
  auth?: { enabled: boolean; users: string[] };
  reason: string;
}

/** What effectiveTls reads of a status (published by the controller, or absent: a new cluster). */
export type StatusOfTls = { phase?: unknown; clusterID?: unknown; tls?: { enabled?: boolean } | null };

/**
 * Whether a cluster with no live members runs TLS (issue 18; the members' own mode decides while any run, see
 * activities/tls.ts tlsModeOf): spec.tls when set; else what the controller recorded in status.tls; else a cluster
 * it already published a status for is plain (it was created before TLS became the default, and a default never
 * switches a cluster); else it is new: TLS. A new cluster's first status records `tls.enabled`, so the decision
 * outlives controller restarts.
 */
export function effectiveTls(spec: EtcdClusterSpec | undefined, status: StatusOfTls | undefined): boolean {
  if (spec?.tls) return spec.tls.enabled;
  if (status?.tls?.enabled !== undefined) return status.tls.enabled;
  return status?.phase === undefined && status?.clusterID === undefined;
}

/** An EtcdCluster as the API server returns it (status absent until the controller first publishes). */
export interface EtcdClusterObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    generation?: number;
    annotations?: Record<string, string>;
  };
  spec: EtcdClusterSpec;
  status?: Partial<EtcdClusterStatus>;
}
