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
