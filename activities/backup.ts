// Backups and disaster recovery: the per-cluster backup tool (Deployment, Service on 19999, claim of
// class etcd-controller-backup), snapshots through it, and choosing the freshest restore source.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Logger } from 'pino';
import type { BackupRecord, BackupSpec, ClusterRef } from '../workflows/types.js';
import { recordEvent } from './cluster.js';
import { clientURLOf, deadline, statusProblems, withEtcd } from './etcd-client.js';
import { createIfAbsent, deleteIfPresent, runningMemberPods, type Kube } from './kube.js';
import { ownerReference } from './member-pod.js';

export const backupToolName = (cluster: string) => `${cluster}-backup-tool`;
export const backupClaimName = (cluster: string) => `pvc-${cluster}`;
export const backupToolImage = process.env.BACKUP_TOOL_IMAGE ?? 'kube-etcd-controller/backup-tool:dev';
const toolLabels = (cluster: string) => ({ app: 'etcd-backup-tool', etcd_cluster: cluster });

export interface RestoreSource { snapshot: string; revision: number; source: string; url: string; newestKnownRevision: number }

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function backupActivities(kube: Kube, log: Logger) {
  const { core, apps } = kube;

  async function toolURL(ref: ClusterRef): Promise<string> {
    const pods = await core.listNamespacedPod({ namespace: ref.namespace, labelSelector: `app=etcd-backup-tool,etcd_cluster=${ref.name}` });
    const ready = pods.items.find((p) => p.status?.podIP && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') && !p.metadata?.deletionTimestamp);
    if (!ready) throw new Error(`backup tool of ${ref.namespace}/${ref.name} is not ready yet`);
    return `http://${ready.status!.podIP}:19999`;
  }

  async function memberEndpoints(ref: ClusterRef): Promise<{ name: string; url: string }[]> {
    return (await runningMemberPods(core, ref)).map((p) => ({ name: p.metadata!.name!, url: clientURLOf(p.status!.podIP!) }));
  }

  /** Members etcd has not flagged CORRUPT (a member that does not answer is left to the backup tool to skip). */
  async function trusted(ref: ClusterRef, eps: { name: string; url: string }[], report = false): Promise<{ name: string; url: string }[]> {
    const flagged = await Promise.all(eps.map((m) => withEtcd([m.url], (c) => c.maintenance.status(deadline(2000)), 2000)
      .then((s) => statusProblems(s.errors).alarms.some((a) => a.alarm === 'CORRUPT' && a.memberId === s.header.member_id), () => false)));
    for (const m of report ? eps.filter((_, i) => flagged[i]) : []) {
      await recordEvent(kube, ref, 'Warning', 'CorruptSourceSkipped', `not copying data from ${m.name}: etcd raised CORRUPT for it`, log);
    }
    return eps.filter((_, i) => !flagged[i]);
  }

  async function snapshotVia(ref: ClusterRef, endpoints: string[], reason: string): Promise<BackupRecord> {
    const url = await toolURL(ref);
    const res = await fetch(`${url}/v1/backupnow?endpoints=${encodeURIComponent(endpoints.join(','))}&reason=${encodeURIComponent(reason)}`, { method: 'POST' });
    const body = await res.json() as BackupRecord & { error?: string };
    if (!res.ok) throw new Error(`backup failed: ${body.error}`);
    return body;
  }

  return {
    /** Backup tool Deployment + Service on 19999 + claim. The claim has no owner: its data outlives the cluster. */
    async ensureBackupTool(ref: ClusterRef, backup: BackupSpec): Promise<void> {
      const name = backupToolName(ref.name);
      const labels = toolLabels(ref.name);
      await createIfAbsent(() => core.createNamespacedPersistentVolumeClaim({ namespace: ref.namespace, body: {
        metadata: { name: backupClaimName(ref.name), labels },
        spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'etcd-controller-backup', resources: { requests: { storage: `${backup.volumeSizeInMB ?? 512}Mi` } } },
      } }));
      await createIfAbsent(() => apps.createNamespacedDeployment({ namespace: ref.namespace, body: {
        metadata: { name, labels, ownerReferences: [ownerReference(ref)] },
        spec: { replicas: 1, strategy: { type: 'Recreate' }, selector: { matchLabels: labels }, template: {
          metadata: { labels },
          spec: { automountServiceAccountToken: false, terminationGracePeriodSeconds: 5, containers: [{
            name: 'backup-tool', image: backupToolImage,
            env: [{ name: 'BACKUP_DIR', value: '/var/etcd-backup' }, { name: 'PORT', value: '19999' }, { name: 'MAX_SNAPSHOT', value: String(backup.maxSnapshot ?? 0) }],
            ports: [{ name: 'http', containerPort: 19999 }],
            readinessProbe: { httpGet: { path: '/healthz', port: 19999 }, periodSeconds: 2 },
            volumeMounts: [{ name: 'backups', mountPath: '/var/etcd-backup' }],
          }], volumes: [{ name: 'backups', persistentVolumeClaim: { claimName: backupClaimName(ref.name) } }] },
        } },
      } }));
      await createIfAbsent(() => core.createNamespacedService({ namespace: ref.namespace, body: {
        metadata: { name, labels, ownerReferences: [ownerReference(ref)] },
        spec: { selector: labels, ports: [{ name: 'http', port: 19999, targetPort: 19999 }] },
      } }));
    },

    /** spec.backup removed: the tool goes, the claim (and its snapshots) stays. */
    async removeBackupTool(ref: ClusterRef): Promise<void> {
      await deleteIfPresent(() => apps.deleteNamespacedDeployment({ name: backupToolName(ref.name), namespace: ref.namespace }));
      await deleteIfPresent(() => core.deleteNamespacedService({ name: backupToolName(ref.name), namespace: ref.namespace }));
    },

    /** A snapshot now, from the member with the highest revision; waits for the tool to be ready. */
    async takeBackup(ref: ClusterRef, reason: string): Promise<BackupRecord> {
      for (;;) {
        try {
          const eps = await trusted(ref, await memberEndpoints(ref));
          return await snapshotVia(ref, eps.map((e) => e.url), reason);
        } catch (e) {
          Context.current().heartbeat((e as Error).message);
          if (!/not ready/.test((e as Error).message)) throw e;
          await sleep(1000);
        }
      }
    },

    /** The freshest source: a snapshot of the surviving member with the highest revision, else the newest valid backup. */
    async chooseRestoreSource(ref: ClusterRef): Promise<RestoreSource> {
      const url = await toolURL(ref).catch(() => { throw ApplicationFailure.nonRetryable(`cannot recover ${ref.namespace}/${ref.name}: its backup tool is not running (spec.backup is needed for disaster recovery)`, 'NoRestoreSource'); });
      const survivors: { name: string; url: string; revision: number }[] = [];
      // A member etcd flagged CORRUPT (its data differs from the others') is never a source.
      for (const m of await trusted(ref, await memberEndpoints(ref), true)) {
        try {
          const s = await withEtcd([m.url], (c) => c.maintenance.status(deadline(2000)), 2000);
          survivors.push({ ...m, revision: Number(s.header.revision) });
        } catch { /* gone */ }
      }
      survivors.sort((a, b) => b.revision - a.revision);
      if (survivors.length) {
        try {
          const rec = await snapshotVia(ref, [survivors[0].url], `disaster recovery from surviving member ${survivors[0].name}`);
          return { snapshot: rec.name, revision: rec.revision, source: `surviving member ${survivors[0].name}`, url, newestKnownRevision: rec.revision };
        } catch (e) {
          log.warn({ err: (e as Error).message }, 'snapshot of the survivor failed; falling back to backups');
        }
      }
      const backups = await (await fetch(`${url}/v1/backups`)).json() as BackupRecord[];
      for (const bad of backups.filter((b) => !b.valid)) await recordEvent(kube, ref, 'Warning', 'BackupCorrupt', `skipping backup ${bad.name}: ${bad.problem}`, log);
      const newest = backups.find((b) => b.valid);
      if (!newest) throw ApplicationFailure.nonRetryable(`cannot recover ${ref.namespace}/${ref.name}: no member survives and no valid backup exists; nothing was deleted`, 'NoRestoreSource');
      // Even a corrupted backup proves the cluster reached its revision: count it in the loss.
      const newestKnownRevision = Math.max(...backups.map((b) => b.revision));
      return { snapshot: newest.name, revision: newest.revision, source: `backup ${newest.name} taken ${newest.time}`, url, newestKnownRevision };
    },

    /** Stops every remaining member before the restore, so no old member talks to the new cluster. */
    async deleteAllMemberPods(ref: ClusterRef): Promise<number> {
      const pods = await core.listNamespacedPod({ namespace: ref.namespace, labelSelector: `app=etcd,etcd_cluster=${ref.name}` });
      for (const p of pods.items) await deleteIfPresent(() => core.deleteNamespacedPod({ name: p.metadata!.name!, namespace: ref.namespace, body: { gracePeriodSeconds: 0 } }));
      for (;;) {
        const left = (await core.listNamespacedPod({ namespace: ref.namespace, labelSelector: `app=etcd,etcd_cluster=${ref.name}` })).items;
        if (!left.length) return pods.items.length;
        Context.current().heartbeat(`waiting for ${left.length} member pod(s) to go`);
        await sleep(500);
      }
    },
  };
}
