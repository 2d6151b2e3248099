// Names, addresses and workflow IDs: deterministic and readable. Pure.
import { defineSearchAttributeKey, SearchAttributeType, type SearchAttributePair } from '@temporalio/common';
import type { ClusterRef } from './etcdcluster.js';
import type { Operation } from '../workflows/types.js';

export const memberName = (cluster: string, index: number) => `${cluster}-${String(index).padStart(4, '0')}`;

/** The index of a member name of this cluster, or -1. */
export function memberIndex(cluster: string, name: string): number {
  // No RegExp built per call: every look and watch event asks this for every pod.
  const rest = name.startsWith(`${cluster}-`) ? name.slice(cluster.length + 1) : '';
  return /^\d{4,}$/.test(rest) ? Number(rest) : -1;
}

/** Sort key of a member name when the cluster name is not at hand: its trailing index. */
export const memberOrder = (name: string) => Number(/-(\d{4,})$/.exec(name)?.[1] ?? Number.MAX_SAFE_INTEGER);

export const memberHost = (ref: Pick<ClusterRef, 'namespace' | 'name'>, member: string) =>
  `${member}.${ref.name}.${ref.namespace}.svc`;
/** The one home of the URL scheme: https for a TLS cluster (issue 18), http otherwise. */
export const scheme = (tls = false) => (tls ? 'https' : 'http');
export const peerURL = (ref: Pick<ClusterRef, 'namespace' | 'name'>, member: string, tls = false) =>
  `${scheme(tls)}://${memberHost(ref, member)}:2380`;
export const advertiseClientURL = (ref: Pick<ClusterRef, 'namespace' | 'name'>, member: string, tls = false) =>
  `${scheme(tls)}://${memberHost(ref, member)}:2379`;
/** A member's client URL by pod IP (what the controller dials). */
export const clientURLOf = (ip: string, tls = false) => `${scheme(tls)}://${ip}:2379`;
/** An --initial-cluster list (built by workflows with plain peer URLs) in the cluster's scheme. */
export const initialClusterIn = (initialCluster: string, tls = false) =>
  tls ? initialCluster.replace(/=http:\/\//g, '=https://') : initialCluster;
/** The member (pod) name in a peer URL of the form we generate (<member>.<cluster>.<ns>.svc), or ''. */
export const memberOfPeerURL = (url: string) =>
  /^https?:\/\/([^.:/]+)\.[^.:/]+\.[^.:/]+\.svc(?:\.cluster\.local)?(?::\d+)?\/?$/.exec(url)?.[1] ?? '';

/** How we name an etcd member: its pod for members we made, etcd's own name otherwise (adopted clusters). */
export const memberNameOf = (m: { peerURLs: string[]; name: string }) =>
  memberOfPeerURL(m.peerURLs[0] ?? '') || m.name || m.peerURLs[0] || '';

// Workflow IDs: `<ns>/<cluster>` for the cluster's own workflow, `<ns>/<cluster>/<what>` for each operation.
export const clusterWorkflowId = (ref: Pick<ClusterRef, 'namespace' | 'name'>) => `${ref.namespace}/${ref.name}`;
export const destroyWorkflowId = (ref: Pick<ClusterRef, 'namespace' | 'name'>) => `${clusterWorkflowId(ref)}/destroy`;
export const migrationWorkflowId = (ref: Pick<ClusterRef, 'namespace' | 'name'>, dryRun = false) =>
  `${clusterWorkflowId(ref)}/migrate${dryRun ? '-dry-run' : ''}`;
/** The child workflow of an operation, named for what it does: `default/etcd-cluster/resize-3-to-5`. */
export function operationId(namespace: string, name: string, op: Operation): string {
  const base = clusterWorkflowId({ namespace, name });
  switch (op.type) {
    case 'create':
      return `${base}/create`;
    case 'scale-up':
    case 'scale-down':
      return `${base}/resize-${op.from}-to-${op.to}`;
    case 'replace-member':
      return `${base}/replace-${op.member}`;
    case 'restart-member':
      return `${base}/restart-${op.member}`;
    case 'remove-ghost-member':
      return `${base}/remove-ghost-${op.member}`;
    case 'remove-orphan-pod':
      return `${base}/remove-orphan-${op.pod}`;
    case 'move-member':
      return `${base}/move-${op.member}`;
    case 'upgrade':
      return `${base}/upgrade-${op.from}-to-${op.to}`;
    case 'recover':
      return `${base}/disaster-recovery`;
    case 'defragment':
      return `${base}/${op.nospace ? 'nospace' : 'defragment'}`;
    case 'reconfigure-member':
      return `${base}/reconfigure-${op.member}`;
    case 'rotate-certs':
      return `${base}/rotate-certs-${op.n}`;
    case 'switch-tls':
      return `${base}/tls-${op.to ? 'plain-to-tls' : 'tls-to-plain'}`;
  }
}
/** The Temporal Schedule of a cluster's backups (one per cluster, follows spec.backup). */
export const backupScheduleId = (ref: Pick<ClusterRef, 'namespace' | 'name'>) => `${clusterWorkflowId(ref)}/backups`;
/** Each scheduled run's workflow ID is this plus the time Temporal appends (…/backup-2026-11-28T12:00:00Z). */
export const scheduledBackupWorkflowId = (ref: Pick<ClusterRef, 'namespace' | 'name'>) =>
  `${clusterWorkflowId(ref)}/backup`;
/** A backup taken on request (CLI `backup`), by the minute it started: …/backup-manual-20261128T120000. */
export const manualBackupWorkflowId = (ref: Pick<ClusterRef, 'namespace' | 'name'>, at: Date) =>
  `${clusterWorkflowId(ref)}/backup-manual-${at.toISOString().replace(/[-:.]/g, '').slice(0, 15)}`;
export const clientServiceName = (cluster: string) => `${cluster}-client`;
// TLS Secrets (issue 18), each with ca.crt, tls.crt, tls.key (the CA's holds only ca.crt and ca.key).
export const caSecretName = (cluster: string) => `${cluster}-ca`;
/** A member's serving + peer certificate. */
export const memberTlsSecretName = (member: string) => `${member}-tls`;
/** The client certificate for users of the cluster. */
export const clientTlsSecretName = (cluster: string) => `${cluster}-client-tls`;
/** The controller's and the backup tool's client certificate. */
export const controllerTlsSecretName = (cluster: string) => `${cluster}-controller-tls`;
/** With spec.tls.issuerRef, the cert-manager Certificate that fills a certificate Secret: named like it. */
export const certificateNameOf = (secret: string) => secret;
/** cert-manager's API (cert-manager.io/v1), for spec.tls.issuerRef. */
export const certManagerApi = { group: 'cert-manager.io', version: 'v1', certificates: 'certificates' } as const;
/** The bearer token the backup tool requires of every caller but /healthz (the controller, restored members, the CLI). */
export const backupTokenSecretName = (cluster: string) => `${cluster}-backup-token`;
/** The token of the backup tool a restored member downloads from (its own cluster's, or a source's), for its init. */
export const restoreTokenSecretName = (cluster: string) => `${cluster}-restore-token`;
/** The name every member certificate holds (the client Service's): the controller dials pod IPs with it as the TLS server name. */
export const tlsServerName = (ref: Pick<ClusterRef, 'namespace' | 'name'>) =>
  `${clientServiceName(ref.name)}.${ref.namespace}.svc`;
// etcd auth Secrets (issue 18), each with username and password (generated, never logged).
/** The root user's credentials: what the controller and the backup tool ask etcd with once auth is on. */
export const rootCredentialsSecretName = (cluster: string) => `${cluster}-root-credentials`;
/** An application user's credentials (spec.auth.users[].name). */
export const userCredentialsSecretName = (cluster: string, user: string) => `${cluster}-user-${user}`;
export const metricsServiceName = (cluster: string) => `${cluster}-metrics`;
/** Ephemeral container of a member pod that runs `etcdutl check v2store`: one per check of an upgrade's run. */
export const v2StoreCheckContainer = (runId: string, attempt: number) => `v2check-${runId.slice(0, 8)}-${attempt}`;
/** The backup tool's Deployment and Service. */
export const backupToolName = (cluster: string) => `${cluster}-backup-tool`;
/** The port the backup tool serves on (its container, its Service, the controller's calls). */
export const backupToolPort = 19999;
/** Where kubelets renew their heartbeat Lease (a Kubernetes convention; each Lease is named after its node). */
export const nodeLeaseNamespace = 'kube-node-lease';

/** A member's data claim (spec.pod.persistentVolumeClaimSpec). */
export const dataClaimName = (member: string) => `${member}-data`;

/** The backup tool's claim (no owner: its snapshots outlive the cluster). */
export const backupClaimName = (cluster: string) => `pvc-${cluster}`;
export const clusterToken = (ref: ClusterRef) => `${ref.namespace}-${ref.name}-${ref.uid.slice(0, 8)}`;
export const quorum = (voters: number) => Math.floor(voters / 2) + 1;

export const taskQueue = 'kube-etcd-controller';

/** Search attributes on every workflow, so the Temporal UI can filter by cluster, namespace and operation. */
export const searchKeys = {
  cluster: defineSearchAttributeKey('EtcdCluster', SearchAttributeType.KEYWORD),
  namespace: defineSearchAttributeKey('EtcdNamespace', SearchAttributeType.KEYWORD),
  operation: defineSearchAttributeKey('EtcdOperation', SearchAttributeType.KEYWORD),
};

export function searchTags(ref: Pick<ClusterRef, 'namespace' | 'name'>, operation: string): SearchAttributePair[] {
  return [
    { key: searchKeys.cluster, value: ref.name },
    { key: searchKeys.namespace, value: ref.namespace },
    { key: searchKeys.operation, value: operation },
  ];
}
