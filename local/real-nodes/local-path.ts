// Volumes on real nodes: rancher's local-path-provisioner (built by install.sh), a process of the stack beside
// kube-proxy and CoreDNS, with its own identity. A process, not its upstream Deployment: no image of it to build
// and import into every containerd, and the stack starts, logs and stops it like its other components. Its
// helper pods (mkdir/rm of a volume's directory on the chosen node) run the catalog's busybox, built from
// Debian's busybox-static. Each node keeps its volumes in its own folder; PVs carry node affinity to it.
import { join } from 'node:path';
import { CoreV1Api, KubeConfig, RbacAuthorizationV1Api, StorageV1Api } from '@kubernetes/client-node';
import { busyboxImage } from '../images/catalog.js';
import { pins, toolsDir } from '../toolchain.js';
import type { RealNodesLayout } from './host.js';

export const localPath = {
  bin: join(toolsDir, `local-path-provisioner-v${pins.LOCAL_PATH_PROVISIONER_VERSION}`, 'local-path-provisioner'),
  provisioner: 'rancher.io/local-path',
  namespace: 'local-path-storage',
  /** The token user the process authenticates as (stack.ts's PKI). */
  user: 'system:local-path-provisioner',
  serviceAccount: 'local-path-provisioner-service-account',
  configMap: 'local-path-config',
  /** The cluster's default class: member claims name none. */
  defaultClass: 'local-path',
};

/** Which folder of which node a volume goes to: node N's under the stack's folder. */
export function localPathConfig(l: RealNodesLayout): string {
  const nodePathMap = Array.from({ length: l.count }, (_, i) => ({
    node: l.nodeName(i + 1),
    paths: [l.volumes(i + 1)],
  }));
  return JSON.stringify({ nodePathMap }, null, 2);
}

/** The helper pod's template (JSON is YAML); the provisioner adds node, volumes, command and tolerations. */
export const helperPod = JSON.stringify({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'helper-pod' },
  spec: {
    automountServiceAccountToken: false,
    containers: [{ name: 'helper-pod', image: busyboxImage, imagePullPolicy: 'Never' }],
  },
});

export function localPathArgs(l: RealNodesLayout, kubeconfig: string): string[] {
  return [
    localPath.bin,
    'start',
    `--kubeconfig=${kubeconfig}`,
    `--config=${join(l.dir, 'local-path.json')}`,
    `--helper-pod-file=${join(l.dir, 'local-path-helper-pod.yaml')}`,
    `--namespace=${localPath.namespace}`,
    `--configmap-name=${localPath.configMap}`,
    `--service-account-name=${localPath.serviceAccount}`,
    `--helper-image=${busyboxImage}`,
    `--provisioner-name=${localPath.provisioner}`,
  ];
}

/** Its namespace, the scripts its helper pods run (from a ConfigMap), their ServiceAccount, upstream's RBAC
 *  bound to its user, and the default class. "Already exists" is success. The backup class is the
 *  controller's (ensureBackupStorageClass copies the default's provisioner and binding mode). */
export async function ensureLocalPathObjects(kc: KubeConfig): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  const storage = kc.makeApiClient(StorageV1Api);
  const ok409 = (e: unknown) => {
    if ((e as { code?: number }).code !== 409) throw e;
  };
  const namespace = localPath.namespace;
  const name = 'local-path-provisioner';
  const subjects = [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: localPath.user }];
  await core.createNamespace({ body: { metadata: { name: namespace } } }).catch(ok409);
  await core
    .createNamespacedServiceAccount({ namespace, body: { metadata: { name: localPath.serviceAccount } } })
    .catch(ok409);
  await core
    .createNamespacedConfigMap({
      namespace,
      body: {
        metadata: { name: localPath.configMap },
        // Upstream's scripts: world-writable like its volumes always are (pods run as any user).
        data: {
          setup: '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
          teardown: '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
        },
      },
    })
    .catch(ok409);
  await rbac
    .createNamespacedRole({
      namespace,
      body: {
        metadata: { name },
        rules: [
          {
            apiGroups: [''],
            resources: ['pods'],
            verbs: ['get', 'list', 'watch', 'create', 'patch', 'update', 'delete'],
          },
        ],
      },
    })
    .catch(ok409);
  await rbac
    .createNamespacedRoleBinding({
      namespace,
      body: { metadata: { name }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name }, subjects },
    })
    .catch(ok409);
  await rbac
    .createClusterRole({
      body: {
        metadata: { name },
        rules: [
          {
            apiGroups: [''],
            resources: ['nodes', 'persistentvolumeclaims', 'configmaps', 'pods', 'pods/log'],
            verbs: ['get', 'list', 'watch'],
          },
          {
            apiGroups: [''],
            resources: ['persistentvolumes'],
            verbs: ['get', 'list', 'watch', 'create', 'patch', 'update', 'delete'],
          },
          { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
          { apiGroups: ['storage.k8s.io'], resources: ['storageclasses'], verbs: ['get', 'list', 'watch'] },
        ],
      },
    })
    .catch(ok409);
  await rbac
    .createClusterRoleBinding({
      body: {
        metadata: { name },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
        subjects,
      },
    })
    .catch(ok409);
  await storage
    .createStorageClass({
      body: {
        metadata: {
          name: localPath.defaultClass,
          annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' },
        },
        provisioner: localPath.provisioner,
        reclaimPolicy: 'Delete',
        // The scheduler picks the node first; the volume is made there and the PV pinned to it.
        volumeBindingMode: 'WaitForFirstConsumer',
      },
    })
    .catch(ok409);
}
