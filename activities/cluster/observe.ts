// observeCluster: everything a decision needs, read in one activity — the spec, the member pods and claims, etcd's
// membership and each member's health (etcd layer: memberStatus + healthOf), nodes, and owned objects gone missing.
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { knownVoters, voterEvidence } from '../../workflows/evidence.js';
import { backupToolName, memberIndex, memberNameOf, nodeLeaseNamespace } from '../../api/names.js';
import type { MemberView, NodeView, Observation, PodView } from '../../workflows/types.js';
import {
  adoptingAnnotation,
  optionsAnnotation,
  ownedSelector,
  rotateCertsAnnotation,
  type ClusterRef,
  type StatusOfTls,
} from '../../api/etcdcluster.js';
import type { EtcdClusterSpec } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { clientURLOf, deadline, healthOf, keptClients, memberStatus } from '../etcd-client.js';
import { observeTls } from '../tls.js';
import { certManagerProblem } from '../cert-manager.js';
import { recordEvent } from './status.js';
import { apiMessage, codeOf, orAbsent, podProblem, type Kube } from '../kube.js';
import { optionsDrift } from '../member-pod.js';
import { clusterObjects } from '../owned.js';
import { memberClaims, memberPods, readCluster } from './read.js';
import { validateSpec } from './spec.js';

/** Everything a decision needs: the spec, member pods, and etcd's membership and health. */
export async function observeCluster(
  { kube, log }: Deps,
  ref: Pick<ClusterRef, 'namespace' | 'name'>,
): Promise<Observation> {
  const began = Date.now();
  // How long each part of the look took (ms since it began): a slow look says where its time went.
  const parts: Record<string, number> = {};
  const timed = <T>(part: string, p: Promise<T>) => p.finally(() => (parts[part] = Date.now() - began));
  const obj = await timed('cluster', readCluster(kube, ref));
  const now = new Date().toISOString();
  if (!obj) return noCluster(now);
  const owned = (await timed('pods', memberPods(kube, ref))).filter((p) =>
    p.metadata?.ownerReferences?.some((o) => o.uid === obj.metadata.uid),
  );
  const rawPods = new Map(owned.map((p) => [p.metadata!.name!, p]));
  const pods = owned.map(podView);
  const spec = obj.spec as EtcdClusterSpec;
  const specError = validateSpec(spec);
  // Members whose spec-driven flags differ from the spec's (only when the spec is valid: a refused spec changes nothing).
  for (const p of specError ? [] : pods) {
    const drift = optionsDrift(rawPods.get(p.name)?.metadata?.annotations?.[optionsAnnotation], spec);
    if (drift) p.optionsDrift = drift;
  }
  const conditions = (obj.status?.conditions as { type: string }[] | undefined) ?? [];
  const tlsRefusedBefore = conditions.some((c) => c.type === 'TLSSwitchRefused');
  const warn = (reason: string, message: string) =>
    recordEvent({ kube, log }, { ...ref, uid: obj.metadata.uid! }, 'Warning', reason, message);
  const [etcd, nodes, claims, missing, tls] = await Promise.all([
    timed('etcd', observeEtcd(pods)),
    timed('nodes', observeNodes(kube, spec)),
    timed('claims', memberClaims(kube, ref, obj.metadata.uid)),
    timed('owned', missingOwned(kube, { ...ref, uid: obj.metadata.uid }, spec)),
    timed(
      'tls',
      observeTls(
        kube.core,
        ref,
        spec,
        owned,
        tlsRefusedBefore,
        warn,
        obj.metadata.annotations?.[rotateCertsAnnotation],
        obj.status as StatusOfTls | undefined,
      ),
    ),
  ]);
  // spec.tls.issuerRef (or one removed): what keeps cert-manager from issuing, once as a Warning Event.
  const issuerProblem =
    spec.tls?.enabled && tls
      ? await certManagerProblem(kube, ref, spec).catch((e: unknown) => `cannot check cert-manager: ${apiMessage(e)}`)
      : undefined;
  if (issuerProblem && !conditions.some((c) => c.type === 'CertManagerNotReady'))
    await warn('CertManagerNotReady', issuerProblem);
  // Kubernetes remembers what Temporal may forget: the voters and the cluster ID last published.
  const latched = obj.status as
    { clusterID?: string; memberStatuses?: { name: string; learner?: boolean }[] } | undefined;
  const voters = voterEvidence(
    knownVoters(
      etcd,
      (latched?.memberStatuses ?? []).filter((m) => !m.learner).map((m) => m.name),
      pods,
      claims,
    ),
    etcd?.members ?? [],
    pods,
    claims,
    !!spec.pod?.persistentVolumeClaimSpec,
  );
  const clusterId = etcd?.clusterId ?? latched?.clusterID;
  const indices = [
    ...pods.map((p) => memberIndex(ref.name, p.name)),
    ...(etcd?.members ?? []).map((m) => memberIndex(ref.name, m.podName)),
  ];
  const lastIndex = Number((obj.status?.nextMemberIndex as number | undefined) ?? 0) - 1;
  const tookMs = Date.now() - began;
  if (tookMs > slowLookMs) log.info({ cluster: `${ref.namespace}/${ref.name}`, tookMs, parts }, 'slow look');
  return {
    exists: true,
    deleting: !!obj.metadata.deletionTimestamp,
    adopting: obj.metadata.annotations?.[adoptingAnnotation] === 'true',
    uid: obj.metadata.uid,
    generation: obj.metadata.generation ?? 0,
    spec,
    specError,
    pods,
    etcd,
    highestIndex: Math.max(-1, lastIndex, ...indices),
    ...(tls ? { tls: { ...tls, ...(issuerProblem ? { issuerProblem } : {}) } } : {}),
    observedAt: now,
    nodes,
    voters,
    clusterId,
    created: !!latched?.clusterID || pods.length > 0 || claims.length > 0,
    ...missing,
  };
}

/** A look longer than this is logged with its parts' times (the Kubernetes reads, etcd's answers). */
const slowLookMs = 3000;

/** What observeCluster reports when the EtcdCluster is gone. */
export const noCluster = (observedAt: string): Observation => ({
  exists: false,
  deleting: false,
  uid: '',
  generation: 0,
  pods: [],
  etcd: null,
  highestIndex: -1,
  observedAt,
});

/** A member pod as decisions see it. */
export function podView(p: V1Pod): PodView {
  const cs = p.status?.containerStatuses?.[0];
  return {
    name: p.metadata!.name!,
    phase: p.status?.phase ?? 'Pending',
    ready: !!p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
    ip: p.status?.podIP,
    deleting: !!p.metadata?.deletionTimestamp,
    image: p.spec?.containers[0]?.image ?? '',
    restarts: cs?.restartCount ?? 0,
    problem: podProblem(p),
    ageSeconds: Math.round((Date.now() - new Date(p.metadata?.creationTimestamp ?? Date.now()).getTime()) / 1000),
    node: p.spec?.nodeName,
  };
}

/** A look's deadline for each etcd call, and the longer one of its second try when the first got no answer: at the
 *  machine's limits (load 450 on 2 cores, 150 etcds) healthy members answered in 2–3 s, and 43 of 50 serving clusters
 *  read as QuorumLost (phase Failed) for minutes. A member cut off costs one look 10 s instead of 2. */
const lookMs = 2000;
const patientLookMs = 8000;

/** etcd's own view: member list from any member that answers, then a status call per member. */
async function observeEtcd(pods: PodView[]): Promise<Observation['etcd']> {
  const live = pods.filter((p) => p.ip && !p.deleting && p.phase === 'Running');
  // Through the leader when possible: destructive decisions (orphan pods) must not trust a stale member's
  // list. Both reads at once, from every pod: black-holed members must not stretch the observation. On the kept
  // clients: a look every few seconds per cluster must not dial every member anew.
  const firstList = (linearizable: boolean, ms: number) =>
    Promise.any(
      live.map((p) =>
        keptClients.read(clientURLOf(p.ip!), (c) => c.cluster.memberList({ linearizable }, deadline(ms)), ms),
      ),
    ).catch(() => undefined);
  const lists = (ms: number) => Promise.all([firstList(true, ms), firstList(false, ms)]);
  let [leaders, own] = await lists(lookMs);
  // Nobody answered in time: once more, patiently, before this look says no member answers (QuorumLost).
  if (!leaders && !own && live.length) [leaders, own] = await lists(patientLookMs);
  const list = leaders ?? own;
  const linearizable = !!leaders;
  if (!list) return null;
  let clusterId: string | undefined;
  const ipOf = new Map(live.map((p) => [p.name, p.ip!]));
  const nameOf = new Map(list.members.map((m) => [m.ID, memberNameOf(m)]));
  const members: MemberView[] = await Promise.all(
    list.members.map(async (m) => {
      const podName = memberNameOf(m);
      const view: MemberView = {
        id: m.ID,
        name: m.name,
        peerURL: m.peerURLs[0] ?? '',
        podName,
        isLearner: !!m.isLearner,
        healthy: false,
        isLeader: false,
      };
      const ip = ipOf.get(podName);
      if (!ip) return { ...view, error: 'no running pod' };
      try {
        const url = clientURLOf(ip);
        // A member that did not answer in time is asked once more, patiently, before it reads as unhealthy.
        const s = await memberStatus(url, lookMs).catch(() => memberStatus(url, patientLookMs));
        clusterId ??= s.header.cluster_id;
        const { healthy, leaderKnown, alarms, error } = healthOf(s);
        return {
          ...view,
          answered: true,
          leaderKnown,
          healthy,
          isLeader: s.leader === m.ID,
          version: s.version,
          raftIndex: s.raftIndex,
          revision: s.header.revision,
          dbSize: Number(s.dbSize),
          dbSizeInUse: Number(s.dbSizeInUse),
          error,
          ...(alarms.length
            ? {
                alarms: alarms.map((a) => `${a.alarm} on ${nameOf.get(a.memberId) ?? BigInt(a.memberId).toString(16)}`),
              }
            : {}),
        };
      } catch (e) {
        return { ...view, error: (e as Error).message.split('\n')[0].slice(0, 200) };
      }
    }),
  );
  const leader = members.find((m) => m.isLeader);
  return { members, leaderId: leader?.id, clusterId, linearizable };
}

/** Nodes for placement; undefined when the controller may not list them (placement then only reports). */
const observeNodes = (kube: Kube, spec: EtcdClusterSpec | undefined) =>
  nodeViews(kube, { nodeSelector: spec?.pod?.nodeSelector });

/** One node's view; undefined when it is gone or the controller may not list nodes. */
export const readNodeView = async (kube: Kube, name: string): Promise<NodeView | undefined> =>
  (await nodeViews(kube, { name }))?.[0];

/** Nodes (all, or one by name: the controller's role may list nodes and leases, not get them) with their kubelets'
 *  heartbeats; undefined when it may not list nodes. Any other error is an error: the caller waits and looks again. */
async function nodeViews(
  kube: Kube,
  { name, nodeSelector }: { name?: string; nodeSelector?: Record<string, string> },
): Promise<NodeView[] | undefined> {
  const fieldSelector = name ? `metadata.name=${name}` : undefined;
  const [list, leases] = await readNodes(kube, fieldSelector);
  const renewed = new Map((leases?.items ?? []).map((l) => [l.metadata?.name, l.spec?.renewTime]));
  const now = Date.now();
  return list?.items.map((n) => nodeView(n, nodeSelector, renewed.get(n.metadata?.name), now));
}

/** Nodes (all, or by field selector) and their kubelets' heartbeat Leases: one read for concurrent callers. The
 *  list is undefined when the controller may not list nodes. */
const readNodes = (kube: Kube, fieldSelector?: string) =>
  sharedRead(kube, `nodes ${fieldSelector}`, () =>
    Promise.all([
      kube.core.listNode({ fieldSelector }).catch((e) => {
        if (codeOf(e) === 403) return undefined;
        throw e;
      }),
      // The kubelets' heartbeats: a stopped kubelet shows here long before its node turns NotReady.
      kube.coordination.listNamespacedLease({ namespace: nodeLeaseNamespace, fieldSelector }).catch(() => undefined),
    ]),
  );

/** Every node; undefined when the controller may not list them. */
export const listNodes = async (kube: Kube): Promise<V1Node[] | undefined> => (await readNodes(kube))[0]?.items;

const inFlight = new WeakMap<Kube, Map<string, Promise<unknown>>>();

/** One read for every caller that asks while it is in flight (50 clusters' looks at once list the same Nodes): an
 *  answer at most one read older than the ask, never a kept copy. */
function sharedRead<T>(kube: Kube, key: string, read: () => Promise<T>): Promise<T> {
  let reads = inFlight.get(kube);
  if (!reads) inFlight.set(kube, (reads = new Map()));
  const running = reads.get(key) as Promise<T> | undefined;
  if (running) return running;
  const p = read().finally(() => reads.delete(key));
  reads.set(key, p);
  return p;
}

/** A heartbeat (renewed every 10 s by default; the kubelet's clock against ours) older than this, two missed renewals,
 *  counts as a node down before the node controller marks it NotReady (40–50 s by default, longer than a member's
 *  45 s grace: the member would be recreated first). */
export const staleHeartbeatMs = 25_000;

/** Does the spec's nodeSelector select this node? (An empty selector selects every node.) */
export const selectedBy = (n: V1Node, nodeSelector: Record<string, string> = {}) =>
  Object.entries(nodeSelector).every(([k, v]) => n.metadata?.labels?.[k] === v);

/** Could a new member pod land on this node? Ready, not cordoned, untainted for scheduling, matching the nodeSelector.
 *  Ready: its Ready condition is True and its kubelet's heartbeat (when it has one) is fresh. */
export function nodeView(
  n: V1Node,
  nodeSelector: Record<string, string> = {},
  heartbeat?: Date | string,
  nowMs = Date.now(),
): NodeView {
  const labels = n.metadata?.labels ?? {};
  const silentMs = heartbeat === undefined ? 0 : nowMs - new Date(heartbeat).getTime();
  const condition = n.status?.conditions?.find((c) => c.type === 'Ready');
  const notReady =
    silentMs > staleHeartbeatMs
      ? `its kubelet's heartbeat Lease was last renewed ${Math.round(silentMs / 1000)} s ago`
      : condition?.status !== 'True'
        ? `NotReady: its Ready condition is ${condition?.status ?? 'absent'}${condition?.reason ? ` (${condition.reason})` : ''}`
        : undefined;
  const ready = !notReady;
  const tainted = (n.spec?.taints ?? []).some((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute');
  const selected = selectedBy(n, nodeSelector);
  return {
    name: n.metadata!.name!,
    zone: labels['topology.kubernetes.io/zone'],
    schedulable: ready && !n.spec?.unschedulable && !tainted && selected,
    ready,
    ...(notReady ? { notReady } : {}),
  };
}

/** Owned objects that are gone (deleted by hand, say): the cluster workflow applies them again. Up to four reads. */
async function missingOwned(
  kube: Kube,
  ref: ClusterRef,
  spec: EtcdClusterSpec,
): Promise<Pick<Observation, 'ownedMissing' | 'backupToolMissing'>> {
  const backup = !!spec.backup;
  const wanted = clusterObjects(ref, spec.networkPolicy);
  const policy = wanted.find((o) => o.kind === 'NetworkPolicy');
  const [services, budget, tool, netpol] = await Promise.all([
    kube.core.listNamespacedService({ namespace: ref.namespace, labelSelector: ownedSelector(ref.name) }),
    kube.policy.readNamespacedPodDisruptionBudget({ name: ref.name, namespace: ref.namespace }).catch(orAbsent),
    backup
      ? kube.apps.readNamespacedDeployment({ name: backupToolName(ref.name), namespace: ref.namespace }).catch(orAbsent)
      : null,
    policy ? kube.objects.read(policy).catch(orAbsent) : null,
  ]);
  const present = new Set(services.items.map((s) => `Service/${s.metadata!.name}`));
  if (budget) present.add(`PodDisruptionBudget/${ref.name}`);
  if (netpol) present.add(`NetworkPolicy/${ref.name}`);
  const ownedMissing = wanted.map((o) => `${o.kind}/${o.metadata.name}`).filter((k) => !present.has(k));
  const backupToolMissing = backup && (tool === undefined || !present.has(`Service/${backupToolName(ref.name)}`));
  return { ownedMissing, backupToolMissing };
}
