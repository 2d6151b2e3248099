// Activities on Kubernetes objects of one cluster: observe, services, member pods and claims,
// finalizer, status, events, destroy. Each is idempotent: safe to run again after a crash.
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Logger } from 'pino';
import { knownVoters, voterEvidence, type ClaimView } from '../workflows/evidence.js';
import { backupToolName, clientServiceName, memberIndex, memberNameOf, metricsServiceName } from '../api/names.js';
import type { MemberView, NodeView, Observation, PodView } from '../workflows/types.js';
import { clientURLOf, deadline, healthOf, memberStatus, notePods, withEtcd } from './etcd-client.js';
import { tlsActivities } from './tls.js';
import { clusterObjects } from './owned.js';
import {
  apiMessage,
  apply,
  codeOf,
  createIfAbsent,
  deleteIfPresent,
  done,
  fieldManager,
  isNotFound,
  jsonPatch,
  mergePatch,
  podProblem,
  pollUntil,
  readPod,
  sleep,
  type Kube,
  waiting,
} from './kube.js';
import {
  dataClaimName,
  etcdDefaults,
  flagsRefusal,
  memberClaim,
  optionsDrift,
  memberPod,
  type Bootstrap,
  type RestoreFrom,
} from './member-pod.js';
import {
  EtcdClusterStatus,
  adoptingAnnotation,
  apiVersion,
  bootstrapGate,
  finalizer,
  group,
  kind,
  memberLabel,
  memberSelector,
  optionsAnnotation,
  ownedSelector,
  plural,
  type ClusterRef,
  type EtcdClusterSpec,
  version,
} from '../api/etcdcluster.js';
import { minorVersion } from '../workflows/versions.js';

export interface EtcdClusterObject {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    generation?: number;
    deletionTimestamp?: string;
    finalizers?: string[];
    annotations?: Record<string, string>;
  };
  spec?: Partial<EtcdClusterSpec>;
  status?: Record<string, unknown>;
}

export function clusterActivities(kube: Kube, log: Logger) {
  const { core, custom } = kube;
  const selector = (name: string) => memberSelector(name);

  async function readCluster(ref: Pick<ClusterRef, 'namespace' | 'name'>): Promise<EtcdClusterObject | undefined> {
    try {
      return (await custom.getNamespacedCustomObject({
        group,
        version,
        plural,
        namespace: ref.namespace,
        name: ref.name,
      })) as EtcdClusterObject;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async function memberPods(ref: Pick<ClusterRef, 'namespace' | 'name'>): Promise<V1Pod[]> {
    const list = await core.listNamespacedPod({ namespace: ref.namespace, labelSelector: selector(ref.name) });
    const pods = list.items.filter((p) => memberIndex(ref.name, p.metadata!.name!) >= 0);
    await notePods(core, pods); // TLS members: dialled with the controller's certificate
    return pods;
  }

  function podView(p: V1Pod): PodView {
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

  /** Nodes for placement; undefined when the controller may not list them (placement then only reports). */
  async function observeNodes(spec: EtcdClusterSpec | undefined): Promise<NodeView[] | undefined> {
    const list = await core.listNode().catch((e) => {
      if (codeOf(e) === 403) return undefined;
      throw e;
    });
    return list?.items.map((n) => nodeView(n, spec?.pod?.nodeSelector));
  }

  /** etcd's own view: member list from any member that answers, then a status call per member. */
  async function observeEtcd(pods: PodView[]): Promise<Observation['etcd']> {
    const live = pods.filter((p) => p.ip && !p.deleting && p.phase === 'Running');
    // Through the leader when possible: destructive decisions (orphan pods) must not trust a stale member's
    // list. Both reads at once, from every pod: black-holed members must not stretch the observation.
    const firstList = (linearizable: boolean) =>
      Promise.any(
        live.map((p) =>
          withEtcd([clientURLOf(p.ip!)], (c) => c.cluster.memberList({ linearizable }, deadline(2000)), 2000),
        ),
      ).catch(() => undefined);
    const [leaders, own] = await Promise.all([firstList(true), firstList(false)]);
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
          const s = await memberStatus(clientURLOf(ip));
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
                  alarms: alarms.map(
                    (a) => `${a.alarm} on ${nameOf.get(a.memberId) ?? BigInt(a.memberId).toString(16)}`,
                  ),
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

  async function memberClaims(ref: Pick<ClusterRef, 'namespace' | 'name'>, uid: string): Promise<ClaimView[]> {
    const list = await core.listNamespacedPersistentVolumeClaim({
      namespace: ref.namespace,
      labelSelector: selector(ref.name),
    });
    return list.items.flatMap((c) => {
      const member = c.metadata?.labels?.[memberLabel];
      const ours = !!member && c.metadata!.name === dataClaimName(member) && ownedBy(c.metadata?.ownerReferences, uid);
      return ours ? [{ member, deleting: !!c.metadata?.deletionTimestamp, lost: c.status?.phase === 'Lost' }] : [];
    });
  }

  /** Owned objects that are gone (deleted by hand, say): the cluster workflow applies them again. Three reads. */
  async function missingOwned(
    ref: ClusterRef,
    backup: boolean,
  ): Promise<Pick<Observation, 'ownedMissing' | 'backupToolMissing'>> {
    const absent = (e: unknown) => {
      if (isNotFound(e)) return undefined;
      throw e;
    };
    const [services, budget, tool] = await Promise.all([
      core.listNamespacedService({ namespace: ref.namespace, labelSelector: ownedSelector(ref.name) }),
      kube.policy.readNamespacedPodDisruptionBudget({ name: ref.name, namespace: ref.namespace }).catch(absent),
      backup
        ? kube.apps.readNamespacedDeployment({ name: backupToolName(ref.name), namespace: ref.namespace }).catch(absent)
        : null,
    ]);
    const present = new Set(services.items.map((s) => `Service/${s.metadata!.name}`));
    if (budget) present.add(`PodDisruptionBudget/${ref.name}`);
    const ownedMissing = clusterObjects(ref)
      .map((o) => `${o.kind}/${o.metadata.name}`)
      .filter((k) => !present.has(k));
    const backupToolMissing = backup && (tool === undefined || !present.has(`Service/${backupToolName(ref.name)}`));
    return { ownedMissing, backupToolMissing };
  }

  const readClaim = (ref: ClusterRef, member: string) =>
    core.readNamespacedPersistentVolumeClaim({ name: dataClaimName(member), namespace: ref.namespace }).catch((e) => {
      if (isNotFound(e)) return undefined;
      throw e;
    });

  /** The member's claim, adopted by owner UID only: a claim of the same name left by another cluster (or by
   *  nobody) holds someone else's data, and a member started on it would join with the wrong history. */
  async function ensureMemberClaim(ref: ClusterRef, spec: EtcdClusterSpec, member: string): Promise<void> {
    const body = memberClaim(ref, spec, member);
    await createIfAbsent(() => core.createNamespacedPersistentVolumeClaim({ namespace: ref.namespace, body }));
    const claim = await readClaim(ref, member);
    if (!claim) throw new Error(`claim ${dataClaimName(member)} disappeared right after it was created`);
    if (!ownedBy(claim.metadata?.ownerReferences, ref.uid)) {
      const owners =
        (claim.metadata?.ownerReferences ?? []).map((o) => `${o.kind} ${o.name} (uid ${o.uid})`).join(', ') ||
        'no owner';
      throw ApplicationFailure.nonRetryable(
        `claim ${ref.namespace}/${dataClaimName(member)} exists but is not this cluster's ` +
          `(uid ${ref.uid}; it has ${owners}): its data is not adopted by name; delete or rename it if it is not needed`,
        'ClaimNotOurs',
      );
    }
  }

  return {
    /** Everything a decision needs: the spec, member pods, and etcd's membership and health. */
    async observeCluster(ref: Pick<ClusterRef, 'namespace' | 'name'>): Promise<Observation> {
      const obj = await readCluster(ref);
      const now = new Date().toISOString();
      if (!obj)
        return {
          exists: false,
          deleting: false,
          uid: '',
          generation: 0,
          pods: [],
          etcd: null,
          highestIndex: -1,
          observedAt: now,
        };
      const owned = (await memberPods(ref)).filter((p) =>
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
      const tlsRefusedBefore = !!(obj.status?.conditions as { type: string }[] | undefined)?.some(
        (c) => c.type === 'TLSSwitchRefused',
      );
      const [etcd, nodes, claims, missing, tls] = await Promise.all([
        observeEtcd(pods),
        observeNodes(spec),
        memberClaims(ref, obj.metadata.uid),
        missingOwned({ ...ref, uid: obj.metadata.uid }, !!spec.backup),
        tlsActivities(core).observeTls(ref, spec, owned, tlsRefusedBefore, (reason, message) =>
          recordEvent(kube, { ...ref, uid: obj.metadata.uid! }, 'Warning', reason, message, log),
        ),
      ]);
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
        ...(tls ? { tls } : {}),
        observedAt: now,
        nodes,
        voters,
        clusterId,
        created: !!latched?.clusterID || pods.length > 0 || claims.length > 0,
        ...missing,
      };
    },

    async ensureFinalizer(ref: ClusterRef): Promise<void> {
      const obj = await readCluster(ref);
      if (
        !obj ||
        obj.metadata.uid !== ref.uid ||
        obj.metadata.deletionTimestamp ||
        obj.metadata.finalizers?.includes(finalizer)
      )
        return;
      await custom.patchNamespacedCustomObject(
        {
          group,
          version,
          plural,
          namespace: ref.namespace,
          name: ref.name,
          body: { metadata: { finalizers: [...(obj.metadata.finalizers ?? []), finalizer] } },
        },
        mergePatch(),
      );
    },

    async removeFinalizer(ref: ClusterRef): Promise<void> {
      const obj = await readCluster(ref);
      if (!obj || obj.metadata.uid !== ref.uid) return;
      const idx = obj.metadata.finalizers?.indexOf(finalizer) ?? -1;
      if (idx < 0) return;
      await custom
        .patchNamespacedCustomObject(
          {
            group,
            version,
            plural,
            namespace: ref.namespace,
            name: ref.name,
            body: [
              { op: 'test', path: `/metadata/finalizers/${idx}`, value: finalizer },
              { op: 'remove', path: `/metadata/finalizers/${idx}` },
            ],
          },
          jsonPatch(),
        )
        .catch((e) => {
          if (!isNotFound(e)) throw e;
        });
    },

    /** The headless service behind member DNS names, the client service on 2379, the metrics service and the
     *  disruption budget (builders: owned.ts), applied: a deleted or edited one is brought back. */
    async ensureServices(ref: ClusterRef): Promise<void> {
      for (const obj of clusterObjects(ref)) {
        if ((await apply(kube, obj)) === 'not ours')
          log.warn(
            { cluster: `${ref.namespace}/${ref.name}`, object: `${obj.kind}/${obj.metadata.name}` },
            'exists but is not ours: left as it is',
          );
      }
    },

    /** Creates the member's pod (and claim); an existing pod of the same name is left as it is. */
    async createMemberPod(
      ref: ClusterRef,
      spec: EtcdClusterSpec,
      member: string,
      initialCluster: string,
      state: 'new' | 'existing',
      restore?: RestoreFrom,
    ): Promise<string> {
      if (spec.pod?.persistentVolumeClaimSpec) await ensureMemberClaim(ref, spec, member);
      // The same name being deleted: wait for it to go, never two pods of one member.
      const existing = await pollUntil(1000, async () => {
        const p = await readPod(core, ref.namespace, member);
        return p?.metadata?.deletionTimestamp ? waiting('waiting for the old pod to finish terminating') : done(p);
      });
      if (existing) return 'exists';
      const tls = await tlsActivities(core).memberTls(ref, spec, [member]);
      await createIfAbsent(() =>
        core.createNamespacedPod({
          namespace: ref.namespace,
          body: memberPod(ref, spec, member, initialCluster, state, restore, undefined, tls),
        }),
      );
      log.info({ cluster: `${ref.namespace}/${ref.name}`, member, state }, 'member pod created');
      return 'created';
    },

    /**
     * Static bootstrap of a brand-new cluster: every initial member's pod (state new, the full
     * --initial-cluster, a fresh token) is created held by a scheduling gate, and the gates come off
     * only once all exist. A gated pod never ran, so until a gate is off any missing member can be
     * (re)created safely. Once one is off, a missing member may have run and lost its data (emptyDir):
     * it is never recreated with state new (same member ID, empty log: a split); it is returned as lost
     * and the plan removes and re-adds it by a learner join. Refuses over any other pod, claim or a latched cluster ID.
     */
    async bootstrapMembers(
      ref: ClusterRef,
      spec: EtcdClusterSpec,
      members: string[],
      initialCluster: string,
      bootstrap: Bootstrap,
    ): Promise<{ started: string[]; lost: string[] }> {
      const refuse = (message: string, type = 'BootstrapRefused') => ApplicationFailure.nonRetryable(message, type);
      const obj = await readCluster(ref);
      if (!obj || obj.metadata.uid !== ref.uid || obj.metadata.deletionTimestamp) {
        throw refuse(`${ref.namespace}/${ref.name} is gone or being deleted`, 'ClusterGone');
      }
      const latched = obj.status?.clusterID as string | undefined;
      if (latched)
        throw refuse(
          `status.clusterID ${latched} is latched: the cluster was created before; no static bootstrap over it`,
        );
      const owned = (p: V1Pod) => !!p.metadata?.ownerReferences?.some((o) => o.uid === ref.uid);
      const gated = (p: V1Pod) => !!p.spec?.schedulingGates?.some((g) => g.name === bootstrapGate);
      for (;;) {
        const pods = (await memberPods(ref)).filter(owned);
        const claimed = (await memberClaims(ref, ref.uid)).map((c) => c.member);
        const others = [...new Set([...pods.map((p) => p.metadata!.name!), ...claimed])].filter(
          (n) => !members.includes(n),
        );
        if (others.length)
          throw refuse(`member pods or claims exist (${others.join(', ')}): no static bootstrap over them`);
        const released = pods.some((p) => !gated(p));
        const live = pods.filter((p) => !p.metadata?.deletionTimestamp);
        if (!released) {
          // A gated pod being deleted never ran: wait for it to go, then create it again.
          if (live.length < pods.length) {
            Context.current().heartbeat('waiting for a gated pod to finish terminating');
            await sleep(200);
            continue;
          }
          const have = new Set(live.map((p) => p.metadata!.name!));
          const tls = await tlsActivities(core).memberTls(ref, spec, members);
          await Promise.all(
            members
              .filter((m) => !have.has(m))
              .map(async (m) => {
                if (spec.pod?.persistentVolumeClaimSpec) await ensureMemberClaim(ref, spec, m);
                const body = memberPod(ref, spec, m, initialCluster, 'new', undefined, bootstrap, tls);
                await createIfAbsent(() => core.createNamespacedPod({ namespace: ref.namespace, body }));
              }),
          );
          if (have.size < members.length) continue; // look again: all gated pods must exist before any is released
        }
        await Promise.all(
          live
            .filter(gated)
            .map((p) =>
              core.patchNamespacedPod(
                { name: p.metadata!.name!, namespace: ref.namespace, body: { spec: { schedulingGates: null } } },
                mergePatch(),
              ),
            ),
        );
        const started = live
          .map((p) => p.metadata!.name!)
          .filter((n) => members.includes(n))
          .sort();
        const lost = members.filter((m) => !started.includes(m));
        if (live.some(gated)) {
          await recordEvent(
            kube,
            ref,
            'Normal',
            'MembersBootstrapped',
            `started ${started.join(', ')} together (static bootstrap, ` +
              `initial cluster token ${bootstrap.token})${lost.length ? `; lost before release: ${lost.join(', ')}` : ''}`,
            log,
          );
        }
        return { started, lost };
      }
    },

    /** Deletes the member's pod and waits until it is gone. */
    async deleteMemberPod(ref: ClusterRef, member: string, opts: { force?: boolean } = {}): Promise<void> {
      await deleteIfPresent(() =>
        core.deleteNamespacedPod({
          name: member,
          namespace: ref.namespace,
          ...(opts.force ? { body: { gracePeriodSeconds: 0 } } : {}),
        }),
      );
      const forceAt = Date.now() + 30_000;
      let forced = false;
      await pollUntil(200, async () => {
        if (!(await readPod(core, ref.namespace, member))) return done(undefined);
        // A pod on a node that stopped answering never finishes terminating: force it after a while.
        if (!forced && Date.now() > forceAt) {
          forced = true;
          const body = { gracePeriodSeconds: 0 };
          await deleteIfPresent(() => core.deleteNamespacedPod({ name: member, namespace: ref.namespace, body }));
        }
        return waiting(`waiting for pod ${member} to terminate`);
      });
    },

    /** Deletes the member's claim, only if this cluster owns it (by UID). */
    async deleteMemberClaim(ref: ClusterRef, member: string): Promise<void> {
      const claim = await readClaim(ref, member);
      if (!claim || !ownedBy(claim.metadata?.ownerReferences, ref.uid)) return;
      await deleteIfPresent(() =>
        core.deleteNamespacedPersistentVolumeClaim({
          name: dataClaimName(member),
          namespace: ref.namespace,
          body: { preconditions: { uid: claim.metadata!.uid } },
        }),
      );
    },

    /** Waits until the member's container runs and has an address (not readiness: a learner may not be ready). */
    async waitMemberPodRunning(ref: ClusterRef, member: string): Promise<string> {
      return pollUntil(200, async () => {
        const p = await readPod(core, ref.namespace, member);
        if (!p) throw ApplicationFailure.nonRetryable(`pod ${member} disappeared while starting`, 'PodGone');
        const v = podView(p);
        return v.phase === 'Running' && v.ip ? done(v.ip) : waiting(v.problem ?? `pod ${member} is ${v.phase}`);
      });
    },

    async publishStatus(ref: ClusterRef, status: EtcdClusterStatus): Promise<void> {
      try {
        await custom.patchNamespacedCustomObjectStatus(
          { group, version, plural, namespace: ref.namespace, name: ref.name, body: { status } },
          mergePatch(),
        );
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    },

    async recordEvent(ref: ClusterRef, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
      await recordEvent(kube, ref, type, reason, message, log);
    },

    /** Deletes everything the cluster owns: pods first (waiting for them), then services and claims. */
    async deleteClusterResources(ref: ClusterRef): Promise<string> {
      const sel = selector(ref.name);
      const pods = (await core.listNamespacedPod({ namespace: ref.namespace, labelSelector: sel })).items.filter((p) =>
        p.metadata?.ownerReferences?.some((o) => o.uid === ref.uid),
      );
      for (const p of pods)
        await deleteIfPresent(() => core.deleteNamespacedPod({ name: p.metadata!.name!, namespace: ref.namespace }));
      for (let i = 0; ; i++) {
        const left = (await core.listNamespacedPod({ namespace: ref.namespace, labelSelector: sel })).items.filter(
          (p) => p.metadata?.ownerReferences?.some((o) => o.uid === ref.uid),
        );
        if (!left.length) break;
        if (i === 30)
          for (const p of left)
            await deleteIfPresent(() =>
              core.deleteNamespacedPod({
                name: p.metadata!.name!,
                namespace: ref.namespace,
                body: { gracePeriodSeconds: 0 },
              }),
            );
        Context.current().heartbeat(`waiting for ${left.length} pod(s) to terminate`);
        await sleep(1000);
      }
      for (const name of [ref.name, clientServiceName(ref.name), metricsServiceName(ref.name)]) {
        const svc = await core.readNamespacedService({ name, namespace: ref.namespace }).catch(() => undefined);
        if (svc?.metadata?.ownerReferences?.some((o) => o.uid === ref.uid))
          await deleteIfPresent(() => core.deleteNamespacedService({ name, namespace: ref.namespace }));
      }
      const claims = (
        await core.listNamespacedPersistentVolumeClaim({ namespace: ref.namespace, labelSelector: sel })
      ).items.filter((c) => c.metadata?.ownerReferences?.some((o) => o.uid === ref.uid));
      for (const c of claims)
        await deleteIfPresent(() =>
          core.deleteNamespacedPersistentVolumeClaim({ name: c.metadata!.name!, namespace: ref.namespace }),
        );
      return `deleted ${pods.length} pod(s), 2 service(s), ${claims.length} claim(s)`;
    },
  };
}

export async function recordEvent(
  kube: Kube,
  ref: ClusterRef,
  type: 'Normal' | 'Warning',
  reason: string,
  message: string,
  log: Logger,
): Promise<void> {
  const t = new Date();
  log.info({ cluster: `${ref.namespace}/${ref.name}`, event: reason, type }, message);
  await kube.core
    .createNamespacedEvent({
      namespace: ref.namespace,
      body: {
        metadata: { generateName: `${ref.name}.`, namespace: ref.namespace },
        involvedObject: {
          apiVersion,
          kind,
          name: ref.name,
          namespace: ref.namespace,
          uid: ref.uid,
        },
        type,
        reason,
        message: message.slice(0, 1000),
        source: { component: fieldManager },
        firstTimestamp: t,
        lastTimestamp: t,
        count: 1,
        reportingComponent: fieldManager,
        reportingInstance: fieldManager,
      },
    })
    .catch((e) => log.warn({ err: apiMessage(e) }, 'event not recorded'));
}

/** Could a new member pod land on this node? Ready, not cordoned, untainted for scheduling, matching the nodeSelector. */
export function nodeView(n: V1Node, nodeSelector: Record<string, string> = {}): NodeView {
  const labels = n.metadata?.labels ?? {};
  const ready = n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  const tainted = (n.spec?.taints ?? []).some((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute');
  const selected = Object.entries(nodeSelector).every(([k, v]) => labels[k] === v);
  return {
    name: n.metadata!.name!,
    zone: labels['topology.kubernetes.io/zone'],
    schedulable: ready && !n.spec?.unschedulable && !tainted && selected,
  };
}

/** What the API schema cannot check: settings the controller cannot run. Empty when fine. */
export function validateSpec(spec: EtcdClusterSpec): string | undefined {
  const { major, minor } = minorVersion(spec.version ?? '');
  if (major !== 3 || !(minor >= 4))
    return `spec.version ${spec.version} is not supported: use etcd 3.4, 3.5 or 3.6 (e.g. 3.5.33)`;
  return validateEtcdOptions(spec.etcd ?? {});
}

/** The maintenance flags etcd would refuse at start (a member that cannot start is worse than a held spec). */
function validateEtcdOptions(o: NonNullable<EtcdClusterSpec['etcd']>): string | undefined {
  const mode = o.autoCompactionMode ?? etcdDefaults.autoCompactionMode;
  if (mode !== 'periodic' && mode !== 'revision')
    return `spec.etcd.autoCompactionMode ${mode} is not supported: use periodic or revision`;
  const retention = String(o.autoCompactionRetention ?? etcdDefaults.autoCompactionRetention);
  // etcd reads a bare number as hours in periodic mode; "0" turns compaction off.
  const ok =
    mode === 'revision'
      ? /^\d+$/.test(retention)
      : /^\d+$/.test(retention) || /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(retention);
  if (!ok)
    return `spec.etcd.autoCompactionRetention ${retention} is not valid for ${mode} compaction: use ${mode === 'revision' ? 'a number of revisions to keep, e.g. 10000' : 'a duration such as 5m or 1h (a bare number means hours; 0 turns compaction off)'}`;
  const q = o.quotaBackendBytes;
  if (q !== undefined && (!Number.isSafeInteger(q) || q < 1 << 20 || q > 8 * 2 ** 30)) {
    return `spec.etcd.quotaBackendBytes ${q} is out of range: use a number of bytes from 1048576 (1 MiB) to 8589934592 (8 GiB, etcd's suggested maximum); leave it out for etcd's 2 GiB default`;
  }
  if (o.defragFreeBytes !== undefined && !(Number.isSafeInteger(o.defragFreeBytes) && o.defragFreeBytes >= 0)) {
    return `spec.etcd.defragFreeBytes ${o.defragFreeBytes} is not valid: use a number of bytes, e.g. 268435456 (256 MiB)`;
  }
  if (o.defragFreeRatio !== undefined && !(o.defragFreeRatio >= 0 && o.defragFreeRatio <= 1)) {
    return `spec.etcd.defragFreeRatio ${o.defragFreeRatio} is not valid: use a share of the file between 0 and 1, e.g. 0.5`;
  }
  if (o.flags) return flagsRefusal(o.flags);
  return undefined;
}

const ownedBy = (owners: { uid?: string }[] | undefined, uid: string) => !!owners?.some((o) => o.uid === uid);
