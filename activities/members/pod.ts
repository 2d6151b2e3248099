// A member's pod: created (never two of one member), waited for until it runs, deleted and waited for until gone.
import { ApplicationFailure } from '@temporalio/common';
import {
  initialClusterAnnotation,
  tlsAnnotation,
  type ClusterRef,
  type EtcdClusterSpec,
  type StatusOfTls,
} from '../../api/etcdcluster.js';
import { initialClusterIn } from '../../api/names.js';
import type { Deps } from '../deps.js';
import type { V1Pod } from '@kubernetes/client-node';
import {
  createIfAbsent,
  deleteIfPresent,
  done,
  mergePatch,
  pollUntil,
  readPod,
  waiting,
  type Kube,
  type Look,
} from '../kube.js';
import { memberPod, type MemberPodArgs, type MemberStart } from '../member-pod.js';
import { podView, readNodeView } from '../cluster/observe.js';
import { readCluster } from '../cluster/read.js';
import { memberTls } from '../tls.js';
import { ensureMemberClaim } from './claim.js';
import { holdShellFor } from './hold-shell.js';
import { restoreTokenSecret } from '../backups/tool.js';

/** Creates the member's pod (and claim); an existing pod of the same name is left as it is. */
export function createMemberPod(d: Deps, ...pod: MemberPodArgs): Promise<string> {
  return createPod(d, pod);
}

/** Join, step 1: the pod of a member about to join (and its claim), its etcd held until releaseJoiningPod. */
export async function createJoiningPod(
  d: Deps,
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  member: string,
): Promise<string> {
  return createPod(d, [ref, spec, member, '', 'existing'], { held: true, shell: await holdShellFor(d.kube, spec) });
}

async function createPod({ kube, log }: Deps, pod: MemberPodArgs, start?: MemberStart): Promise<string> {
  const [ref, spec, member, initialCluster, state, restore] = pod;
  if (spec.pod?.persistentVolumeClaimSpec) await ensureMemberClaim(kube, ref, spec, member);
  // The same name being deleted: wait for it to go, never two pods of one member.
  const existing = await pollUntil(1000, async () => {
    const p = await readPod(kube.core, ref.namespace, member);
    return p?.metadata?.deletionTimestamp ? waiting('waiting for the old pod to finish terminating') : done(p);
  });
  if (existing) return 'exists';
  // A seed's init downloads with the token its restore source stored; one chosen before that (an older
  // controller) downloads from this cluster's own tool.
  if (restore) await restoreTokenSecret(kube, ref);
  const status = (await readCluster(kube, ref))?.status as StatusOfTls | undefined;
  const tls = await memberTls(kube.core, ref, spec, [member], status);
  await createIfAbsent(() =>
    kube.core.createNamespacedPod({
      namespace: ref.namespace,
      body: memberPod(ref, spec, member, initialCluster, state, restore, start, tls),
    }),
  );
  log.info(
    { cluster: `${ref.namespace}/${ref.name}`, member, state, held: start?.held ? start.shell : false },
    'member pod created',
  );
  return 'created';
}

/** Join, step 2: waits until the held pod runs (its image pulled, etcd waiting for release) and its address is in
 *  the headless Service's EndpointSlices, where the cluster DNS answers its name from. Returns the address. The
 *  EndpointSlices are read only once the pod runs. */
export async function waitHeldPodStarted({ kube }: Deps, ref: ClusterRef, member: string): Promise<string> {
  return pollUntil(100, async () => {
    const p = await readPod(kube.core, ref.namespace, member);
    const started = startingPodLook(member, p);
    return 'waiting' in started ? started : addressLook(member, p, await addressed(kube, ref));
  });
}

/** The pod addresses the headless Service's EndpointSlices list, by hostname (member). */
export async function addressed(kube: Kube, ref: ClusterRef): Promise<Map<string, string[]>> {
  const slices = await kube.discovery.listNamespacedEndpointSlice({
    namespace: ref.namespace,
    labelSelector: `kubernetes.io/service-name=${ref.name}`,
  });
  const byHost = new Map<string, string[]>();
  for (const e of slices.items.flatMap((s) => s.endpoints ?? []))
    if (e.hostname) byHost.set(e.hostname, [...(byHost.get(e.hostname) ?? []), ...e.addresses]);
  return byHost;
}

/** One look at a pod's DNS name (undefined: no pod): its address once the EndpointSlices list it. */
export function addressLook(member: string, p: V1Pod | undefined, listed: Map<string, string[]>): Look<string> {
  if (!p) throw ApplicationFailure.nonRetryable(`pod ${member} disappeared while starting`, 'PodGone');
  const ip = p.status?.podIP;
  if (!ip) return waiting(podView(p).problem ?? `pod ${member} has no address yet`);
  return listed.get(member)?.includes(ip)
    ? done(ip)
    : waiting(`address ${ip} of ${member} not yet in the EndpointSlices`);
}

/** Join, step 4 (after addLearner): lets the held pod's etcd start with this --initial-cluster. */
export async function releaseJoiningPod(
  { kube }: Deps,
  ref: ClusterRef,
  member: string,
  initialCluster: string,
): Promise<string> {
  const p = await readPod(kube.core, ref.namespace, member);
  if (!p) throw ApplicationFailure.nonRetryable(`pod ${member} disappeared before its etcd was released`, 'PodGone');
  return releaseHeldPod(kube, p, initialCluster);
}

/** Sets a held pod's initial-cluster annotation (in its scheme), which releases its etcd. Once set it is kept: etcd
 *  may have started with it. */
export async function releaseHeldPod(kube: Kube, p: V1Pod, initialCluster: string): Promise<string> {
  if (p.metadata?.annotations?.[initialClusterAnnotation]) return 'released before';
  const value = initialClusterIn(initialCluster, p.metadata?.annotations?.[tlsAnnotation] === 'true');
  await kube.core.patchNamespacedPod(
    {
      name: p.metadata!.name!,
      namespace: p.metadata!.namespace!,
      body: { metadata: { annotations: { [initialClusterAnnotation]: value } } },
    },
    mergePatch(),
  );
  return 'released';
}

/** Waits until the member's container runs and has an address (not readiness: a learner may not be ready). */
export async function waitMemberPodRunning({ kube }: Deps, ref: ClusterRef, member: string): Promise<string> {
  return pollUntil(200, async () => startingPodLook(member, await readPod(kube.core, ref.namespace, member)));
}

/** One look at a starting member's pod (undefined: none): its address once it runs, else why not yet. A pod gone
 *  while starting fails the wait at once, non-retryable. */
export function startingPodLook(member: string, p: V1Pod | undefined): Look<string> {
  if (!p) throw ApplicationFailure.nonRetryable(`pod ${member} disappeared while starting`, 'PodGone');
  const v = podView(p);
  return v.phase === 'Running' && v.ip ? done(v.ip) : waiting(v.problem ?? `pod ${member} is ${v.phase}`);
}

/** Deletes the member's pod and waits until it is gone. `unlessNodeDown`: refuses (non-retryable) when the pod's node
 *  is not ready — a force-deleted pod may still run there, and its successor would start on the same data (issue 15). */
export async function deleteMemberPod(
  { kube }: Deps,
  ref: ClusterRef,
  member: string,
  opts: { force?: boolean; unlessNodeDown?: boolean } = {},
): Promise<void> {
  if (opts.unlessNodeDown) await refuseIfNodeDown(kube, ref, member);
  const remove = (body?: { gracePeriodSeconds: number }) =>
    deleteIfPresent(() =>
      kube.core.deleteNamespacedPod({ name: member, namespace: ref.namespace, ...(body ? { body } : {}) }),
    );
  await remove(opts.force ? { gracePeriodSeconds: 0 } : undefined);
  const forceAt = Date.now() + 30_000;
  let forced = false;
  await pollUntil(200, async () => {
    if (!(await readPod(kube.core, ref.namespace, member))) return done(undefined);
    // A pod on a node that stopped answering never finishes terminating: force it after a while.
    if (!forced && Date.now() > forceAt) {
      forced = true;
      await remove({ gracePeriodSeconds: 0 });
    }
    return waiting(`waiting for pod ${member} to terminate`);
  });
}

async function refuseIfNodeDown(kube: Kube, ref: ClusterRef, member: string): Promise<void> {
  const node = (await readPod(kube.core, ref.namespace, member))?.spec?.nodeName;
  const view = node ? await readNodeView(kube, node) : undefined;
  if (view?.ready !== false) return;
  throw ApplicationFailure.nonRetryable(
    `not deleting pod ${member}: its node ${node} is not ready (${view.notReady ?? 'NotReady'}), where its container ` +
      'may still run on the same data; the cluster waits for the node',
    'MemberNodeNotReady',
  );
}
