// Kubernetes access for activities: clients, error helpers.
import { asyncLocalStorage } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import {
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  PolicyV1Api,
  setHeaderOptions,
  type KubernetesObject,
  type V1Pod,
} from '@kubernetes/client-node';
import { memberSelector } from '../api/etcdcluster.js';
import { notePods } from './etcd-client.js';

export const fieldManager = 'kube-etcd-controller';

export interface Kube {
  kc: KubeConfig;
  core: CoreV1Api;
  apps: AppsV1Api;
  custom: CustomObjectsApi;
  policy: PolicyV1Api;
  coordination: CoordinationV1Api;
  discovery: DiscoveryV1Api;
  objects: KubernetesObjectApi;
}

export function makeKube(kc: KubeConfig): Kube {
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    policy: kc.makeApiClient(PolicyV1Api),
    coordination: kc.makeApiClient(CoordinationV1Api),
    discovery: kc.makeApiClient(DiscoveryV1Api),
    objects: KubernetesObjectApi.makeApiClient(kc),
  };
}

export const mergePatch = () => setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
export const jsonPatch = () => setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);

/** A pause inside a polling activity; inside an activity it ends early, throwing, once the activity is cancelled. */
export function sleep(ms: number): Promise<void> {
  const ctx = asyncLocalStorage.getStore();
  if (ctx) return ctx.sleep(ms);
  return new Promise<void>((r) => setTimeout(r, ms));
}

/** What one look of a poll found: the result, or what it still waits for. */
export type Look<T> = { done: T } | { waiting: string };
export const done = <T>(value: T): Look<T> => ({ done: value });
export const waiting = (reason: string): Look<never> => ({ waiting: reason });

/** The pause before a wait's next look: `everyMs` for its first 3 s (most waits end within them on a quiet cluster),
 *  then at most once a second. A wait that lasts is one the cluster is slow to satisfy (50 clusters starting at once):
 *  looking 5–10 times a second then only spends the controller's and the API server's CPU on the same answer. */
export const pauseAfter = (waitedMs: number, everyMs: number) => (waitedMs < 3000 ? everyMs : Math.max(everyMs, 1000));

/** Looks (see pauseAfter for how often) until `look` finds its result, heartbeating what it waits for (Temporal shows
 *  it as the activity's last heartbeat). Its deadline is the activity's (the waits table in workflows/activities.ts);
 *  cancellation ends the pause between looks. */
export async function pollUntil<T>(everyMs: number, look: () => Promise<Look<T>>): Promise<T> {
  const start = Date.now();
  for (;;) {
    const found = await look();
    if ('done' in found) return found.done;
    asyncLocalStorage.getStore()?.heartbeat(found.waiting);
    await sleep(pauseAfter(Date.now() - start, everyMs));
  }
}

/** For a read's `.catch`: "not found" reads as undefined; any other error stays an error. */
export function orAbsent(e: unknown): undefined {
  if (isNotFound(e)) return undefined;
  throw e;
}

/** A pod, or undefined when there is none by that name. */
export const readPod = (core: CoreV1Api, namespace: string, name: string): Promise<V1Pod | undefined> =>
  core.readNamespacedPod({ name, namespace }).catch(orAbsent);

/** An error's first line: what a heartbeat or a status message has room for. */
export const firstLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0];

export const codeOf = (e: unknown) => (e as { code?: number }).code;
export const isNotFound = (e: unknown) => codeOf(e) === 404;
export const isConflict = (e: unknown) => codeOf(e) === 409;

/** Runs fn; "already exists" counts as success (activities are retried). A refusal fails the step at once. */
export async function createIfAbsent(fn: () => Promise<unknown>): Promise<'created' | 'exists'> {
  try {
    await fn();
    return 'created';
  } catch (e) {
    if (isConflict(e)) return 'exists';
    throw refusal(e, 'create') ?? e;
  }
}

/** A refusal (400 bad request, 403 forbidden by RBAC or admission, 422 invalid or over quota) is the same on every
 *  retry: a non-retryable failure with the API server's message. */
function refusal(e: unknown, what: string): ApplicationFailure | undefined {
  const code = codeOf(e);
  if (code !== 400 && code !== 403 && code !== 422) return undefined;
  return ApplicationFailure.nonRetryable(
    `Kubernetes refused the ${what} (${code}): ${apiMessage(e)}`,
    `KubernetesRefused${code}`,
  );
}

/** What server-side apply needs of a desired object: its type and where it lives. */
export type Applied = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; ownerReferences?: { uid: string }[] };
};

/** Server-side apply of an owned object's desired state (kind, apiVersion, name and namespace set): creates it when
 *  absent, brings the fields we set back when they drifted, leaves fields others own (e.g. clusterIP). Forced only
 *  where the object is ours: one of the same name without our owner reference (someone else's, or a legacy cluster's
 *  during adoption) is left as it is. A refusal fails the step at once, like a refused create. */
export async function apply(kube: Kube, obj: KubernetesObject & Applied): Promise<'applied' | 'not ours'> {
  const uid = obj.metadata.ownerReferences?.[0]?.uid;
  const existing = await kube.objects.read(obj).catch(orAbsent);
  if (existing && uid && !existing.metadata?.ownerReferences?.some((o) => o.uid === uid)) return 'not ours';
  try {
    await kube.objects.patch(obj, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply);
    return 'applied';
  } catch (e) {
    throw refusal(e, 'apply') ?? e;
  }
}

/** Runs fn; "not found" counts as success. */
export async function deleteIfPresent(fn: () => Promise<unknown>): Promise<'deleted' | 'absent'> {
  try {
    await fn();
    return 'deleted';
  } catch (e) {
    if (isNotFound(e)) return 'absent';
    throw e;
  }
}

/** A readable message from an ApiException (whose body is often the raw Status JSON). */
export function apiMessage(e: unknown): string {
  const body = (e as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      return (JSON.parse(body) as { message?: string }).message ?? body;
    } catch {
      return body;
    }
  }
  if (body && typeof body === 'object' && 'message' in body) return String((body as { message: unknown }).message);
  return (e as Error).message;
}

/** A pod that runs and has an address, not being deleted: one etcd clients can talk to. */
export const runsWithAddress = (p: V1Pod) =>
  !!p.status?.podIP && p.status.phase === 'Running' && !p.metadata?.deletionTimestamp;

/** The cluster's member pods that run and have an address (what etcd clients can talk to). */
export async function runningMemberPods(core: CoreV1Api, ref: { namespace: string; name: string }): Promise<V1Pod[]> {
  const pods = await core.listNamespacedPod({
    namespace: ref.namespace,
    labelSelector: memberSelector(ref.name),
  });
  const running = pods.items.filter(runsWithAddress);
  await notePods(core, running); // TLS members: their client certificate, for clientURLOf and withEtcd
  return running;
}

/** Why a pod does not run: unschedulable, or its container's waiting reason (ErrImagePull: image … not found). */
export function podProblem(p: V1Pod): string | undefined {
  const unschedulable = p.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
  if (unschedulable) return `unschedulable: ${unschedulable.message ?? unschedulable.reason}`;
  const waiting = p.status?.containerStatuses?.[0]?.state?.waiting;
  return waiting && waiting.reason !== 'ContainerCreating' && waiting.reason !== 'PodInitializing'
    ? `${waiting.reason}: ${waiting.message ?? ''}`.trim()
    : undefined;
}
