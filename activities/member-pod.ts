// The pod of one etcd member: hostname/subdomain for its stable DNS name, etcd flags for its
// version, data on an emptyDir or its own claim, owned by the EtcdCluster.
import type { V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { advertiseClientURL, clusterToken, peerURL } from '../workflows/naming.js';
import type { ClusterRef, EtcdClusterSpec } from '../workflows/types.js';

export const clusterLabels = (cluster: string) => ({ app: 'etcd', etcd_cluster: cluster });
export const memberLabels = (cluster: string, member: string) => ({ ...clusterLabels(cluster), etcd_node: member });
export const dataClaimName = (member: string) => `${member}-data`;

export function ownerReference(ref: ClusterRef) {
  return { apiVersion: 'coreos.com/v1', kind: 'EtcdCluster', name: ref.name, uid: ref.uid, controller: true, blockOwnerDeletion: true };
}

export const snapshotCount = 5000;
/** What etcd 3.4/3.5 use when the flag is absent. */
export const defaultSnapshotCount = 100000;

export function imageOf(spec: EtcdClusterSpec): string {
  return `${spec.repository}:v${spec.version.replace(/^v/, '')}`;
}

/** etcd flags differ by minor version (3.4 logs with capnslog unless told; 3.6 renamed experimental flags). */
export function etcdCommand(ref: ClusterRef, spec: EtcdClusterSpec, member: string, initialCluster: string, state: 'new' | 'existing', token = clusterToken(ref)): string[] {
  const minor = minorOf(spec);
  return [
    '/usr/local/bin/etcd',
    `--name=${member}`,
    '--data-dir=/var/etcd/data',
    '--listen-client-urls=http://0.0.0.0:2379',
    `--advertise-client-urls=${advertiseClientURL(ref, member)}`,
    '--listen-peer-urls=http://0.0.0.0:2380',
    `--initial-advertise-peer-urls=${peerURL(ref, member)}`,
    `--initial-cluster=${initialCluster}`,
    `--initial-cluster-state=${state}`,
    `--initial-cluster-token=${token}`,
    // Snapshot often enough that the 3.5 → 3.6 step can flush v2 WAL entries in seconds (see forceSnapshots).
    `--snapshot-count=${snapshotCount}`,
    // etcd never compacts unless told: without it every busy cluster ends read-only at its quota (NOSPACE).
    // Same flag names on 3.4, 3.5 and 3.6.
    ...maintenanceFlags(spec),
    ...(minor <= 4 ? ['--logger=zap'] : []),
  ];
}

export const etcdDefaults = { autoCompactionMode: 'periodic', autoCompactionRetention: '5m' } as const;

function maintenanceFlags(spec: EtcdClusterSpec): string[] {
  const o = spec.etcd ?? {};
  return [
    `--auto-compaction-mode=${o.autoCompactionMode ?? etcdDefaults.autoCompactionMode}`,
    `--auto-compaction-retention=${o.autoCompactionRetention ?? etcdDefaults.autoCompactionRetention}`,
    ...(o.quotaBackendBytes ? [`--quota-backend-bytes=${o.quotaBackendBytes}`] : []),
  ];
}

const minorOf = (spec: EtcdClusterSpec) => Number(spec.version.replace(/^v/, '').split('.')[1]);

/** Where a restored seed gets its data: a snapshot served by the cluster's backup tool. */
export interface RestoreFrom { url: string; snapshot: string; token: string }

/** Init containers that fetch the snapshot and build the data dir with the target version's restore tool. */
function restoreInitContainers(ref: ClusterRef, spec: EtcdClusterSpec, member: string, r: RestoreFrom) {
  const peer = peerURL(ref, member);
  const args = ['snapshot', 'restore', '/var/etcd/restore.db', '--data-dir=/var/etcd/data', `--name=${member}`,
    `--initial-cluster=${member}=${peer}`, `--initial-advertise-peer-urls=${peer}`, `--initial-cluster-token=${r.token}`];
  // etcdutl restores since 3.5; 3.4 has only etcdctl's form (removed in 3.6).
  const tool = minorOf(spec) <= 4 ? '/usr/local/bin/etcdctl' : '/usr/local/bin/etcdutl';
  const src = `${r.url}/v1/backups/${r.snapshot}`;
  return [
    { name: 'fetch-snapshot', image: 'busybox', command: ['sh', '-c', `rm -rf /var/etcd/data /var/etcd/restore.db && (wget -q -O /var/etcd/restore.db ${src} || curl -fsS -o /var/etcd/restore.db ${src})`],
      volumeMounts: [{ name: 'etcd-data', mountPath: '/var/etcd' }] },
    { name: 'restore-snapshot', image: imageOf(spec), command: [tool, ...args], env: [{ name: 'ETCDCTL_API', value: '3' }],
      volumeMounts: [{ name: 'etcd-data', mountPath: '/var/etcd' }] },
  ];
}

/** A static bootstrap's pods are created gated and released together: a gated pod never ran, so it never held data. */
export const bootstrapGate = 'etcd.coreos.com/bootstrap';

/** How a bootstrap member starts: its cluster's fresh token, and held by the scheduling gate until all exist. */
export interface Bootstrap { token: string }

export function memberPod(ref: ClusterRef, spec: EtcdClusterSpec, member: string, initialCluster: string, state: 'new' | 'existing', restore?: RestoreFrom,
  bootstrap?: Bootstrap): V1Pod {
  const labels = { ...(spec.pod?.labels ?? {}), ...memberLabels(ref.name, member) };
  const selector = { matchLabels: clusterLabels(ref.name) };
  // spec.pod.antiAffinity: strictly one member per node (pods wait when nodes run out). Otherwise a
  // required spread: a new member goes to a node with the fewest members, so members share a node only
  // when there are fewer schedulable nodes than members (cordoned and NotReady nodes do not count).
  const affinity = spec.pod?.affinity ?? (spec.pod?.antiAffinity
    ? { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: selector, topologyKey: 'kubernetes.io/hostname' }] } }
    : undefined);
  const topologySpreadConstraints = [
    { maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'DoNotSchedule', labelSelector: selector, nodeTaintsPolicy: 'Honor' },
    { maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: selector, nodeTaintsPolicy: 'Honor' },
  ];
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: {
      name: member, namespace: ref.namespace, labels,
      annotations: { ...(spec.pod?.annotations ?? {}), 'etcd.coreos.com/initial-cluster-state': state, ...(restore ? { 'etcd.coreos.com/restored-from': restore.snapshot } : {}) },
      ownerReferences: [ownerReference(ref)],
    },
    spec: {
      hostname: member, subdomain: ref.name,
      restartPolicy: 'Always',
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 10,
      nodeSelector: spec.pod?.nodeSelector,
      tolerations: spec.pod?.tolerations as V1Pod['spec'] extends infer S ? S extends { tolerations?: infer T } ? T : never : never,
      affinity: affinity as NonNullable<V1Pod['spec']>['affinity'],
      topologySpreadConstraints,
      ...(restore ? { initContainers: restoreInitContainers(ref, spec, member, restore) } : {}),
      ...(bootstrap ? { schedulingGates: [{ name: bootstrapGate }] } : {}),
      containers: [{
        name: 'etcd',
        image: imageOf(spec),
        command: restore ? etcdCommand(ref, spec, member, initialCluster, 'new').map((a) => a.startsWith('--initial-cluster-token=') ? `--initial-cluster-token=${restore.token}` : a)
          : etcdCommand(ref, spec, member, initialCluster, state, bootstrap?.token),
        ports: [{ name: 'client', containerPort: 2379 }, { name: 'peer', containerPort: 2380 }],
        // Readiness is etcd's own view (serializable, so learners pass). 3.4's /health is a v2 QGET
        // through raft: it would fill the WAL with v2 entries that etcd 3.6 refuses to replay, so 3.4
        // members get a TCP check. No liveness probe: a large member must never be killed for starting slowly.
        // NOSPACE is excluded: a full cluster still serves reads, so it stays behind the client Service.
        readinessProbe: minorOf(spec) <= 4
          ? { tcpSocket: { port: 2379 }, periodSeconds: 2, timeoutSeconds: 2, failureThreshold: 3 }
          : { httpGet: { path: '/health?serializable=true&exclude=NOSPACE', port: 2379 }, periodSeconds: 2, timeoutSeconds: 2, failureThreshold: 3 },
        resources: spec.pod?.resources as NonNullable<V1Pod['spec']>['containers'][number]['resources'],
        volumeMounts: [{ name: 'etcd-data', mountPath: '/var/etcd' }],
      }],
      volumes: [spec.pod?.persistentVolumeClaimSpec
        ? { name: 'etcd-data', persistentVolumeClaim: { claimName: dataClaimName(member) } }
        : { name: 'etcd-data', emptyDir: {} }],
    },
  };
}

export function memberClaim(ref: ClusterRef, spec: EtcdClusterSpec, member: string): V1PersistentVolumeClaim {
  const pvc = (spec.pod?.persistentVolumeClaimSpec ?? {}) as NonNullable<V1PersistentVolumeClaim['spec']>;
  return {
    apiVersion: 'v1', kind: 'PersistentVolumeClaim',
    metadata: { name: dataClaimName(member), namespace: ref.namespace, labels: memberLabels(ref.name, member), ownerReferences: [ownerReference(ref)] },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } }, ...pvc },
  };
}
