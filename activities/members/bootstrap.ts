// The create runbook's static bootstrap: every initial member's pod, held by a scheduling gate until all exist.
import type { V1Pod } from '@kubernetes/client-node';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { bootstrapGate, type ClusterRef, type EtcdClusterSpec, type StatusOfTls } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { createIfAbsent, mergePatch, sleep } from '../kube.js';
import { memberPod, type Bootstrap } from '../member-pod.js';
import { memberClaims, memberPods, readCluster } from '../cluster/read.js';
import { recordEvent } from '../cluster/status.js';
import { memberTls } from '../tls.js';
import { ensureMemberClaim } from './claim.js';

/**
 * Static bootstrap of a brand-new cluster: every initial member's pod (state new, the full
 * --initial-cluster, a fresh token) is created held by a scheduling gate, and the gates come off
 * only once all exist. A gated pod never ran, so until a gate is off any missing member can be
 * (re)created safely. Once one is off, a missing member may have run and lost its data (emptyDir):
 * it is never recreated with state new (same member ID, empty log: a split); it is returned as lost
 * and the plan removes and re-adds it by a learner join. Refuses over any other pod, claim or a latched cluster ID.
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
  const refuse = (message: string, type = 'BootstrapRefused') => ApplicationFailure.nonRetryable(message, type);
  const obj = await readCluster(kube, ref);
  if (!obj || obj.metadata.uid !== ref.uid || obj.metadata.deletionTimestamp) {
    throw refuse(`${ref.namespace}/${ref.name} is gone or being deleted`, 'ClusterGone');
  }
  const latched = obj.status?.clusterID as string | undefined;
  if (latched)
    throw refuse(`status.clusterID ${latched} is latched: the cluster was created before; no static bootstrap over it`);
  const owned = (p: V1Pod) => !!p.metadata?.ownerReferences?.some((o) => o.uid === ref.uid);
  const gated = (p: V1Pod) => !!p.spec?.schedulingGates?.some((g) => g.name === bootstrapGate);
  for (;;) {
    const [all, claims] = await Promise.all([memberPods(kube, ref), memberClaims(kube, ref, ref.uid)]);
    const pods = all.filter(owned);
    const claimed = claims.map((c) => c.member);
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
      const tls = await memberTls(kube.core, ref, spec, members, obj.status as StatusOfTls);
      await Promise.all(
        members
          .filter((m) => !have.has(m))
          .map(async (m) => {
            if (spec.pod?.persistentVolumeClaimSpec) await ensureMemberClaim(kube, ref, spec, m);
            const body = memberPod(ref, spec, m, initialCluster, 'new', undefined, bootstrap, tls);
            await createIfAbsent(() => kube.core.createNamespacedPod({ namespace: ref.namespace, body }));
          }),
      );
      if (have.size < members.length) continue; // look again: all gated pods must exist before any is released
    }
    await Promise.all(
      live
        .filter(gated)
        .map((p) =>
          kube.core.patchNamespacedPod(
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
        d,
        ref,
        'Normal',
        'MembersBootstrapped',
        `started ${started.join(', ')} together (static bootstrap, ` +
          `initial cluster token ${bootstrap.token})${lost.length ? `; lost before release: ${lost.join(', ')}` : ''}`,
      );
    }
    return { started, lost };
  }
}
