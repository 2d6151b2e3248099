// Pure: a restore considers only backups of this cluster (same object UID or etcd cluster ID).
import { identityFrom, identityParams, notThisCluster } from '../activities/backup-identity.js';
import type { BackupRecord } from '../workflows/types.js';

const rec = (over: Partial<BackupRecord>): BackupRecord => ({
  name: 'b',
  revision: 10,
  size: 1,
  sha256: '',
  etcdVersion: '3.5.33',
  time: '2026-11-28T08:00:00Z',
  member: '',
  reason: '',
  valid: true,
  ...over,
});
const self = { uid: 'u-1', etcdClusterId: '111', createdAt: '2026-11-28T07:00:00Z' };

test('the same object UID or the same etcd cluster ID is this cluster (a restore changes the etcd cluster ID, not the UID)', () => {
  expect(notThisCluster(rec({ cluster: { uid: 'u-1', etcdClusterId: '999' } }), self)).toBe('');
  expect(notThisCluster(rec({ cluster: { uid: 'u-0', etcdClusterId: '111' } }), self)).toBe('');
});

test("another cluster of the same name (deleted, created again: the tool's claim outlived it) is skipped", () => {
  expect(notThisCluster(rec({ cluster: { uid: 'u-0', etcdClusterId: '222' } }), self)).toMatch(
    /another cluster \(uid u-0, etcd cluster ID 222\)/,
  );
});

test('a record from before identities counts only if taken after this object was created', () => {
  expect(notThisCluster(rec({}), self)).toBe('');
  expect(notThisCluster(rec({ time: '2026-11-28T06:59:59Z' }), self)).toMatch(/before this cluster was created/);
});

test('the tool records what the controller tells it, with the etcd cluster ID the member reported', () => {
  const q = new URLSearchParams(identityParams({ namespace: 'default', name: 'dr', uid: 'u-1' }));
  expect(identityFrom(q, '111')).toEqual({ namespace: 'default', name: 'dr', uid: 'u-1', etcdClusterId: '111' });
  expect(identityFrom(new URLSearchParams(), undefined)).toEqual({});
});
