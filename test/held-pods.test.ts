// Held member pods, pure parts: where the shell in front of etcd comes from, and which nodes can mount it.
import type { V1Node } from '@kubernetes/client-node';
import { memberPod, shellImage } from '../activities/member-pod.js';
import { mountsImageVolumes } from '../activities/members/hold-shell.js';
import type { EtcdClusterSpec } from '../api/etcdcluster.js';

const ref = { namespace: 'default', name: 'c', uid: 'u' };
const spec: EtcdClusterSpec = { size: 3, version: '3.6.14', repository: 'quay.io/coreos/etcd' };
const node = (kubeletVersion: string, containerRuntimeVersion: string): V1Node => ({
  status: { nodeInfo: { kubeletVersion, containerRuntimeVersion } as never },
});

test('image volumes: kubelet 1.36+ (GA) with containerd 2.1+; anything else gets the copied shell', () => {
  expect(mountsImageVolumes(node('v1.37.2', 'containerd://2.4.2'))).toBe(true);
  expect(mountsImageVolumes(node('v1.36.0-eks-1a2b', 'containerd://v2.1.0'))).toBe(true);
  expect(mountsImageVolumes(node('v1.35.3', 'containerd://2.4.2'))).toBe(false); // beta, may be off
  expect(mountsImageVolumes(node('v1.37.2', 'containerd://2.0.5'))).toBe(false);
  expect(mountsImageVolumes(node('v1.37.2', 'containerd://1.7.27-0ubuntu1'))).toBe(false);
  expect(mountsImageVolumes(node('v1.37.2', 'cri-o://1.34.0'))).toBe(false);
  expect(mountsImageVolumes({})).toBe(false);
});

test('a held pod runs busybox in front of etcd: from an image volume, or copied by an init container', () => {
  const held = (shell: 'mounted' | 'copied') =>
    memberPod(ref, spec, 'c-0001', '', 'existing', undefined, { held: true, shell }).spec!;
  const mounted = held('mounted');
  expect(mounted.initContainers).toBeUndefined();
  expect(mounted.volumes).toContainEqual({
    name: 'etcd-hold-shell',
    image: { reference: shellImage, pullPolicy: 'IfNotPresent' },
  });
  expect(mounted.containers[0].command!.slice(0, 2)).toEqual(['/var/etcd-hold/bin/busybox', 'sh']);
  const copied = held('copied');
  expect(copied.initContainers!.map((c) => c.name)).toEqual(['copy-hold-shell']);
  expect(copied.volumes).toContainEqual({ name: 'etcd-hold-shell', emptyDir: { sizeLimit: '16Mi' } });
  expect(copied.containers[0].command!.slice(0, 2)).toEqual(['/var/etcd-hold/busybox', 'sh']);
  // Neither passes an --initial-cluster of its own: the released annotation gives it.
  for (const s of [mounted, copied])
    expect(s.containers[0].command!.some((a) => a.startsWith('--initial-cluster='))).toBe(false);
  // A pod built without a shell choice (an older caller) gets the copy, which every runtime runs.
  expect(memberPod(ref, spec, 'c-0001', '', 'existing', undefined, { held: true }).spec!.initContainers).toHaveLength(
    1,
  );
});

test("a restore's held pod: the hold's shell, then the snapshot restored with the full --initial-cluster", () => {
  const initial = ['c-0003', 'c-0004', 'c-0005'].map((m) => `${m}=http://${m}.c.default.svc:2380`).join(',');
  const restore = { url: 'http://c-backup-tool:19999', snapshot: 's1.db', token: 'c-u-r3' };
  const pod = (shell: 'mounted' | 'copied', tls = false) =>
    memberPod(ref, spec, 'c-0004', initial, 'new', restore, { token: restore.token, held: true, shell }, tls).spec!;
  expect(pod('copied').initContainers!.map((c) => c.name)).toEqual([
    'copy-hold-shell',
    'fetch-snapshot',
    'restore-snapshot',
    'place-data',
  ]);
  const s = pod('mounted');
  expect(s.initContainers!.map((c) => c.name)).toEqual(['fetch-snapshot', 'restore-snapshot', 'place-data']);
  const restoreArgs = s.initContainers![1].command!;
  expect(restoreArgs).toContain(`--initial-cluster=${initial}`);
  expect(restoreArgs).toContain('--initial-cluster-token=c-u-r3');
  expect(restoreArgs).toContain('--name=c-0004');
  // etcd behind the hold: state new with the restore's token, its --initial-cluster from the release.
  const etcd = s.containers[0].command!;
  expect(etcd.slice(0, 2)).toEqual(['/var/etcd-hold/bin/busybox', 'sh']);
  expect(etcd).toContain('--initial-cluster-state=new');
  expect(etcd).toContain('--initial-cluster-token=c-u-r3');
  expect(etcd.some((a) => a.startsWith('--initial-cluster='))).toBe(false);
  // TLS: the restore's peer URLs in the https scheme.
  const tlsArgs = pod('mounted', true).initContainers![1].command!;
  expect(tlsArgs).toContain(`--initial-cluster=${initial.replaceAll('http://', 'https://')}`);
});
