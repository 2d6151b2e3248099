// Desired state of the cluster's own Services and PodDisruptionBudget: one builder per owned object, applied with
// server-side apply (kube.ts apply) by ensureServices and ensureBackupTool. Member pods and claims: member-pod.ts.
import type {
  V1Deployment,
  V1EnvVar,
  V1NetworkPolicy,
  V1NetworkPolicyPeer,
  V1PersistentVolumeClaim,
  V1PodDisruptionBudget,
  V1Secret,
  V1Service,
} from '@kubernetes/client-node';
import {
  backupClaimName,
  backupTokenSecretName,
  backupToolName,
  backupToolPort,
  clientServiceName,
  controllerTlsSecretName,
  rootCredentialsSecretName,
  metricsServiceName,
} from '../api/names.js';
import {
  backupToolLabels,
  clusterLabels,
  controllerLabels,
  defaultControllerNamespace,
  metricsLabel,
  type BackupSpec,
  type ClusterRef,
  type NetworkPolicySpec,
} from '../api/etcdcluster.js';
import type { Applied } from './kube.js';
import { metricsPort, ownerReference } from './member-pod.js';

/** Metadata of an object the cluster owns (garbage-collected with it). */
export const ownedMeta = (ref: ClusterRef, name: string, labels: Record<string, string> = clusterLabels(ref.name)) => ({
  name,
  namespace: ref.namespace,
  labels,
  ownerReferences: [ownerReference(ref)],
});
const tcp = (name: string, port: number) => ({ name, port, targetPort: port, protocol: 'TCP' });

/** `<cluster>`: headless, behind the members' DNS names (peers find each other through it, ready or not). */
export function headlessService(ref: ClusterRef): V1Service & Applied {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMeta(ref, ref.name),
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: clusterLabels(ref.name),
      ports: [tcp('client', 2379), tcp('peer', 2380)],
    },
  };
}

/** `<cluster>-client`: what applications use, on 2379. */
export function clientService(ref: ClusterRef): V1Service & Applied {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMeta(ref, clientServiceName(ref.name)),
    spec: { selector: clusterLabels(ref.name), ports: [tcp('client', 2379)] },
  };
}

/** `<cluster>-metrics`: for a Prometheus ServiceMonitor selecting app=etcd,etcd_cluster=<name>,etcd_metrics=true,
 *  port "metrics" (one target per member). */
export function metricsService(ref: ClusterRef): V1Service & Applied {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMeta(ref, metricsServiceName(ref.name), { ...clusterLabels(ref.name), [metricsLabel]: 'true' }),
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: clusterLabels(ref.name),
      ports: [tcp('metrics', metricsPort)],
    },
  };
}

/** `<cluster>`: drains and evictions take at most one member at a time, and none while one is already down. */
export function disruptionBudget(ref: ClusterRef): V1PodDisruptionBudget & Applied {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: ownedMeta(ref, ref.name),
    spec: { maxUnavailable: 1, selector: { matchLabels: clusterLabels(ref.name) } },
  };
}

/** `<cluster>` (spec.networkPolicy): peers only from members; the client port only from members, the backup tool,
 *  the controller's pods in `controllerNamespace` and the spec's clients; the metrics port from anywhere (probes,
 *  Prometheus: it serves no keys). */
export function membersNetworkPolicy(
  ref: ClusterRef,
  spec: NetworkPolicySpec,
  controllerNamespace: string,
): V1NetworkPolicy & Applied {
  const members: V1NetworkPolicyPeer = { podSelector: { matchLabels: clusterLabels(ref.name) } };
  const port = (p: number) => [{ protocol: 'TCP', port: p }];
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: ownedMeta(ref, ref.name),
    spec: {
      podSelector: { matchLabels: clusterLabels(ref.name) },
      policyTypes: ['Ingress'],
      ingress: [
        { ports: port(2380), _from: [members] },
        {
          ports: port(2379),
          _from: [
            members,
            { podSelector: { matchLabels: backupToolLabels(ref.name) } },
            {
              namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': controllerNamespace } },
              podSelector: { matchLabels: controllerLabels },
            },
            ...(spec.clients ?? []),
          ],
        },
        { ports: port(metricsPort) },
      ],
    },
  };
}

/** Every Service and budget of the cluster, and its NetworkPolicy when the spec asks for one, in the order they are
 *  applied. */
export const clusterObjects = (
  ref: ClusterRef,
  policy?: NetworkPolicySpec,
  controllerNamespace = defaultControllerNamespace,
) => [
  disruptionBudget(ref),
  headlessService(ref),
  clientService(ref),
  metricsService(ref),
  ...(policy?.enabled ? [membersNetworkPolicy(ref, policy, controllerNamespace)] : []),
];

// The backup tool (one per cluster with spec.backup): its claim, token, Deployment and Service.
export const backupToolImage = process.env.BACKUP_TOOL_IMAGE ?? 'kube-etcd-controller/backup-tool:dev';

/** The tool's destination settings as container env: S3 credentials by reference to the Secret, never by value. */
export function backupToolEnv(ref: ClusterRef, backup: BackupSpec, tls = false, auth = false): V1EnvVar[] {
  const secret = (name: string, key: string, optional = false) => ({
    valueFrom: { secretKeyRef: { name, key, ...(optional ? { optional } : {}) } },
  });
  const env: V1EnvVar[] = [
    { name: 'BACKUP_DIR', value: '/var/etcd-backup' },
    { name: 'PORT', value: String(backupToolPort) },
    { name: 'MAX_SNAPSHOT', value: String(backup.maxSnapshot ?? 0) },
    { name: 'MAX_AGE_SECONDS', value: String(backup.maxAgeInSecond ?? 0) },
    { name: 'VERIFY_INTERVAL_SECONDS', value: String(backup.verifyIntervalInSecond ?? 86400) },
    { name: 'CLUSTER_NAMESPACE', value: ref.namespace },
    { name: 'CLUSTER_NAME', value: ref.name },
    // Callers that take a snapshot must present it (the controller reads the same Secret).
    { name: 'BACKUP_TOKEN', ...secret(backupTokenSecretName(ref.name), 'token') },
    ...(tls ? [{ name: 'ETCD_TLS_DIR', value: backupToolTlsDir }] : []),
    ...(auth ? [{ name: 'ETCD_AUTH_DIR', value: backupToolAuthDir }] : []),
  ];
  const s3 = backup.s3;
  if (!s3) return env;
  return [
    ...env,
    ...(s3.endpoint ? [{ name: 'S3_ENDPOINT', value: s3.endpoint }] : []),
    { name: 'S3_BUCKET', value: s3.bucket },
    { name: 'S3_PREFIX', value: s3.prefix ?? '' },
    { name: 'S3_REGION', value: s3.region ?? 'us-east-1' },
    { name: 'S3_FORCE_PATH_STYLE', value: String(s3.forcePathStyle ?? true) },
    { name: 'AWS_ACCESS_KEY_ID', ...secret(s3.credentialsSecret, 'accessKeyID') },
    { name: 'AWS_SECRET_ACCESS_KEY', ...secret(s3.credentialsSecret, 'secretAccessKey') },
    ...(s3.caSecret ? [{ name: 'S3_CA', ...secret(s3.caSecret, 'ca.crt') }] : []),
    { name: 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED', value: 'true' },
  ];
}

/** The backup claim (class etcd-controller-backup), created once; no owner: its snapshots outlive the cluster. */
export function backupClaim(ref: ClusterRef, backup: BackupSpec): V1PersistentVolumeClaim {
  return {
    metadata: { name: backupClaimName(ref.name), labels: backupToolLabels(ref.name) },
    spec: {
      accessModes: ['ReadWriteOnce'],
      storageClassName: 'etcd-controller-backup',
      resources: { requests: { storage: `${backup.volumeSizeInMB ?? 512}Mi` } },
    },
  };
}

const backupToolTlsDir = '/etc/etcd/tls';
/** spec.auth: the root user's Secret, mounted (not env) so a password set later reaches the running tool. */
const backupToolAuthDir = '/etc/etcd/auth';
/** The group of deploy/Dockerfile's runtime user (`USER node`, 1000:1000). */
const backupToolGid = 1000;

/** The backup tool: one replica (Recreate: a single writer on its claim), serving snapshots on 19999. A TLS
 *  cluster's tool dials members with the controller's client certificate. */
export function backupToolDeployment(
  ref: ClusterRef,
  backup: BackupSpec,
  tls = false,
  auth = false,
): V1Deployment & Applied {
  const labels = backupToolLabels(ref.name);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: ownedMeta(ref, backupToolName(ref.name), labels),
    spec: {
      replicas: 1,
      strategy: { type: 'Recreate' },
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: 5,
          // The image runs as deploy/Dockerfile's `node` user: a fresh volume (root-owned on most provisioners)
          // is made writable for its group, else every snapshot fails with EACCES.
          securityContext: { fsGroup: backupToolGid, fsGroupChangePolicy: 'OnRootMismatch' },
          containers: [
            {
              name: 'backup-tool',
              image: backupToolImage,
              env: backupToolEnv(ref, backup, tls, auth),
              ports: [{ name: 'http', containerPort: backupToolPort, protocol: 'TCP' }],
              readinessProbe: { httpGet: { path: '/healthz', port: backupToolPort }, periodSeconds: 2 },
              volumeMounts: [
                { name: 'backups', mountPath: '/var/etcd-backup' },
                ...(tls ? [{ name: 'etcd-tls', mountPath: backupToolTlsDir, readOnly: true }] : []),
                ...(auth ? [{ name: 'etcd-auth', mountPath: backupToolAuthDir, readOnly: true }] : []),
              ],
            },
          ],
          // Object storage: the snapshot is only staged locally (emptyDir); the claim is the default destination.
          volumes: [
            backup.s3
              ? { name: 'backups', emptyDir: {} }
              : { name: 'backups', persistentVolumeClaim: { claimName: backupClaimName(ref.name) } },
            ...(tls ? [{ name: 'etcd-tls', secret: { secretName: controllerTlsSecretName(ref.name) } }] : []),
            ...(auth ? [{ name: 'etcd-auth', secret: { secretName: rootCredentialsSecretName(ref.name) } }] : []),
          ],
        },
      },
    },
  };
}

/** The backup tool's Service on backupToolPort (19999). */
export function backupToolService(ref: ClusterRef): V1Service & Applied {
  const labels = backupToolLabels(ref.name);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMeta(ref, backupToolName(ref.name), labels),
    spec: { selector: labels, ports: [tcp('http', backupToolPort)] },
  };
}

/** The bearer token the backup tool requires of the controller (random, created once: its value is never applied). */
export function backupTokenSecret(ref: ClusterRef, token: string, name = backupTokenSecretName(ref.name)): V1Secret {
  return {
    metadata: ownedMeta(ref, name, backupToolLabels(ref.name)),
    data: { token: Buffer.from(token).toString('base64') },
  };
}
