// The backup runbook's step: a snapshot now (scheduled, on request, or before a risky operation).
import type { BackupRecord } from '../../workflows/types.js';
import type { ClusterRef } from '../../api/etcdcluster.js';
import { recordEvent } from '../cluster/status.js';
import type { Deps } from '../deps.js';
import { done, pollUntil, waiting } from '../kube.js';
import { memberEndpoints, snapshotVia, trusted } from './snapshot.js';

/** A snapshot now, from the member with the highest revision; waits for the tool to be ready. */
export async function takeBackup(d: Deps, ref: ClusterRef, reason: string): Promise<BackupRecord> {
  const { kube, log } = d;
  const snapshot = async () => {
    const eps = await trusted(await memberEndpoints(kube, ref));
    return snapshotVia(
      d,
      ref,
      eps.map((e) => e.name),
      reason,
    );
  };
  // The tool not ready yet (just applied, or rolling) is waited for; any other failure fails this try.
  const rec = await pollUntil(1000, () =>
    snapshot().then(done, (e: Error) => {
      if (!/not ready/.test(e.message)) throw e;
      return waiting(e.message);
    }),
  );
  const v = rec.verification;
  if (v?.result === 'Failed')
    await recordEvent({ kube, log }, ref, 'Warning', 'BackupVerificationFailed', `${v.backup}: ${v.message}`);
  return rec;
}
