// The pod of one etcd member: hostname/subdomain for its stable DNS name, etcd flags for its
// version, data on an emptyDir or its own claim, owned by the EtcdCluster.
import type { V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import {
  advertiseClientURL,
  clusterToken,
  dataClaimName,
  initialClusterIn,
  memberTlsSecretName,
  peerURL,
  restoreTokenSecretName,
  scheme,
} from '../api/names.js';
import {
  apiVersion,
  clusterLabels,
  initialClusterStateAnnotation,
  initialClusterAnnotation,
  kind,
  memberLabels,
  optionsAnnotation,
  restoredFromAnnotation,
  tlsAnnotation,
  type ClusterRef,
  type EtcdClusterSpec,
} from '../api/etcdcluster.js';
import { minorVersion } from '../workflows/versions.js';

/** The shell of a restore's steps (fetch the snapshot, move data in place) and of a held member (see hold): a pinned
 *  tag, pulled only when absent, so clusters without registry access use an image loaded beforehand. */
export const shellImage = 'busybox:1.37';

export function ownerReference(ref: ClusterRef) {
  return {
    apiVersion,
    kind,
    name: ref.name,
    uid: ref.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

export const snapshotCount = 5000;
/** What etcd 3.4/3.5 use when the flag is absent. */
export const defaultSnapshotCount = 100000;

export function imageOf(spec: EtcdClusterSpec): string {
  return `${spec.repository}:v${spec.version.replace(/^v/, '')}`;
}

/** etcd flags differ by minor version (3.4 logs with capnslog unless told; 3.6 renamed experimental flags). */
export function etcdCommand(
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  member: string,
  initialCluster: string,
  state: 'new' | 'existing',
  token = clusterToken(ref),
  listen: TlsListen = false,
): string[] {
  const minor = minorOf(spec);
  const tls = listen === true;
  return [
    '/usr/local/bin/etcd',
    `--name=${member}`,
    '--data-dir=/var/etcd/data',
    `--listen-client-urls=${scheme(tls)}://0.0.0.0:2379`,
    `--advertise-client-urls=${advertiseClientURL(ref, member, tls)}`,
    `--listen-peer-urls=${scheme(tls)}://0.0.0.0:2380`,
    `--initial-advertise-peer-urls=${peerURL(ref, member, tls)}`,
    `--initial-cluster=${initialClusterIn(initialCluster, tls)}`,
    `--initial-cluster-state=${state}`,
    `--initial-cluster-token=${token}`,
    // Snapshot often enough that the 3.5 → 3.6 step can flush v2 WAL entries in seconds (see forceSnapshots).
    `--snapshot-count=${snapshotCount}`,
    // etcd never compacts unless told: without it every busy cluster ends read-only at its quota (NOSPACE).
    // Same flag names on 3.4, 3.5 and 3.6.
    ...maintenanceFlags(spec),
    ...(minor <= 4 ? ['--logger=zap'] : []),
    // Prometheus metrics and /health on their own port, off the client port (the <cluster>-metrics Service).
    `--listen-metrics-urls=http://0.0.0.0:${metricsPort}`,
    ...(tls ? tlsFlags : listen === 'bridge' ? bridgeFlags : []),
    ...Object.entries(spec.etcd?.flags ?? {}).map(([k, v]) => `--${k}=${v}`),
  ];
}

/** Where a TLS member's Secret (ca.crt, tls.crt, tls.key) is mounted. */
export const tlsDir = '/etc/etcd/tls';
/** Peers and clients must present a certificate of the cluster's CA; the member's one serves both. */
const tlsFlags = [
  `--cert-file=${tlsDir}/tls.crt`,
  `--key-file=${tlsDir}/tls.key`,
  `--trusted-ca-file=${tlsDir}/ca.crt`,
  '--client-cert-auth',
  `--peer-cert-file=${tlsDir}/tls.crt`,
  `--peer-key-file=${tlsDir}/tls.key`,
  `--peer-trusted-ca-file=${tlsDir}/ca.crt`,
  '--peer-client-cert-auth',
];

/**
 * A member between plain and TLS (a switch, issue 18): it listens plain but dials its peers with its certificate, so
 * it talks to plain peers (http) and to TLS ones (https, peer client-cert auth) alike. Every member passes through it.
 */
const bridgeFlags = tlsFlags.filter((f) => f.startsWith('--peer-') && f !== '--peer-client-cert-auth');

/** How a member serves: plain, TLS, or the bridge between them during a switch. */
export type TlsListen = boolean | 'bridge';

/** The annotation that records the spec-driven flags a member started with (see optionFlags). */

/** The flags spec.etcd decides (compaction, quota, passed-through ones): a member started with others is rolled. */
export function optionFlags(spec: EtcdClusterSpec): string[] {
  return [...maintenanceFlags(spec), ...Object.entries(spec.etcd?.flags ?? {}).map(([k, v]) => `--${k}=${v}`)];
}

/** What differs between the flags a member started with (its annotation) and the spec's; undefined when equal or unknown. */
export function optionsDrift(annotation: string | undefined, spec: EtcdClusterSpec): string | undefined {
  if (!annotation) return undefined; // started before the annotation existed: never rolled for it
  let had: string[];
  try {
    had = JSON.parse(annotation) as string[];
  } catch {
    return undefined;
  }
  const want = optionFlags(spec);
  const gone = had.filter((f) => !want.includes(f));
  const added = want.filter((f) => !had.includes(f));
  return gone.length || added.length
    ? [...gone.map((f) => `drop ${f}`), ...added.map((f) => `add ${f}`)].join(', ')
    : undefined;
}

export const metricsPort = 2381;

/** Flags the controller sets itself, and what to do instead. */
const ownedFlags: Record<string, string> = {
  ...Object.fromEntries(
    [
      'name',
      'data-dir',
      'wal-dir',
      'listen-client-urls',
      'advertise-client-urls',
      'listen-peer-urls',
      'initial-advertise-peer-urls',
      'initial-cluster',
      'initial-cluster-state',
      'initial-cluster-token',
      'listen-metrics-urls',
      'logger',
      'listen-client-http-urls',
      'force-new-cluster',
      'config-file',
      'discovery',
      'discovery-srv',
      'discovery-token',
      'discovery-endpoints',
      'enable-v2',
      'v2-deprecation',
      'snapshot-count',
      'max-learners',
      'strict-reconfig-check',
    ].map((f) => [f, "the controller sets it from the cluster's name, member and volume; remove it"]),
  ),
  'auto-compaction-mode': 'use spec.etcd.autoCompactionMode',
  'auto-compaction-retention': 'use spec.etcd.autoCompactionRetention',
  'quota-backend-bytes': 'use spec.etcd.quotaBackendBytes',
};

/** Flags the user may pass (any experimental-* too): tuning, logging, metrics, checks. */
const passedFlags = new Set([
  'heartbeat-interval',
  'election-timeout',
  'log-level',
  'log-format',
  'log-outputs',
  'metrics',
  'max-txn-ops',
  'max-request-bytes',
  'max-concurrent-streams',
  'grpc-keepalive-min-time',
  'grpc-keepalive-interval',
  'grpc-keepalive-timeout',
  'enable-pprof',
  'pre-vote',
  'corrupt-check-time',
  'compact-hash-check-time',
  'feature-gates',
  'enable-grpc-gateway',
  'warning-apply-duration',
  'warning-unary-request-duration',
  'snapshot-catchup-entries',
  'backend-batch-interval',
  'backend-batch-limit',
  'cipher-suites',
]);

/** Why spec.etcd.flags cannot be used (the running cluster is left as it is), or undefined. */
export function flagsRefusal(flags: Record<string, unknown>): string | undefined {
  const problems: string[] = [];
  for (const [k, v] of Object.entries(flags)) {
    if (ownedFlags[k]) problems.push(`--${k} is owned by the controller: ${ownedFlags[k]}`);
    else if (/(^|-)(cert|key|ca|tls|crl)(-|$)/.test(k))
      problems.push(`--${k}: TLS is the controller's (spec.tls); remove it`);
    else if (!passedFlags.has(k) && !k.startsWith('experimental-')) {
      problems.push(
        `--${k} is not a flag the controller passes through (use the name without dashes: ${[...passedFlags].join(', ')}, experimental-*)`,
      );
    } else if (!['string', 'number', 'boolean'].includes(typeof v) || /[\s]/.test(String(v)))
      problems.push(`--${k}: ${JSON.stringify(v)} is not a single value`);
  }
  const heartbeat = Number(flags['heartbeat-interval'] ?? 100);
  const election = Number(flags['election-timeout'] ?? 1000);
  if (!problems.length && election < 5 * heartbeat) {
    problems.push(
      `--election-timeout (${election}) must be at least 5 × --heartbeat-interval (${heartbeat}), or etcd does not start`,
    );
  }
  return problems.length ? `spec.etcd.flags refused, nothing was changed: ${problems.join('; ')}` : undefined;
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

const minorOf = (spec: EtcdClusterSpec) => minorVersion(spec.version).minor;

/** Where a restored member gets its data: a snapshot served by the cluster's backup tool. */
export interface RestoreFrom {
  url: string;
  snapshot: string;
  token: string;
}

/**
 * Init containers that fetch the snapshot and build the data dir with the target version's restore tool.
 * Idempotent (init containers run again whenever the pod's sandbox is recreated, e.g. after a node reboot):
 * a data dir that already holds a member is never touched, and the fetched snapshot stays beside it, so a
 * pruned or moved backup cannot leave the member wiped. The restore tool has no shell (distroless images):
 * it always restores into a scratch dir, and busybox moves it into place only when there was no data.
 */
function restoreInitContainers(
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  member: string,
  initialCluster: string,
  r: RestoreFrom,
  tls = false,
) {
  const peer = peerURL(ref, member, tls);
  // A seed's --initial-cluster is itself; a static bootstrap's lists every member (each restores the same snapshot).
  const args = [
    'snapshot',
    'restore',
    '/var/etcd/restore.db',
    '--data-dir=/var/etcd/restoring',
    `--name=${member}`,
    `--initial-cluster=${initialClusterIn(initialCluster, tls)}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster-token=${r.token}`,
  ];
  // etcdutl restores since 3.5; 3.4 has only etcdctl's form (removed in 3.6).
  const tool = minorOf(spec) <= 4 ? '/usr/local/bin/etcdctl' : '/usr/local/bin/etcdutl';
  const src = `${r.url}/v1/backups/${r.snapshot}`;
  const fetch = [
    'cd /var/etcd && rm -rf restoring restore.db.partial',
    'if [ -d data/member ] && [ -f restore.db ]; then echo "data dir holds a member: kept, snapshot not fetched again"; exit 0; fi',
    // The tool answers only with its token (BACKUP_TOKEN, from the Secret: never in the pod spec).
    'auth="Authorization: Bearer $BACKUP_TOKEN"',
    `if wget -q --header "$auth" -O restore.db.partial ${src} || curl -fsS -H "$auth" -o restore.db.partial ${src}; then mv restore.db.partial restore.db; fi`,
    '[ -f restore.db ]',
  ].join('\n');
  const place = [
    'cd /var/etcd',
    'if [ -d data/member ]; then rm -rf restoring; echo "data dir kept"',
    'else rm -rf data && mv restoring data; fi',
  ].join('\n');
  const mounts = [{ name: 'etcd-data', mountPath: '/var/etcd' }];
  const shell = { image: shellImage, imagePullPolicy: 'IfNotPresent' };
  return [
    {
      name: 'fetch-snapshot',
      ...shell,
      command: ['sh', '-c', fetch],
      env: [
        {
          name: 'BACKUP_TOKEN',
          valueFrom: { secretKeyRef: { name: restoreTokenSecretName(ref.name), key: 'token' } },
        },
      ],
      volumeMounts: mounts,
    },
    {
      name: 'restore-snapshot',
      image: imageOf(spec),
      command: [tool, ...args],
      env: [{ name: 'ETCDCTL_API', value: '3' }],
      volumeMounts: mounts,
    },
    { name: 'place-data', ...shell, command: ['sh', '-c', place], volumeMounts: mounts },
  ];
}

/** How a bootstrap member starts: its cluster's fresh token; `restore`: from this snapshot (a restore's members,
 *  all restored from it with the full --initial-cluster). */
export interface Bootstrap {
  token: string;
  restore?: Omit<RestoreFrom, 'token'>;
}

/** How a held pod's etcd container gets its shell (etcd images have none): `mounted` from an image volume of the
 *  busybox image (no extra container), or `copied` onto an emptyDir by an init container, which every runtime runs.
 *  The caller picks `mounted` only where the nodes can mount one (see holdShellFor). */
export type HoldShell = 'mounted' | 'copied';

/** How a member's etcd first starts: `held` until its pod's initial-cluster annotation is set (see hold), its shell
 *  as `shell` says (copied when unset), and with the bootstrap's fresh `token` (state new) or without (a join, state
 *  existing). */
export interface MemberStart {
  token?: string;
  held?: boolean;
  shell?: HoldShell;
}

const holdVolume = 'etcd-hold';
const holdDir = '/etc/etcd/hold';
const shellVolume = 'etcd-hold-shell';
const shellDir = '/var/etcd-hold';

/** A held pod whose etcd has not been released: it never ran etcd, so it never held data. */
export const heldBack = (p: V1Pod) =>
  !!p.spec?.volumes?.some((v) => v.name === holdVolume) && !p.metadata?.annotations?.[initialClusterAnnotation];

/**
 * A held member: its etcd container starts at once (image pulled, container running) but a shell in front of etcd
 * waits until the pod's annotation holds the --initial-cluster (the kubelet refreshes the downward-API file within
 * a second of the change), then becomes etcd. So the pod, and its DNS record, exist before any peer looks its name
 * up (a join: before MemberAdd; a bootstrap: before any member starts), rather than a "no such host" the cluster DNS
 * would cache (30 s in kubeadm's Corefile); and a member whose image cannot start is never added. etcd images have no
 * shell: it comes from an image volume of busybox (static) where the nodes mount one, else an init container copies
 * it onto a volume; the kubelet starts the etcd container only after noticing that container's exit (its next relist,
 * up to 1 s), which the image volume saves.
 */
function hold(shell: HoldShell) {
  const fieldPath = `metadata.annotations['${initialClusterAnnotation}']`;
  const busybox = shell === 'mounted' ? `${shellDir}/bin/busybox` : `${shellDir}/busybox`;
  const file = `${holdDir}/initial-cluster`;
  // Every 0.1 s for the first 3 s (a join's release comes within about a second), then every second: each look
  // forks a sleep, and many pods held at once (a bootstrap under load) must not spend the cores on it.
  const wait = [
    'n=0',
    `until [ -s ${file} ]; do if [ $n -lt 30 ]; then n=$((n+1)); ${busybox} sleep 0.1; else ${busybox} sleep 1; fi; done`,
    `exec "$@" --initial-cluster="$(${busybox} cat ${file})"`,
  ].join('\n');
  return {
    initContainers:
      shell === 'mounted'
        ? []
        : [
            {
              name: 'copy-hold-shell',
              image: shellImage,
              imagePullPolicy: 'IfNotPresent',
              command: ['/bin/busybox', 'cp', '/bin/busybox', busybox],
              volumeMounts: [{ name: shellVolume, mountPath: shellDir }],
            },
          ],
    /** etcd's command behind the wait; its --initial-cluster comes from the annotation. */
    command: (etcd: string[]) => [
      busybox,
      'sh',
      '-c',
      wait,
      'etcd',
      ...etcd.filter((a) => !a.startsWith('--initial-cluster=')),
    ],
    volumeMounts: [
      { name: holdVolume, mountPath: holdDir, readOnly: true },
      { name: shellVolume, mountPath: shellDir, readOnly: true },
    ],
    volumes: [
      { name: holdVolume, downwardAPI: { items: [{ path: 'initial-cluster', fieldRef: { fieldPath } }] } },
      shell === 'mounted'
        ? { name: shellVolume, image: { reference: shellImage, pullPolicy: 'IfNotPresent' } }
        : { name: shellVolume, emptyDir: { sizeLimit: '16Mi' } },
    ],
  };
}

/** Which member pod and how it starts: the createMemberPod activity's arguments (positional, as histories record
 *  them), memberPod's first ones. */
export type MemberPodArgs = [
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  member: string,
  initialCluster: string,
  state: 'new' | 'existing',
  restore?: RestoreFrom,
];

export function memberPod(
  ...[ref, spec, member, initialCluster, state, restore, start = {}, listen = false]: [
    ...MemberPodArgs,
    start?: MemberStart,
    listen?: TlsListen,
  ]
): V1Pod {
  const held = start.held ? hold(start.shell ?? 'copied') : undefined;
  const tls = listen === true;
  // A restored member starts as a new cluster of the restore's token; the hold's shell is copied before the restore.
  const starts = restore ? 'new' : state;
  const token = restore?.token ?? start.token;
  const inits = [
    ...(held?.initContainers ?? []),
    ...(restore ? restoreInitContainers(ref, spec, member, initialCluster, restore, tls) : []),
  ];
  const certs = listen !== false; // TLS and bridge members mount their Secret
  const labels = { ...(spec.pod?.labels ?? {}), ...memberLabels(ref.name, member) };
  const selector = { matchLabels: clusterLabels(ref.name) };
  // spec.pod.antiAffinity: strictly one member per node (pods wait when nodes run out). Otherwise a
  // required spread: a new member goes to a node with the fewest members, so members share a node only
  // when there are fewer schedulable nodes than members (cordoned and NotReady nodes do not count).
  const affinity =
    spec.pod?.affinity ??
    (spec.pod?.antiAffinity
      ? {
          podAntiAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: [
              { labelSelector: selector, topologyKey: 'kubernetes.io/hostname' },
            ],
          },
        }
      : undefined);
  const topologySpreadConstraints = [
    {
      maxSkew: 1,
      topologyKey: 'kubernetes.io/hostname',
      whenUnsatisfiable: 'DoNotSchedule',
      labelSelector: selector,
      nodeTaintsPolicy: 'Honor',
    },
    {
      maxSkew: 1,
      topologyKey: 'topology.kubernetes.io/zone',
      whenUnsatisfiable: 'ScheduleAnyway',
      labelSelector: selector,
      nodeTaintsPolicy: 'Honor',
    },
  ];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: member,
      namespace: ref.namespace,
      labels,
      annotations: {
        ...(spec.pod?.annotations ?? {}),
        [initialClusterStateAnnotation]: state,
        [optionsAnnotation]: JSON.stringify(optionFlags(spec)),
        ...(restore ? { [restoredFromAnnotation]: restore.snapshot } : {}),
        ...(certs ? { [tlsAnnotation]: String(listen) } : {}),
      },
      ownerReferences: [ownerReference(ref)],
    },
    spec: {
      hostname: member,
      subdomain: ref.name,
      restartPolicy: 'Always',
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 10,
      nodeSelector: spec.pod?.nodeSelector,
      tolerations: spec.pod?.tolerations as V1Pod['spec'] extends infer S
        ? S extends { tolerations?: infer T }
          ? T
          : never
        : never,
      affinity: affinity as NonNullable<V1Pod['spec']>['affinity'],
      topologySpreadConstraints,
      ...(inits.length ? { initContainers: inits } : {}),
      containers: [
        {
          name: 'etcd',
          image: imageOf(spec),
          command: held
            ? held.command(etcdCommand(ref, spec, member, '', starts, token, listen))
            : etcdCommand(ref, spec, member, initialCluster, starts, token, listen),
          ports: [
            { name: 'client', containerPort: 2379 },
            { name: 'peer', containerPort: 2380 },
            { name: 'metrics', containerPort: metricsPort },
          ],
          // Readiness is etcd's own view (serializable, so learners pass). 3.4's /health is a v2 QGET
          // through raft: it would fill the WAL with v2 entries that etcd 3.6 refuses to replay, so 3.4
          // members get a TCP check. No liveness probe: a large member must never be killed for starting slowly.
          // NOSPACE is excluded: a full cluster still serves reads, so it stays behind the client Service.
          // TLS members: the same check on the plain metrics port (2379 asks for a client certificate).
          readinessProbe:
            minorOf(spec) <= 4
              ? { tcpSocket: { port: 2379 }, periodSeconds: 2, timeoutSeconds: 2, failureThreshold: 3 }
              : {
                  httpGet: { path: '/health?serializable=true&exclude=NOSPACE', port: tls ? metricsPort : 2379 },
                  periodSeconds: 2,
                  timeoutSeconds: 2,
                  failureThreshold: 3,
                },
          resources: spec.pod?.resources as NonNullable<V1Pod['spec']>['containers'][number]['resources'],
          volumeMounts: [
            { name: 'etcd-data', mountPath: '/var/etcd' },
            ...(certs ? [{ name: 'etcd-tls', mountPath: tlsDir, readOnly: true }] : []),
            ...(held?.volumeMounts ?? []),
          ],
        },
      ],
      volumes: [
        spec.pod?.persistentVolumeClaimSpec
          ? { name: 'etcd-data', persistentVolumeClaim: { claimName: dataClaimName(member) } }
          : { name: 'etcd-data', emptyDir: {} },
        ...(certs
          ? [{ name: 'etcd-tls', secret: { secretName: memberTlsSecretName(member), defaultMode: 0o400 } }]
          : []),
        ...(held?.volumes ?? []),
      ],
    },
  };
}

export function memberClaim(ref: ClusterRef, spec: EtcdClusterSpec, member: string): V1PersistentVolumeClaim {
  const pvc = (spec.pod?.persistentVolumeClaimSpec ?? {}) as NonNullable<V1PersistentVolumeClaim['spec']>;
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: {
      name: dataClaimName(member),
      namespace: ref.namespace,
      labels: memberLabels(ref.name, member),
      ownerReferences: [ownerReference(ref)],
    },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } }, ...pvc },
  };
}
