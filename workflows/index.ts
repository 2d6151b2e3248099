// Every workflow the worker registers.
export { etcdClusterWorkflow } from './cluster.js';
export { createCluster, resizeCluster, replaceMember, restartMember, removeGhostMember, removeOrphanPod, destroyCluster, upgradeCluster } from './operations.js';
export { migrateCluster } from './migration.js';
