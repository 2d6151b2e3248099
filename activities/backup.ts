// Backups and disaster recovery: the per-cluster backup tool (Deployment, Service on 19999, claim of
// class etcd-controller-backup), snapshots through it, and choosing the freshest restore source.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Logger } from 'pino';
import type { V1EnvVar } from '@kubernetes/client-node';
import type { BackupRecord } from '../workflows/types.js';
import { readCluster } from './cluster/read.js';
import { recordEvent } from './cluster/status.js';
import { clientURLOf, memberStatus, retry, statusProblems, type EtcdStatus } from './etcd-client.js';
import type { V1Deployment, V1PersistentVolumeClaim, V1Service } from '@kubernetes/client-node';
import { apply, createIfAbsent, deleteIfPresent, runningMemberPods, sleep, type Applied, type Kube } from './kube.js';
import { identityParams, notThisCluster } from './backup-identity.js';
import { ownedMeta } from './owned.js';
import {
  backupTokenSecretName,
  backupToolName,
  controllerTlsSecretName,
  rootCredentialsSecretName,
} from '../api/names.js';
import { tlsActivities } from './tls.js';
import { ensureCredentialsSecret, rootUser } from './auth.js';
import { randomBytes } from 'node:crypto';
import type { EtcdClusterSpec } from '../api/etcdcluster.js';
import {
  backupToolLabels,
  backupToolSelector,
  group,
  memberSelector,
  plural,
  version,
  type BackupSpec,
  type ClusterRef,
  type RestoreSpec,
} from '../api/etcdcluster.js';

export const backupClaimName = (cluster: string) => `pvc-${cluster}`;
export const backupToolImage = process.env.BACKUP_TOOL_IMAGE ?? 'kube-etcd-controller/backup-tool:dev';

/** The tool's destination settings as container env: S3 credentials by reference to the Secret, never by value. */
export function backupToolEnv(ref: ClusterRef, backup: BackupSpec, tls = false, auth = false): V1EnvVar[] {
  const secret = (name: string, key: string, optional = false) => ({
    valueFrom: { secretKeyRef: { name, key, ...(optional ? { optional } : {}) } },
  });
  const env: V1EnvVar[] = [
    { name: 'BACKUP_DIR', value: '/var/etcd-backup' },
    { name: 'PORT', value: '19999' },
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
              ports: [{ name: 'http', containerPort: 19999, protocol: 'TCP' }],
              readinessProbe: { httpGet: { path: '/healthz', port: 19999 }, periodSeconds: 2 },
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

/** The backup tool's Service on 19999. */
export function backupToolService(ref: ClusterRef): V1Service & Applied {
  const labels = backupToolLabels(ref.name);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMeta(ref, backupToolName(ref.name), labels),
    spec: { selector: labels, ports: [{ name: 'http', port: 19999, targetPort: 19999, protocol: 'TCP' }] },
  };
}

/** A destination failing this many times in a row, or for this long, fails the backup (each try is a new snapshot). */
const destinationAttempts = 4;
const destinationGraceMs = 60_000;
/** etcd raised CORRUPT for the member that gave this Status. */
const corrupt = (s: EtcdStatus) =>
  statusProblems(s.errors).alarms.some((a) => a.alarm === 'CORRUPT' && a.memberId === s.header.member_id);

export interface RestoreSource {
  snapshot: string;
  revision: number;
  source: string;
  url: string;
  newestKnownRevision: number;
}

export function backupActivities(kube: Kube, log: Logger) {
  const { core, apps } = kube;

  async function toolURL(ref: ClusterRef): Promise<string> {
    const pods = await core.listNamespacedPod({
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
    return `http://${ready.status!.podIP}:19999`;
  }

  async function memberEndpoints(ref: ClusterRef): Promise<{ name: string; url: string }[]> {
    return (await runningMemberPods(core, ref))
      .filter((p) => p.metadata?.ownerReferences?.some((o) => o.uid === ref.uid))
      .map((p) => ({ name: p.metadata!.name!, url: clientURLOf(p.status!.podIP!) }));
  }

  /** Members etcd has not flagged CORRUPT (a member that does not answer is left to the backup tool to skip). */
  async function trusted(eps: { name: string; url: string }[]): Promise<{ name: string; url: string }[]> {
    const flagged = await Promise.all(eps.map((m) => memberStatus(m.url).then(corrupt, () => false)));
    return eps.filter((_, i) => !flagged[i]);
  }

  /** The token the backup tool requires (created once per cluster, random). */
  async function backupToken(ref: ClusterRef, create = false): Promise<string> {
    const name = backupTokenSecretName(ref.name);
    if (create) {
      await createIfAbsent(() =>
        core.createNamespacedSecret({
          namespace: ref.namespace,
          body: {
            metadata: ownedMeta(ref, name, backupToolLabels(ref.name)),
            data: { token: Buffer.from(randomBytes(32).toString('hex')).toString('base64') },
          },
        }),
      );
    }
    const s = await core.readNamespacedSecret({ name, namespace: ref.namespace });
    return Buffer.from(s.data?.token ?? '', 'base64').toString('utf8');
  }

  // Any read failure counts as "no spec": the mode then comes from the member pods and the CA (tlsModeOf).
  const specOf = async (ref: ClusterRef) =>
    (await readCluster(kube, ref).catch(() => undefined))?.spec as EtcdClusterSpec | undefined;

  async function ensureTool(ref: ClusterRef, backup: BackupSpec): Promise<void> {
    if (!backup.s3) {
      const claim = backupClaim(ref, backup);
      await createIfAbsent(() => core.createNamespacedPersistentVolumeClaim({ namespace: ref.namespace, body: claim }));
    }
    await backupToken(ref, true);
    // A TLS cluster's tool mounts the controller's certificate: it must exist first.
    const tls = tlsActivities(core);
    const spec = await specOf(ref);
    const { enabled } = await tls.clusterTlsMode(ref, spec);
    if (enabled) await tls.ensureTlsSecrets(ref, []);
    // spec.auth: the tool mounts the root user's Secret (asks as root once auth is on): it must exist first.
    const auth = !!spec?.auth;
    if (auth) await ensureCredentialsSecret(core, ref, rootUser);
    await apply(kube, backupToolDeployment(ref, backup, enabled, auth));
    await apply(kube, backupToolService(ref));
  }

  /** A snapshot through the tool, of the named members (the tool knows their addresses). */
  async function snapshotVia(ref: ClusterRef, members: string[], reason: string): Promise<BackupRecord> {
    const url = await toolURL(ref);
    const who = identityParams({ namespace: ref.namespace, name: ref.name, uid: ref.uid });
    const q = new URLSearchParams({ members: members.join(','), reason, ...who });
    const res = await fetch(`${url}/v1/backupnow?${q}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await backupToken(ref)}` },
    });
    const body = (await res.json()) as BackupRecord & { error?: string; destination?: boolean };
    if (res.ok) return body;
    if (res.status === 500 && body.error === 'no endpoints') {
      // A tool from before issue 18 (it wanted endpoints=): the workflow applied it long ago, roll it now.
      const spec = await specOf(ref);
      if (spec?.backup) await ensureTool(ref, spec.backup);
      throw new Error(`backup tool of ${ref.namespace}/${ref.name} is not ready yet: rolled to this version`);
    }
    // The destination (S3) failed though the snapshot was good: tried again for a short while (a blip), then the
    // backup fails with the destination's own error instead of retrying until its 10 min deadline.
    const { attempt, scheduledTimestampMs } = Context.current().info;
    if (body.destination && (attempt >= destinationAttempts || Date.now() - scheduledTimestampMs > destinationGraceMs))
      throw ApplicationFailure.nonRetryable(
        `backup failed after ${attempt} attempt(s): ${body.error}`,
        'BackupDestinationFailed',
      );
    throw new Error(`backup failed: ${body.error}`);
  }

  return {
    /** Backup tool Deployment + Service on 19999 (applied: a changed spec.backup rolls out, a deleted one comes back)
     *  + claim. The claim has no owner: its data outlives the cluster. It is only ever created, never resized or
     *  deleted here: shrinking is refused and growing needs an expandable StorageClass (a user's call). */
    async ensureBackupTool(ref: ClusterRef, backup: BackupSpec): Promise<void> {
      await ensureTool(ref, backup);
    },

    /** spec.backup removed: the tool goes, the claim (and its snapshots) stays. */
    async removeBackupTool(ref: ClusterRef): Promise<void> {
      await deleteIfPresent(() =>
        apps.deleteNamespacedDeployment({ name: backupToolName(ref.name), namespace: ref.namespace }),
      );
      await deleteIfPresent(() =>
        core.deleteNamespacedService({ name: backupToolName(ref.name), namespace: ref.namespace }),
      );
    },

    /** A snapshot now, from the member with the highest revision; waits for the tool to be ready. */
    async takeBackup(ref: ClusterRef, reason: string): Promise<BackupRecord> {
      for (;;) {
        try {
          const eps = await trusted(await memberEndpoints(ref));
          const rec = await snapshotVia(
            ref,
            eps.map((e) => e.name),
            reason,
          );
          const v = rec.verification;
          if (v?.result === 'Failed')
            await recordEvent({ kube, log }, ref, 'Warning', 'BackupVerificationFailed', `${v.backup}: ${v.message}`);
          return rec;
        } catch (e) {
          Context.current().heartbeat((e as Error).message);
          if (!/not ready/.test((e as Error).message)) throw e;
          await sleep(1000);
        }
      }
    },

    /** The freshest source by revision: a snapshot of the surviving member with the highest revision, or the newest valid backup
     *  of this cluster when that is newer. */
    async chooseRestoreSource(ref: ClusterRef): Promise<RestoreSource> {
      const url = await toolURL(ref).catch(() => {
        throw ApplicationFailure.nonRetryable(
          `cannot recover ${ref.namespace}/${ref.name}: its backup tool is not running (spec.backup is needed for disaster recovery)`,
          'NoRestoreSource',
        );
      });
      // Only backups of this cluster: same object UID or etcd cluster ID (see backup-identity.ts).
      const obj = (await kube.custom.getNamespacedCustomObject({
        group,
        version,
        plural,
        namespace: ref.namespace,
        name: ref.name,
      })) as { metadata: { uid: string; creationTimestamp: string }; status?: { clusterID?: string } };
      const self = { uid: ref.uid, etcdClusterId: obj.status?.clusterID, createdAt: obj.metadata.creationTimestamp };
      const all = (await (await fetch(`${url}/v1/backups`)).json()) as BackupRecord[];
      const backups = all.filter((b) => !notThisCluster(b, self));
      const newest = backups.find((b) => b.valid);
      // Even a corrupted backup proves the cluster reached its revision: count it in the loss.
      const backupsReached = Math.max(0, ...backups.map((b) => b.revision));
      const survivors: { name: string; url: string; revision: number }[] = [];
      // Each member's Status, asked once: a running member slow to answer (a loaded node) is asked again before it
      // counts as gone (taken for gone, an older backup could be restored over what only it holds).
      const members = await memberEndpoints(ref);
      const statuses = await Promise.all(
        members.map((m) => retry((i) => memberStatus(m.url, i ? 5000 : 2000), { tries: 3 }).catch(() => undefined)),
      );
      for (const [i, m] of members.entries()) {
        const s = statuses[i];
        if (!s) continue; // gone
        // A member etcd flagged CORRUPT (its data differs from the others') is never a source.
        if (corrupt(s)) {
          const why = `not copying data from ${m.name}: etcd raised CORRUPT for it`;
          await recordEvent({ kube, log }, ref, 'Warning', 'CorruptSourceSkipped', why);
        } else survivors.push({ ...m, revision: Number(s.header.revision) });
      }
      survivors.sort((a, b) => b.revision - a.revision);
      // The freshest source by revision: a survivor, unless a valid backup of this cluster is newer than every survivor.
      if (survivors.length && survivors[0].revision >= (newest?.revision ?? 0)) {
        try {
          const rec = await snapshotVia(
            ref,
            [survivors[0].name],
            `disaster recovery from surviving member ${survivors[0].name}`,
          );
          return {
            snapshot: rec.name,
            revision: rec.revision,
            source: `surviving member ${survivors[0].name}`,
            url,
            newestKnownRevision: Math.max(rec.revision, backupsReached),
          };
        } catch (e) {
          log.warn({ err: (e as Error).message }, 'snapshot of the survivor failed; falling back to backups');
        }
      }
      const foreign = all.filter((b) => notThisCluster(b, self));
      if (foreign.length) {
        await recordEvent(
          { kube, log },
          ref,
          'Warning',
          'BackupNotThisCluster',
          `skipping ${foreign.length} backup(s) of another cluster: ` +
            foreign
              .slice(0, 3)
              .map((b) => `${b.name} ${notThisCluster(b, self)}`)
              .join('; '),
        );
      }
      for (const bad of backups.filter((b) => !b.valid))
        await recordEvent(
          { kube, log },
          ref,
          'Warning',
          'BackupCorrupt',
          `skipping backup ${bad.name}: ${bad.problem}`,
        );
      if (!newest) {
        throw ApplicationFailure.nonRetryable(
          `cannot recover ${ref.namespace}/${ref.name}: no member survives and ` +
            'no valid backup of this cluster exists; nothing was deleted',
          'NoRestoreSource',
        );
      }
      const best = survivors[0];
      const newer =
        best && newest.revision > best.revision
          ? ` (newer than surviving member ${best.name} at ${best.revision})`
          : '';
      return {
        snapshot: newest.name,
        revision: newest.revision,
        source: `backup ${newest.name} taken ${newest.time}${newer}`,
        url,
        newestKnownRevision: Math.max(backupsReached, best?.revision ?? 0),
      };
    },

    /**
     * The backup a new cluster starts from (spec.restore), read through this cluster's own backup tool: the one
     * named, else the newest valid backup of the source cluster's incarnation (spec.restore.uid, else the live
     * source cluster's UID, else any). Waits for the tool to be ready.
     */
    async chooseBackupToRestore(ref: ClusterRef, restore: RestoreSpec): Promise<RestoreSource & { time: string }> {
      const ns = restore.namespace ?? ref.namespace;
      const from = `${ns}/${restore.cluster}`;
      let url: string;
      for (;;) {
        try {
          url = await toolURL(ref);
          break;
        } catch (e) {
          Context.current().heartbeat((e as Error).message);
          await sleep(1000);
        }
      }
      // A claim holds only its own cluster's backups: read the source's claim through the source's backup tool
      // (its Service's pod, which also serves the download to the new seed's init container).
      const health = (await (await fetch(`${url}/healthz`)).json()) as { destination?: string };
      if (!health.destination?.startsWith('s3://')) {
        url = await toolURL({ namespace: ns, name: restore.cluster, uid: '' }).catch((e: Error) => {
          throw ApplicationFailure.nonRetryable(
            `cannot start ${ref.namespace}/${ref.name} from ${from}: backups on a claim are read through their ` +
              `cluster's own backup tool, and ${e.message} (an S3 destination is readable without it)`,
            'NoRestoreSource',
          );
        });
      }
      const res = await fetch(`${url}/v1/backups?${new URLSearchParams({ cluster: from })}`);
      const all = (await res.json()) as BackupRecord[] & { error?: string };
      if (!res.ok) throw new Error(`listing the backups of ${from} failed: ${all.error}`);
      let uid = restore.uid;
      if (!uid && !restore.backup) {
        const live = (await kube.custom
          .getNamespacedCustomObject({ group, version, plural, namespace: ns, name: restore.cluster })
          .catch(() => undefined)) as { metadata?: { uid?: string } } | undefined;
        uid = live?.metadata?.uid;
      }
      const fits = all.filter(
        (b) => b.valid && (restore.backup ? b.name === restore.backup : !uid || b.cluster?.uid === uid),
      );
      const best = fits[0];
      if (!best) {
        const which = restore.backup ?? `a valid backup${uid ? ` of incarnation ${uid}` : ''}`;
        throw ApplicationFailure.nonRetryable(
          `cannot start ${ref.namespace}/${ref.name} from ${from}: ${which} not found among its ${all.length} backup(s)`,
          'NoRestoreSource',
        );
      }
      return {
        snapshot: best.name,
        revision: best.revision,
        source: `backup ${best.location ?? best.name} of ${from} (uid ${best.cluster?.uid ?? '?'}) taken ${best.time}`,
        url,
        newestKnownRevision: best.revision,
        time: best.time,
      };
    },

    /**
     * Stops every remaining member before the restore, so no old member serves beside the new cluster.
     * Never a force delete: a pod object goes only once its kubelet confirms the processes stopped, so a
     * member on an unreachable node holds the restore (until the node is back or its Node object is deleted).
     */
    async deleteAllMemberPods(ref: ClusterRef): Promise<number> {
      const pods = await core.listNamespacedPod({
        namespace: ref.namespace,
        labelSelector: memberSelector(ref.name),
      });
      for (const p of pods.items) {
        const name = p.metadata!.name!;
        await deleteIfPresent(() =>
          core.deleteNamespacedPod({ name, namespace: ref.namespace, body: { gracePeriodSeconds: 1 } }),
        );
      }
      for (;;) {
        const left = (
          await core.listNamespacedPod({ namespace: ref.namespace, labelSelector: memberSelector(ref.name) })
        ).items;
        if (!left.length) return pods.items.length;
        const where = left.map((p) => `${p.metadata!.name} on ${p.spec?.nodeName ?? '?'}`).join(', ');
        Context.current().heartbeat(`waiting for the kubelet to confirm that member pod(s) stopped: ${where}`);
        await sleep(500);
      }
    },
  };
}
