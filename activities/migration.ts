// Adopting an etcd the controller does not manage: inspect it, create the EtcdCluster in an adopting
// state, and hand the cluster over once managed members have replaced the legacy ones.
import { ApplicationFailure } from '@temporalio/common';
import { memberNameOf } from '../api/names.js';
import { parseVersion } from '../workflows/versions.js';
import { patchCluster } from './cluster/read.js';
import { recordEvent } from './cluster/status.js';
import { EtcdStatus, deadline, healthOf, withEtcd } from './etcd-client.js';
import { isConflict } from './kube.js';
import type { Deps } from './deps.js';
import {
  adoptingAnnotation,
  apiVersion,
  group,
  kind,
  legacyEndpointsAnnotation,
  plural,
  version,
  type ClusterRef,
} from '../api/etcdcluster.js';

export interface LegacyMember {
  id: string;
  name: string;
  peerURL: string;
  clientURL?: string;
  healthy: boolean;
  version?: string;
  isLeader: boolean;
  isLearner: boolean;
  error?: string;
}
export interface LegacyReport {
  members: LegacyMember[];
  version: string;
  revision: string;
  leader?: string;
}

export interface AdoptionRequest {
  namespace: string;
  name: string;
  size: number;
  endpoints: string[];
}

/** Reads the legacy cluster through its endpoints; refuses (before any change) what we cannot adopt safely. */
export async function inspectLegacyCluster(_d: Deps, endpoints: string[]): Promise<LegacyReport> {
  const refuse = (msg: string) => ApplicationFailure.nonRetryable(`cannot adopt: ${msg}`, 'LegacyClusterRefused');
  if (!endpoints.length) throw refuse('no endpoints given (use --endpoints http://<ip>:2379,...)');
  const answers = await Promise.all(
    endpoints.map(async (url) => {
      try {
        return await withEtcd(
          [url],
          async (c) => ({
            url,
            status: await c.maintenance.status(deadline(3000)),
            list: await c.cluster.memberList({}, deadline(3000)),
          }),
          3000,
        );
      } catch (e) {
        return { url, error: (e as Error).message.split('\n')[0] };
      }
    }),
  );
  const silent = answers.filter((a) => 'error' in a);
  if (silent.length)
    throw refuse(
      `endpoint(s) do not answer: ${silent.map((a) => `${a.url} (${(a as { error: string }).error})`).join('; ')}`,
    );
  const ok = answers as {
    url: string;
    status: EtcdStatus;
    list: { members: import('etcd3').IMember[] };
  }[];
  const clusterIds = new Set(ok.map((a) => a.status.header.cluster_id));
  if (clusterIds.size > 1) throw refuse(`the endpoints belong to ${clusterIds.size} different clusters`);
  const list = ok[0].list.members;
  const byId = new Map(ok.map((a) => [a.status.header.member_id, a]));
  const members: LegacyMember[] = list.map((m) => {
    const a = byId.get(m.ID);
    return {
      id: m.ID,
      name: memberNameOf(m),
      peerURL: m.peerURLs[0] ?? '',
      clientURL: a?.url,
      isLearner: !!m.isLearner,
      healthy: !!a && healthOf(a.status).healthy,
      version: a?.status.version,
      isLeader: !!a && a.status.leader === m.ID,
      error: !a ? 'no endpoint given for this member' : healthOf(a.status).error,
    };
  });
  const problems = members.filter((m) => !m.healthy).map((m) => `${m.name}: ${m.error}`);
  if (problems.length)
    throw refuse(
      `legacy cluster is not healthy (${problems.join('; ')}); give every member's client URL and fix it first`,
    );
  if (members.some((m) => m.isLearner)) throw refuse('legacy cluster has a learner; promote or remove it first');
  const versions = [...new Set(members.map((m) => m.version!))];
  if (versions.length > 1)
    throw refuse(`legacy members run different versions (${versions.join(', ')}); finish that upgrade first`);
  const v = parseVersion(versions[0]);
  if (!v || v.major !== 3 || v.minor < 4 || v.minor > 6)
    throw refuse(`etcd ${versions[0]} cannot be managed (supported: 3.4, 3.5, 3.6)`);
  const leader = members.find((m) => m.isLeader)?.name;
  return { members, version: versions[0], revision: ok[0].status.header.revision, leader };
}

/** Creates the EtcdCluster marked as adopting (the cluster workflow keeps its hands off until the end). */
export async function createAdoptingCluster(
  { kube }: Deps,
  req: AdoptionRequest,
  etcdVersion: string,
): Promise<ClusterRef> {
  const base = { group, version, plural, namespace: req.namespace };
  try {
    await kube.custom.createNamespacedCustomObject({
      ...base,
      body: {
        apiVersion,
        kind,
        metadata: {
          name: req.name,
          annotations: { [adoptingAnnotation]: 'true', [legacyEndpointsAnnotation]: req.endpoints.join(',') },
        },
        // Plain, stated: a legacy cluster is reached over http, and its members' peers are plain, so the learners that
        // join it must be plain too (a spec without tls would make a TLS cluster). Switch to TLS after the adoption.
        spec: { size: req.size, version: etcdVersion, tls: { enabled: false } },
      },
    });
  } catch (e) {
    if (!isConflict(e)) throw e;
  }
  const obj = (await kube.custom.getNamespacedCustomObject({ ...base, name: req.name })) as {
    metadata: { uid: string; annotations?: Record<string, string> };
  };
  if (obj.metadata.annotations?.[adoptingAnnotation] !== 'true') {
    throw ApplicationFailure.nonRetryable(
      `EtcdCluster ${req.namespace}/${req.name} already exists and is not being adopted: choose another --name`,
      'NameTaken',
    );
  }
  return { namespace: req.namespace, name: req.name, uid: obj.metadata.uid };
}

/** Ends the adoption: normal management from now on; says which legacy pods may be deleted. */
export async function finishAdoption(d: Deps, ref: ClusterRef, legacy: LegacyMember[]): Promise<string> {
  const done = { metadata: { annotations: { [adoptingAnnotation]: null, [legacyEndpointsAnnotation]: null } } };
  await patchCluster(d.kube, ref, done);
  const ips = new Set(legacy.map((m) => m.clientURL && new URL(m.clientURL).hostname).filter(Boolean));
  const pods = (await d.kube.core.listPodForAllNamespaces()).items.filter(
    (p) => p.status?.podIP && ips.has(p.status.podIP),
  );
  const names = pods.map((p) => `${p.metadata!.namespace}/${p.metadata!.name}`);
  const message =
    `adopted: legacy member(s) ${legacy.map((m) => m.name).join(', ')} removed from membership; ` +
    (names.length
      ? `their pod(s) ${names.join(', ')} are no longer used and may be deleted`
      : 'their processes are no longer used and may be stopped');
  await recordEvent(d, ref, 'Normal', 'Adopted', message);
  return message;
}
