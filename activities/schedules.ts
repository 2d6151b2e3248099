// A cluster's backups as a Temporal Schedule (<ns>/<name>/backups): created, updated and deleted following
// spec.backup, so backups run beside the cluster workflow, never inside it; pause, trigger and backfill come
// with the Schedule (Temporal UI and CLI). Each run is a bounded backupCluster workflow that reports back.
import { Context } from '@temporalio/activity';
import { ScheduleAlreadyRunning, ScheduleNotFoundError, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { Logger } from 'pino';
import { backupScheduleId, scheduledBackupWorkflowId, searchTags } from '../api/names.js';
import { type BackupSpec, type ClusterRef } from '../api/etcdcluster.js';
import { backupWorkflowType } from '../api/workflows.js';

/** What a scheduled run needs; compared with the Schedule's action to decide whether to update it. */
export interface ScheduledBackupOptions {
  /** Caps the run's wait deadlines (seconds; tests only, the operations' KEC_WAIT_CAP_SECONDS). */
  waitCapSeconds?: number;
}

/** A run that outlives its own deadlines (takeBackup 10 min) is stopped by the server. */
const runTimeout = '20m';

export function scheduleActivities(temporal: Client | undefined, log: Logger) {
  function client(): Client {
    if (!temporal) throw new Error('no Temporal client given to the activities (createActivities deps.temporal)');
    return temporal;
  }

  return {
    /** Makes the cluster's backup Schedule match spec.backup: absent → deleted, present → created or updated
     *  (interval, arguments). Idempotent: "already exists" and "not found" are success. Returns what it did. */
    async ensureBackupSchedule(
      ref: ClusterRef,
      backup: BackupSpec | null,
      opts: ScheduledBackupOptions = {},
    ): Promise<string> {
      const scheduleId = backupScheduleId(ref);
      const handle = client().schedule.getHandle(scheduleId);
      const current = await handle.describe().catch((e) => {
        if (e instanceof ScheduleNotFoundError) return undefined;
        throw e;
      });
      if (!backup) {
        if (!current) return `${scheduleId} absent`;
        await handle.delete().catch((e) => {
          if (!(e instanceof ScheduleNotFoundError)) throw e;
        });
        log.info({ scheduleId }, 'backup schedule deleted');
        return `${scheduleId} deleted`;
      }
      const every = (backup.snapshotIntervalInSecond ?? 1800) * 1000;
      const action = {
        type: 'startWorkflow' as const,
        workflowType: backupWorkflowType,
        workflowId: scheduledBackupWorkflowId(ref),
        taskQueue: Context.current().info.taskQueue,
        args: [{ ref, backup, reason: 'scheduled', report: true }],
        workflowExecutionTimeout: runTimeout,
        typedSearchAttributes: searchTags(ref, 'backup'),
        staticSummary: 'scheduled backup',
        ...(opts.waitCapSeconds ? { memo: { waitCapSeconds: opts.waitCapSeconds } } : {}),
      };
      const spec = { intervals: [{ every }] };
      if (current) {
        const same =
          current.spec.intervals?.[0]?.every === every &&
          JSON.stringify(current.action.args) === JSON.stringify(action.args) &&
          JSON.stringify(current.action.memo ?? {}) === JSON.stringify(action.memo ?? {});
        if (same) return `${scheduleId} up to date`;
        await handle.update((prev) => ({ ...prev, spec, action }));
        log.info({ scheduleId, every }, 'backup schedule updated');
        return `${scheduleId} updated`;
      }
      try {
        await client().schedule.create({
          scheduleId,
          spec,
          action,
          // A backup still running when the next is due: skip that one. Missed while the server was down: one.
          policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1m' },
          // The first backup now (as soon as the cluster serves), then every interval.
          state: { triggerImmediately: true, note: `backups of EtcdCluster ${ref.namespace}/${ref.name}` },
          typedSearchAttributes: searchTags(ref, 'backup'),
        });
      } catch (e) {
        if (!(e instanceof ScheduleAlreadyRunning)) throw e;
        return `${scheduleId} already exists`; // a concurrent attempt made it; the next change updates it
      }
      log.info({ scheduleId, every }, 'backup schedule created');
      return `${scheduleId} created`;
    },
  };
}
