// The backup tool of a cluster (spec.backup): applied to the spec, removed, reached (its ready pod, its token).
// Builders: owned.ts.
import { randomBytes } from 'node:crypto';
import type { EtcdClusterSpec, StatusOfTls } from '../../api/etcdcluster.js';
import { backupToolSelector, type BackupSpec, type ClusterRef } from '../../api/etcdcluster.js';
import { backupTokenSecretName, backupToolName, backupToolPort, restoreTokenSecretName } from '../../api/names.js';
import type { BackupRecord } from '../../workflows/types.js';
import type { Deps } from '../deps.js';
import { apply, createIfAbsent, deleteIfPresent, orAbsent, type Kube } from '../kube.js';
import { backupClaim, backupTokenSecret, backupToolDeployment, backupToolService } from '../owned.js';
import { readCluster } from '../cluster/read.js';
import { clusterTlsMode, ensureTlsSecrets } from '../tls.js';
import { ensureCredentialsSecret, rootUser } from '../auth.js';

/** Backup tool Deployment + Service on 19999 (applied: a changed spec.backup rolls out, a deleted one comes back)
 *  + claim. The claim has no owner: its data outlives the cluster. It is only ever created, never resized or
 *  deleted here: shrinking is refused and growing needs an expandable StorageClass (a user's call). */
export async function ensureBackupTool({ kube }: Deps, ref: ClusterRef, backup: BackupSpec): Promise<void> {
  const { core } = kube;
  if (!backup.s3) {
    const claim = backupClaim(ref, backup);
    await createIfAbsent(() => core.createNamespacedPersistentVolumeClaim({ namespace: ref.namespace, body: claim }));
  }
  await backupToken(kube, ref, true);
  // A TLS cluster's tool mounts the controller's certificate: it must exist first.
  const cluster = await clusterOf(kube, ref);
  const { enabled } = await clusterTlsMode(core, ref, cluster);
  if (enabled) await ensureTlsSecrets(core, ref, [], cluster?.spec);
  // spec.auth: the tool mounts the root user's Secret (asks as root once auth is on): it must exist first.
  const auth = !!cluster?.spec?.auth;
  if (auth) await ensureCredentialsSecret(core, ref, rootUser);
  await apply(kube, backupToolDeployment(ref, backup, enabled, auth));
  await apply(kube, backupToolService(ref));
}

/** spec.backup removed: the tool goes, the claim (and its snapshots) stays. */
export async function removeBackupTool({ kube }: Deps, ref: ClusterRef): Promise<void> {
  const { core, apps } = kube;
  await deleteIfPresent(() =>
    apps.deleteNamespacedDeployment({ name: backupToolName(ref.name), namespace: ref.namespace }),
  );
  await deleteIfPresent(() =>
    core.deleteNamespacedService({ name: backupToolName(ref.name), namespace: ref.namespace }),
  );
}

/** The address of the cluster's ready backup tool pod; fails (message "not ready") while there is none. */
export async function toolURL(kube: Kube, ref: ClusterRef): Promise<string> {
  const pods = await kube.core.listNamespacedPod({
    namespace: ref.namespace,
    labelSelector: backupToolSelector(ref.name),
  });
  const ready = pods.items.find(
    (p) =>
      p.status?.podIP &&
      p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') &&
      !p.metadata?.deletionTimestamp,
  );
  if (!ready) throw new Error(`backup tool of ${ref.namespace}/${ref.name} is not ready yet`);
  return `http://${ready.status!.podIP}:${backupToolPort}`;
}

/** The token the backup tool requires (created once per cluster, random). */
export async function backupToken(kube: Kube, ref: ClusterRef, create = false): Promise<string> {
  const { core } = kube;
  const name = backupTokenSecretName(ref.name);
  if (create) {
    const body = backupTokenSecret(ref, randomBytes(32).toString('hex'));
    await createIfAbsent(() => core.createNamespacedSecret({ namespace: ref.namespace, body }));
  }
  const s = await core.readNamespacedSecret({ name, namespace: ref.namespace });
  return Buffer.from(s.data?.token ?? '', 'base64').toString('utf8');
}

/** The backups `owner`'s tool at `url` lists (`cluster` narrows them), read with owner's token, which a restored member
 *  of `ref` then downloads with (its restore-token Secret is set to it first). */
export async function listBackupsFor(
  kube: Kube,
  ref: ClusterRef,
  owner: ClusterRef,
  url: string,
  cluster?: string,
): Promise<BackupRecord[]> {
  const token = await backupToken(kube, owner);
  await restoreTokenSecret(kube, ref, token);
  const query = cluster ? `?${new URLSearchParams({ cluster })}` : '';
  const res = await fetch(`${url}/v1/backups${query}`, { headers: { authorization: `Bearer ${token}` } });
  const all = (await res.json()) as BackupRecord[] & { error?: string };
  if (!res.ok)
    throw new Error(`listing the backups of ${cluster ?? `${owner.namespace}/${owner.name}`} failed: ${all.error}`);
  return all;
}

// Any read failure counts as "no spec": the mode then comes from the member pods and the CA (tlsModeOf).
const clusterOf = async (kube: Kube, ref: ClusterRef) =>
  (await readCluster(kube, ref).catch(() => undefined)) as { spec?: EtcdClusterSpec; status?: StatusOfTls } | undefined;
export const specOf = async (kube: Kube, ref: ClusterRef) => (await clusterOf(kube, ref))?.spec;

/** The Secret a restored member's init reads the backup tool's token from (secretKeyRef): created, or updated to this
 *  token (the tool it downloads from may be a source cluster's). Without a token: created from this cluster's own
 *  tool's token when absent, else left as it is. */
export async function restoreTokenSecret(kube: Kube, ref: ClusterRef, token?: string): Promise<void> {
  const { core } = kube;
  const name = restoreTokenSecretName(ref.name);
  const s = await core.readNamespacedSecret({ name, namespace: ref.namespace }).catch(orAbsent);
  if (s && token === undefined) return;
  const body = backupTokenSecret(ref, token ?? (await backupToken(kube, ref)), name);
  if (!s) await createIfAbsent(() => core.createNamespacedSecret({ namespace: ref.namespace, body }));
  else if (s.data?.token !== body.data!.token)
    await core.replaceNamespacedSecret({ name, namespace: ref.namespace, body: { ...s, data: body.data } });
}
