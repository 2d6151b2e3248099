// Checks before the controller starts work: Kubernetes reachable, every verb it needs granted,
// Temporal reachable and our search attributes registered. Each failure says what to change.
import { AuthorizationV1Api, KubeConfig, VersionApi } from '@kubernetes/client-node';
import { Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import proto from '@temporalio/proto';
import type { Logger } from 'pino';
import { nodeLeaseNamespace, searchKeys } from '../api/names.js';
import { group, plural } from '../api/etcdcluster.js';

export interface Access {
  group: string;
  resource: string;
  verbs: string[];
  /** Checked in this namespace only (not in each watched one). */
  namespace?: string;
}

/** Everything the activities and the watcher do, and nothing else (deploy/rbac.yaml grants exactly this). */
export const requiredAccess: Access[] = [
  { group: 'apiextensions.k8s.io', resource: 'customresourcedefinitions', verbs: ['get', 'create', 'patch'] },
  { group, resource: plural, verbs: ['get', 'list', 'watch', 'create', 'patch'] },
  { group, resource: `${plural}/status`, verbs: ['patch'] },
  { group: '', resource: 'pods', verbs: ['get', 'list', 'watch', 'create', 'delete', 'patch'] },
  // etcdutl check v2store runs in an ephemeral container of each member before a 3.5 → 3.6 upgrade.
  { group: '', resource: 'pods/ephemeralcontainers', verbs: ['patch'] },
  { group: '', resource: 'services', verbs: ['get', 'list', 'create', 'delete', 'patch'] },
  { group: '', resource: 'persistentvolumeclaims', verbs: ['get', 'list', 'create', 'delete'] },
  // Events: recorded on clusters; listed to name why a member's new image does not start (upgrade).
  { group: '', resource: 'events', verbs: ['list', 'create'] },
  // Certificates of TLS clusters (reissued in place by a rotation) and the backup tool's token; never listed.
  { group: '', resource: 'secrets', verbs: ['get', 'create', 'update'] },
  { group: '', resource: 'nodes', verbs: ['list'] },
  // The kubelets' heartbeat Leases (kube-node-lease): a stopped node seen before it turns NotReady.
  { group: 'coordination.k8s.io', resource: 'leases', verbs: ['list'], namespace: nodeLeaseNamespace },
  // A joining member's DNS name: its address in the headless Service's EndpointSlices before etcd dials it.
  { group: 'discovery.k8s.io', resource: 'endpointslices', verbs: ['list'] },
  { group: 'apps', resource: 'deployments', verbs: ['get', 'create', 'delete', 'patch'] },
  { group: 'policy', resource: 'poddisruptionbudgets', verbs: ['get', 'create', 'patch'] },
  // spec.networkPolicy: the members' NetworkPolicy, applied and removed with the spec.
  { group: 'networking.k8s.io', resource: 'networkpolicies', verbs: ['get', 'create', 'patch', 'delete'] },
  { group: 'storage.k8s.io', resource: 'storageclasses', verbs: ['list', 'create'] },
  // spec.tls.issuerRef: cert-manager Certificates applied (create + patch: server-side apply; list: are its CRDs
  // installed?), the Issuer's readiness read. Grantable while cert-manager is not installed.
  { group: 'cert-manager.io', resource: 'certificates', verbs: ['get', 'list', 'create', 'patch'] },
  { group: 'cert-manager.io', resource: 'issuers', verbs: ['get'] },
  { group: 'cert-manager.io', resource: 'clusterissuers', verbs: ['get'] },
];

export class PreflightError extends Error {}

const timeout = <T>(what: string, ms: number, p: Promise<T>) =>
  Promise.race([
    p,
    new Promise<never>((_, rej) =>
      setTimeout(() => rej(new Error(`no answer from ${what} in ${ms / 1000} s`)), ms).unref(),
    ),
  ]);

export async function checkKubernetes(kc: KubeConfig, namespaces: string[], log: Logger): Promise<void> {
  const server = kc.getCurrentCluster()?.server ?? '(no cluster in kubeconfig)';
  try {
    const v = await timeout('Kubernetes', 10000, kc.makeApiClient(VersionApi).getCode());
    log.info({ server, version: v.gitVersion }, 'Kubernetes reachable');
  } catch (e) {
    throw new PreflightError(
      `cannot reach Kubernetes at ${server}: ${(e as Error).message}. Set KUBECONFIG to a working kubeconfig, or run in a pod with a service account.`,
    );
  }
  const authz = kc.makeApiClient(AuthorizationV1Api);
  const missing: string[] = [];
  for (const ns of namespaces.length ? namespaces : ['']) {
    for (const a of requiredAccess) {
      const [resource, subresource] = a.resource.split('/');
      const clusterScoped = ['customresourcedefinitions', 'storageclasses', 'nodes', 'clusterissuers'].includes(
        resource,
      );
      for (const verb of a.verbs) {
        const r = await authz.createSelfSubjectAccessReview({
          body: {
            spec: {
              resourceAttributes: {
                group: a.group,
                resource,
                subresource,
                verb,
                namespace: clusterScoped ? undefined : (a.namespace ?? (ns || undefined)),
              },
            },
          },
        });
        if (!r.status?.allowed)
          missing.push(
            `${verb} ${a.group ? `${a.resource}.${a.group}` : a.resource}${!clusterScoped && (a.namespace ?? ns) ? ` in ${a.namespace ?? ns}` : ''}`,
          );
      }
    }
  }
  if (missing.length) {
    throw new PreflightError(
      `RBAC: the controller's account may not ${missing.join(', ')}. Apply deploy/rbac.yaml (or grant these verbs to its ServiceAccount) and restart it.`,
    );
  }
  log.info(
    { checks: requiredAccess.reduce((n, a) => n + a.verbs.length, 0) },
    'RBAC allows every verb the controller uses',
  );
}

/** Connects to Temporal, or says where it tried and what to set. */
async function reachTemporal<C>(address: string, connect: Promise<C>): Promise<C> {
  try {
    return await connect;
  } catch (e) {
    throw new PreflightError(
      `cannot reach Temporal at ${address}: ${(e as Error).message}. Set TEMPORAL_ADDRESS to your Temporal frontend (host:port).`,
    );
  }
}

/** The client connection (starting workflows, search attributes). */
export const connectTemporalClient = (address: string) =>
  reachTemporal(address, Connection.connect({ address, connectTimeout: '10s' }));
/** The worker's native connection. */
export const connectTemporalWorker = (address: string) =>
  reachTemporal(address, timeout('Temporal', 15000, NativeConnection.connect({ address })));

/** Registers EtcdCluster / EtcdNamespace / EtcdOperation (keywords) if the namespace lacks them. */
export async function ensureSearchAttributes(connection: Connection, namespace: string, log: Logger): Promise<void> {
  const wanted = Object.values(searchKeys).map((k) => k.name);
  try {
    const have = await connection.operatorService.listSearchAttributes({ namespace });
    const missing = wanted.filter((n) => !(n in (have.customAttributes ?? {})));
    if (!missing.length) return;
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(
        missing.map((n) => [n, proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD]),
      ),
    });
    log.info({ searchAttributes: missing, namespace }, 'registered search attributes');
  } catch (e) {
    if (/already exists/i.test((e as Error).message)) return;
    throw new PreflightError(
      `cannot register the search attributes ${wanted.join(', ')} in Temporal namespace ${namespace}: ${(e as Error).message}. ` +
        `Create them once: temporal operator search-attribute create --namespace ${namespace} ${wanted.map((n) => `--name ${n} --type Keyword`).join(' ')}`,
    );
  }
}
