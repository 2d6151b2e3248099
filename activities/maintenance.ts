// Activities of the space runbook (issue 14): compact, defragment one member, disarm NOSPACE (and CORRUPT after a
// replacement), and the v2store check before 3.5 → 3.6. Each is
// idempotent: compacting to a revision already compacted, defragmenting twice or disarming an alarm that
// is gone all succeed.
import { ApplicationFailure } from '@temporalio/common';
import type { V1EphemeralContainer } from '@kubernetes/client-node';
import { deadline, memberStatus, withEtcd } from './etcd-client.js';
import { done, mergePatch, pollUntil, waiting } from './kube.js';
import type { Deps } from './deps.js';
import { clientURLs, memberClientURL } from './membership/view.js';
import type { ClusterRef } from '../api/etcdcluster.js';

/** etcd's own default quota (--quota-backend-bytes unset). */
export const defaultQuotaBytes = 2 * 2 ** 30;
/** NOSPACE is disarmed only when every member's file is below this share of the quota, so it does not fire again at once. */
export const disarmBelowQuota = 0.8;

export interface DefragResult {
  member: string;
  beforeBytes: number;
  afterBytes: number;
  inUseBytes: number;
  ms: number;
  time: string;
}

/** Compacts the key history up to the current revision (physically, so defragmentation can free it). */
export async function compactToCurrent({ kube, log }: Deps, ref: ClusterRef): Promise<{ revision: string }> {
  let last: unknown;
  for (const url of Object.values(await clientURLs(kube, ref))) {
    try {
      return await withEtcd(
        [url],
        async (c) => {
          const revision = (await c.maintenance.status(deadline(2000))).header.revision;
          try {
            await c.kv.compact({ revision, physical: true }, deadline(60_000));
          } catch (e) {
            // Compacted already (auto-compaction, or this activity before a crash): the goal holds.
            if (!/compacted/.test((e as Error).message)) throw e;
          }
          log.info({ cluster: `${ref.namespace}/${ref.name}`, revision }, 'compacted to the current revision');
          return { revision };
        },
        3000,
      );
    } catch (e) {
      last = e;
    }
  }
  throw new Error(`no member compacted: ${(last as Error | undefined)?.message ?? 'no running member pods'}`);
}

/** Defragments one member's backend (it stalls that member's requests meanwhile): sizes before and after. */
export async function defragmentMember({ kube, log }: Deps, ref: ClusterRef, member: string): Promise<DefragResult> {
  const url = await memberClientURL(kube, ref, member);
  return withEtcd(
    [url],
    async (c) => {
      const before = await c.maintenance.status(deadline(2000));
      const t0 = Date.now();
      await c.maintenance.defragment(deadline(5 * 60_000));
      const ms = Date.now() - t0;
      const after = await c.maintenance.status(deadline(5000));
      const res = {
        member,
        beforeBytes: Number(before.dbSize),
        afterBytes: Number(after.dbSize),
        inUseBytes: Number(after.dbSizeInUse),
        ms,
        time: new Date().toISOString(),
      };
      log.info({ cluster: `${ref.namespace}/${ref.name}`, ...res }, 'member defragmented');
      return res;
    },
    3000,
  );
}

/** Disarms NOSPACE once every member that answers is below the quota with margin; refuses (non-retryable) otherwise. */
export async function disarmNospace({ kube }: Deps, ref: ClusterRef, quotaBytes = defaultQuotaBytes): Promise<string> {
  const limit = Math.floor(quotaBytes * disarmBelowQuota);
  const sizes: string[] = [];
  const over: string[] = [];
  for (const [name, url] of Object.entries(await clientURLs(kube, ref))) {
    const s = await memberStatus(url).catch(() => undefined);
    if (!s) {
      sizes.push(`${name}: no answer`);
      continue;
    }
    sizes.push(`${name}: ${s.dbSize} bytes`);
    if (Number(s.dbSize) > limit) over.push(`${name} (${s.dbSize} bytes)`);
  }
  if (over.length) {
    throw ApplicationFailure.nonRetryable(
      `NOSPACE not disarmed: ${over.join(', ')} still above ${limit} bytes ` +
        `(${disarmBelowQuota * 100}% of the ${quotaBytes}-byte quota) after compaction and defragmentation: the data itself is too large; ` +
        'raise spec.etcd.quotaBackendBytes or delete keys',
      'StillFull',
    );
  }
  const url = Object.values(await clientURLs(kube, ref))[0];
  if (!url) throw new Error('no running member pods');
  const disarmed = await withEtcd(
    [url],
    async (c) => {
      const active = (
        await c.maintenance.alarm({ action: 'Get', memberID: '0', alarm: 'None' }, deadline(2000))
      ).alarms.filter((a) => a.alarm === 'Nospace');
      for (const a of active)
        await c.maintenance.alarm({ action: 'Deactivate', memberID: a.memberID, alarm: 'Nospace' }, deadline(5000));
      return active.length;
    },
    3000,
  );
  return `disarmed ${disarmed} NOSPACE alarm(s); every member below ${limit} bytes (${sizes.join(', ')})`;
}

/** Disarms a CORRUPT alarm raised for a member that is no longer part of the cluster (after its replacement). */
export async function disarmCorrupt({ kube }: Deps, ref: ClusterRef, memberId: string): Promise<string> {
  const url = Object.values(await clientURLs(kube, ref))[0];
  if (!url) throw new Error('no running member pods');
  return withEtcd(
    [url],
    async (c) => {
      const active = (
        await c.maintenance.alarm({ action: 'Get', memberID: '0', alarm: 'None' }, deadline(2000))
      ).alarms.filter((a) => a.alarm === 'Corrupt' && a.memberID === memberId);
      for (const a of active)
        await c.maintenance.alarm({ action: 'Deactivate', memberID: a.memberID, alarm: 'Corrupt' }, deadline(5000));
      return active.length ? `disarmed CORRUPT for member ${memberId}` : `no CORRUPT alarm for member ${memberId}`;
    },
    3000,
  );
}

/**
 * Runs `etcdutl check v2store` from the member's own (3.5) image against its data: an ephemeral container
 * named `name` in the member pod, sharing its data volume (read-only: the check opens the WAL for reading
 * and takes no lock, so etcd keeps serving). Idempotent: a container of that name already there is waited
 * for, not added twice. Returns its exit code and output; the caller decides.
 */
export async function checkV2Store(
  { kube, log }: Deps,
  ref: ClusterRef,
  member: string,
  name: string,
): Promise<{ exitCode: number; output: string }> {
  const { core } = kube;
  const pod = await core.readNamespacedPod({ name: member, namespace: ref.namespace });
  const etcd = pod.spec?.containers.find((c) => c.name === 'etcd');
  if (!etcd) throw ApplicationFailure.nonRetryable(`pod ${member} has no etcd container`);
  if (!pod.spec?.ephemeralContainers?.some((c) => c.name === name)) {
    const check: V1EphemeralContainer = {
      name,
      image: etcd.image,
      command: ['/usr/local/bin/etcdutl', 'check', 'v2store', '--data-dir=/var/etcd/data'],
      volumeMounts: (etcd.volumeMounts ?? []).map((m) => ({ ...m, readOnly: true })),
      terminationMessagePolicy: 'FallbackToLogsOnError',
    };
    await core.patchNamespacedPodEphemeralcontainers(
      {
        name: member,
        namespace: ref.namespace,
        body: { spec: { ephemeralContainers: [...(pod.spec?.ephemeralContainers ?? []), check] } },
      },
      mergePatch(),
    );
    log.info({ cluster: `${ref.namespace}/${ref.name}`, member, image: etcd.image }, 'v2store check started');
  }
  return pollUntil(200, async () => {
    const p = await core.readNamespacedPod({ name: member, namespace: ref.namespace });
    const st = p.status?.ephemeralContainerStatuses?.find((c) => c.name === name)?.state;
    if (st?.terminated) {
      // etcdutl exits 0 only on "No custom content found"; a failure's output is in the message (log tail).
      const { exitCode, message: output = '' } = st.terminated;
      log.info({ cluster: `${ref.namespace}/${ref.name}`, member, exitCode, output }, 'v2store check done');
      return done({ exitCode, output });
    }
    return waiting(`v2store check on ${member}: ${st?.waiting?.reason ?? (st?.running ? 'running' : 'pending')}`);
  });
}
