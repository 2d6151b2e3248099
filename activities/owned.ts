// Desired state of the cluster's own Services and PodDisruptionBudget: one builder per owned object, applied with
// server-side apply (kube.ts apply) by ensureServices. Member pods and claims: member-pod.ts; the backup tool: backup.ts.
import type { V1NetworkPolicy, V1NetworkPolicyPeer, V1PodDisruptionBudget, V1Service } from '@kubernetes/client-node';
import { clientServiceName, metricsServiceName } from '../api/names.js';
import {
  backupToolLabels,
  clusterLabels,
  controllerLabels,
  defaultControllerNamespace,
  metricsLabel,
  type ClusterRef,
  type NetworkPolicySpec,
} from '../api/etcdcluster.js';
import type { Applied } from './kube.js';
import { metricsPort, ownerReference } from './member-pod.js';

/** Metadata of an object the cluster owns (garbage-collected with it). */
export const ownedMeta = (ref: ClusterRef, name: string, labels: Record<string, string> = clusterLabels(ref.name)) => ({
  name,
  namespace: ref.namespace,
  labels,
  ownerReferences: [ownerReference(ref)],
});
const tcp = (name: string, port: number) => ({ name, port, targetPort: port, protocol: 'TCP' });

/** `<cluster>`: headless, behind the members' DNS names (peers find each other through it, ready or not). */
export function headlessService(ref: ClusterRef): V1Service & Applied {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMeta(ref, ref.name),
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: clusterLabels(ref.name),
      ports: [tcp('client', 2379), tcp('peer', 2380)],
    },
  };
}

/** `<cluster>-client`: what applications use, on 2379. */
export function clientService(ref: ClusterRef): V1Service & Applied {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMeta(ref, clientServiceName(ref.name)),
    spec: { selector: clusterLabels(ref.name), ports: [tcp('client', 2379)] },
  };
}

/** `<cluster>-metrics`: for a Prometheus ServiceMonitor selecting app=etcd,etcd_cluster=<name>,etcd_metrics=true,
 *  port "metrics" (one target per member). */
export function metricsService(ref: ClusterRef): V1Service & Applied {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMeta(ref, metricsServiceName(ref.name), { ...clusterLabels(ref.name), [metricsLabel]: 'true' }),
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: clusterLabels(ref.name),
      ports: [tcp('metrics', metricsPort)],
    },
  };
}

/** `<cluster>`: drains and evictions take at most one member at a time, and none while one is already down. */
export function disruptionBudget(ref: ClusterRef): V1PodDisruptionBudget & Applied {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: ownedMeta(ref, ref.name),
    spec: { maxUnavailable: 1, selector: { matchLabels: clusterLabels(ref.name) } },
  };
}

/** `<cluster>` (spec.networkPolicy): peers only from members; the client port only from members, the backup tool,
 *  the controller's pods in `controllerNamespace` and the spec's clients; the metrics port from anywhere (probes,
 *  Prometheus: it serves no keys). */
export function membersNetworkPolicy(
  ref: ClusterRef,
  spec: NetworkPolicySpec,
  controllerNamespace: string,
): V1NetworkPolicy & Applied {
  const members: V1NetworkPolicyPeer = { podSelector: { matchLabels: clusterLabels(ref.name) } };
  const port = (p: number) => [{ protocol: 'TCP', port: p }];
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: ownedMeta(ref, ref.name),
    spec: {
      podSelector: { matchLabels: clusterLabels(ref.name) },
      policyTypes: ['Ingress'],
      ingress: [
        { ports: port(2380), _from: [members] },
        {
          ports: port(2379),
          _from: [
            members,
            { podSelector: { matchLabels: backupToolLabels(ref.name) } },
            {
              namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': controllerNamespace } },
              podSelector: { matchLabels: controllerLabels },
            },
            ...(spec.clients ?? []),
          ],
        },
        { ports: port(metricsPort) },
      ],
    },
  };
}

/** Every Service and budget of the cluster, and its NetworkPolicy when the spec asks for one, in the order they are
 *  applied. */
export const clusterObjects = (
  ref: ClusterRef,
  policy?: NetworkPolicySpec,
  controllerNamespace = defaultControllerNamespace,
) => [
  disruptionBudget(ref),
  headlessService(ref),
  clientService(ref),
  metricsService(ref),
  ...(policy?.enabled ? [membersNetworkPolicy(ref, policy, controllerNamespace)] : []),
];
