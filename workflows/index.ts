// Every workflow the worker registers.
export { etcdClusterWorkflow } from './cluster.js';
export {
  createCluster,
  resizeCluster,
  replaceMember,
  moveMember,
  restartMember,
  removeGhostMember,
  removeOrphanPod,
  destroyCluster,
  upgradeCluster,
  recoverCluster,
  backupCluster,
  defragmentCluster,
  reconfigureMember,
  switchTls,
} from './operations.js';
export { migrateCluster } from './migration.js';
export { rotateCertificates } from './rotation.js';
