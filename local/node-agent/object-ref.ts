// How the node agent's Kubernetes writes point at an object (an Event's involvedObject, a volume's claimRef).
import type { V1ObjectMeta, V1ObjectReference } from '@kubernetes/client-node';

export const objectRef = (kind: string, apiVersion: string, meta: V1ObjectMeta): V1ObjectReference => ({
  kind,
  apiVersion,
  name: meta.name,
  namespace: meta.namespace,
  uid: meta.uid,
});
