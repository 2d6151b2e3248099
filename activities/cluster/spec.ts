// What the API schema cannot check: settings the controller cannot run (observeCluster reports them as specError).
import type { EtcdClusterSpec } from '../../api/etcdcluster.js';
import { minorVersion } from '../../workflows/versions.js';
import { etcdDefaults, flagsRefusal } from '../member-pod.js';

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
