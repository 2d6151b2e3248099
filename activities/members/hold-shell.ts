// Where a held pod's shell comes from (see member-pod.ts hold): an image volume where every node a member may land on
// can mount one, else a copy by an init container.
import type { V1Node } from '@kubernetes/client-node';
import type { EtcdClusterSpec } from '../../api/etcdcluster.js';
import type { HoldShell } from '../member-pod.js';
import type { Kube } from '../kube.js';
import { listNodes, selectedBy } from '../cluster/observe.js';

/** Image volumes are GA (always on) from kubelet 1.36; containerd mounts them from 2.1 (checked: 2.4 runs a program
 *  from one). Other runtimes are not checked here: they get the copy. */
const kubeletFrom = [1, 36] as const;
const containerdFrom = [2, 1] as const;

const versionOf = (text: string | undefined, prefix: string): [number, number] | undefined => {
  const m = new RegExp(`^${prefix}v?(\\d+)\\.(\\d+)`).exec(text ?? '');
  return m ? [Number(m[1]), Number(m[2])] : undefined;
};

const atLeast = (v: [number, number] | undefined, [major, minor]: readonly [number, number]) =>
  !!v && (v[0] > major || (v[0] === major && v[1] >= minor));

/** Can this node's kubelet and runtime mount an image volume and run a program from it? */
export function mountsImageVolumes(n: V1Node): boolean {
  const info = n.status?.nodeInfo;
  return (
    atLeast(versionOf(info?.kubeletVersion, ''), kubeletFrom) &&
    atLeast(versionOf(info?.containerRuntimeVersion, 'containerd://'), containerdFrom)
  );
}

/** The shell for a member pod of this spec: mounted when every node its nodeSelector selects mounts image volumes
 *  (no node, or nodes the controller may not list: copied). A node added later with an older runtime would leave a
 *  pod placed there unable to start its shell: a join stops at its pod, before its member is added. */
export async function holdShellFor(kube: Kube, spec: EtcdClusterSpec): Promise<HoldShell> {
  const nodes = (await listNodes(kube))?.filter((n) => selectedBy(n, spec.pod?.nodeSelector));
  return nodes?.length && nodes.every(mountsImageVolumes) ? 'mounted' : 'copied';
}
