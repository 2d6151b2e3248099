// The create runbook's static bootstrap: every initial member's pod, its etcd held until all exist and have addresses.
import type { V1Pod } from '@kubernetes/client-node';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { bootstrapGate, type ClusterRef, type EtcdClusterSpec, type StatusOfTls } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { createIfAbsent, mergePatch, pauseAfter, sleep, type Kube } from '../kube.js';
import { heldBack, memberPod, type Bootstrap } from '../member-pod.js';
import { memberClaims, memberPods, readCluster } from '../cluster/read.js';
import { recordEvent } from '../cluster/status.js';
import { memberTls } from '../tls.js';
import { ensureMemberClaim } from './claim.js';
import { holdShellFor } from './hold-shell.js';
import { addressed, addressLook, releaseHeldPod } from './pod.js';
import { restoreTokenSecret } from '../backups/tool.js';

/**
 * Static bootstrap of a brand-new cluster: every initial member's pod (state new, a fresh token) is created
 * held, and all are released together (the full --initial-cluster) once all have their DNS names
 * (or after addressWaitMs: a pod that cannot be placed must not hold the others). A held pod never ran etcd, so
 * until one is released any missing member can be (re)created safely. Once one is, a missing member may have run
 * and lost its data (emptyDir): it is never recreated with state new (same member ID, empty log: a split); it is
 * returned as lost and the plan removes and re-adds it by a learner join. Pods an older controller created held by
 * a scheduling gate are released by taking the gate off. Refuses over any other pod, claim or a latched cluster ID.
 * A restore's members (`bootstrap.restore`) each fetch the same snapshot and restore it with the full --initial-cluster
 * and the new token in their init containers, before their etcd is released; only other pods refuse it.
 */
export async function bootstrapMembers(
  d: Deps,
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  members: string[],
  initialCluster: string,
  bootstrap: Bootstrap,
): Promise<{ started: string[]; lost: string[] }> {
  const { kube } = d;
  const { token, restore } = bootstrap;
  const refuse = (message: string, type = 'BootstrapRefused') => ApplicationFailure.nonRetryable(message, type);
  const obj = await readCluster(kube, ref);
  if (!obj || obj.metadata.uid !== ref.uid || obj.metadata.deletionTimestamp) {
    throw refuse(`${ref.namespace}/${ref.name} is gone or being deleted`, 'ClusterGone');
  }
  // A restore replaces the cluster on purpose (its old members' pods are gone first, its token is new): its old
  // cluster ID and its old members' claims do not refuse it; any other member pod does.
  const latched = obj.status?.clusterID as string | undefined;
  if (latched && !restore)
    throw refuse(`status.clusterID ${latched} is latched: the cluster was created before; no static bootstrap over it`);
  const owned = (p: V1Pod) => !!p.metadata?.ownerReferences?.some((o) => o.uid === ref.uid);
  const gated = (p: V1Pod) => !!p.spec?.schedulingGates?.some((g) => g.name === bootstrapGate);
  const held = (p: V1Pod) => gated(p) || heldBack(p);
  for (;;) {
    const [all, claims] = await Promise.all([memberPods(kube, ref), memberClaims(kube, ref, ref.uid)]);
    const pods = all.filter(owned);
    const claimed = restore ? [] : claims.map((c) => c.member);
    const others = [...new Set([...pods.map((p) => p.metadata!.name!), ...claimed])].filter(
      (n) => !members.includes(n),
    );
    if (others.length)
      throw refuse(`member pods or claims exist (${others.join(', ')}): no static bootstrap over them`);
    const released = pods.some((p) => !held(p));
    const live = pods.filter((p) => !p.metadata?.deletionTimestamp);
    if (!released) {
      // A held pod being deleted never ran: wait for it to go, then create it again.
      if (live.length < pods.length) {
        Context.current().heartbeat('waiting for a held pod to finish terminating');
        await sleep(200);
        continue;
      }
      const have = new Set(live.map((p) => p.metadata!.name!));
      const tls = await memberTls(kube.core, ref, spec, members, obj.status as StatusOfTls);
      const shell = await holdShellFor(kube, spec);
      if (restore) await restoreTokenSecret(kube, ref); // the restore's fetch answers only with it
      await Promise.all(
        members
          .filter((m) => !have.has(m))
          .map(async (m) => {
            if (spec.pod?.persistentVolumeClaimSpec) await ensureMemberClaim(kube, ref, spec, m);
            const from = restore && { ...restore, token };
            const body = memberPod(ref, spec, m, initialCluster, 'new', from, { token, held: true, shell }, tls);
            await createIfAbsent(() => kube.core.createNamespacedPod({ namespace: ref.namespace, body }));
          }),
      );
      if (have.size < members.length) continue; // look again: all held pods must exist before any is released
      await waitAddressed(kube, ref, members);
    }
    await Promise.all(
      live
        .filter(held)
        .map((p) =>
          gated(p)
            ? kube.core.patchNamespacedPod(
                { name: p.metadata!.name!, namespace: ref.namespace, body: { spec: { schedulingGates: null } } },
                mergePatch(),
              )
            : releaseHeldPod(kube, p, initialCluster),
        ),
    );
    const started = live
      .map((p) => p.metadata!.name!)
      .filter((n) => members.includes(n))
      .sort();
    const lost = members.filter((m) => !started.includes(m));
    if (live.some(held)) {
      await recordEvent(
        d,
        ref,
        'Normal',
        'MembersBootstrapped',
        `started ${started.join(', ')}${started.length > 1 ? ' together' : ''} (static bootstrap` +
          `${restore ? `, restored from ${restore.snapshot}` : ''}, ` +
          `initial cluster token ${token})${lost.length ? `; lost before release: ${lost.join(', ')}` : ''}`,
      );
    }
    return { started, lost };
  }
}

/** How long a bootstrap waits for its pods' addresses before it releases them anyway. */
const addressWaitMs = 20_000;

/** Waits, at most addressWaitMs, until every member's pod is in the headless Service's EndpointSlices (not until
 *  its container runs: the release's downward-API refresh overlaps the container's start). Past it the members start
 *  anyway: a peer's lookup of a name not yet there costs the DNS cache's negative TTL, no more. */
async function waitAddressed(kube: Kube, ref: ClusterRef, members: string[]): Promise<void> {
  const start = Date.now();
  for (;;) {
    const [pods, listed] = await Promise.all([memberPods(kube, ref), addressed(kube, ref)]);
    const pending = members.flatMap((m) => {
      try {
        const look = addressLook(
          m,
          pods.find((x) => x.metadata?.name === m),
          listed,
        );
        return 'waiting' in look ? [look.waiting] : [];
      } catch (e) {
        return [(e as Error).message]; // gone: the release that follows finds it lost
      }
    });
    if (!pending.length || Date.now() - start > addressWaitMs) return;
    Context.current().heartbeat(`before release: ${pending.join('; ')}`);
    await sleep(pauseAfter(Date.now() - start, 250)); // two lists per look
  }
}
