// The workflows' public face: type names, and the signals the watcher, the CLI and users send
// (also from the Temporal CLI: `temporal workflow signal --name cancelOperation …`). Pure.
import { defineSignal } from '@temporalio/workflow';

/** The per-cluster workflow (ID: clusterWorkflowId) and the adoption of an unmanaged etcd (ID: migrateWorkflowId). */
export const clusterWorkflowType = 'etcdClusterWorkflow';
export const migrateWorkflowType = 'migrateCluster';
/** One backup (ID: scheduledBackupWorkflowId for the Schedule's runs, manualBackupWorkflowId on request). */
export const backupWorkflowType = 'backupCluster';

/** Something changed (a spec, a member pod): observe and decide now. The argument says what, for the history. */
export const reconcileSignal = defineSignal<[string?]>('reconcile');
/** Cancel the running operation: it undoes what it half did (e.g. removes a learner it added) and stops. */
export const cancelOperationSignal = defineSignal('cancelOperation');
/** Restore from the freshest backup of this cluster now (when automatic restore is off). */
export const restoreSignal = defineSignal('restore');
