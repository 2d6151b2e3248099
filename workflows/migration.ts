// Adopting an unmanaged etcd: inspect → create the EtcdCluster (adopting) → join managed members as
// learners and promote them one by one → remove the legacy members one at a time, leader last →
// hand over to normal management. Legacy pods are never deleted by us.
import { act, gate } from './activities.js';
import { memberName } from '../api/names.js';
import { tracker } from './operations.js';
import { addMember } from './steps.js';
import type { EtcdClusterSpec } from '../api/etcdcluster.js';

export interface MigrationInput {
  namespace: string;
  name: string;
  endpoints: string[];
  size: number;
  dryRun?: boolean;
  repository?: string;
}
export interface MigrationResult {
  dryRun: boolean;
  plan: string[];
  message: string;
}

export async function migrateCluster(input: MigrationInput): Promise<MigrationResult> {
  const step = tracker();
  step(`inspect the legacy cluster at ${input.endpoints.join(', ')}`);
  const legacy = await act.inspectLegacyCluster(input.endpoints);
  const newMembers = Array.from({ length: input.size }, (_, i) => memberName(input.name, i));
  const leaving = [...legacy.members].sort((a, b) => Number(a.isLeader) - Number(b.isLeader));
  const plan = [
    `legacy cluster: ${legacy.members.length} member(s) (${legacy.members.map((m) => `${m.name}${m.isLeader ? ' [leader]' : ''}`).join(', ')}), etcd ${legacy.version}, revision ${legacy.revision}`,
    `create EtcdCluster ${input.namespace}/${input.name} (size ${input.size}, version ${legacy.version}) in adopting state`,
    ...newMembers.map((m) => `join ${m} as a learner, wait until caught up, promote`),
    ...leaving.map(
      (m) =>
        `remove legacy member ${m.name} from membership${m.isLeader ? ' (after moving leadership to a managed member)' : ''}`,
    ),
    'hand the cluster to normal management; legacy pods are left for you to delete',
  ];
  if (input.dryRun) return { dryRun: true, plan, message: 'dry run: nothing was changed' };

  step(`create EtcdCluster ${input.name} in adopting state`);
  const ref = await act.createAdoptingCluster(
    { namespace: input.namespace, name: input.name, size: input.size, endpoints: input.endpoints },
    legacy.version,
  );
  await act.ensureFinalizer(ref);
  await act.ensureServices(ref);
  const spec: EtcdClusterSpec = {
    size: input.size,
    version: legacy.version,
    repository: input.repository ?? 'quay.io/coreos/etcd',
  };
  for (const m of newMembers) await addMember(ref, spec, m, step);
  for (const m of leaving) {
    step(`health gate before removing legacy member ${m.name}`);
    await gate.checkClusterHealthy(ref);
    step(`move leadership away from ${m.name} if it leads`);
    await act.moveLeaderAway(ref, m.name);
    step(`remove legacy member ${m.name}`);
    await act.removeMember(ref, m.name, 'replaced by managed members (adoption)');
  }
  step('hand over to normal management');
  const message = await act.finishAdoption(ref, legacy.members);
  step('done');
  return { dryRun: false, plan, message };
}
