// A cluster's TLS mode and certificate Secrets (issue 18), Kubernetes side; the certificates come from pki.ts.
// Look before acting: an existing Secret is never reissued (a new CA would cut a running cluster apart).
import type { CoreV1Api, V1Pod, V1Secret } from '@kubernetes/client-node';
import { caSecretName, clientTlsSecretName, controllerTlsSecretName, memberTlsSecretName } from '../api/names.js';
import { clusterLabels, memberSelector, type ClusterRef, type EtcdClusterSpec } from '../api/etcdcluster.js';
import { isTlsPod, podTlsOf } from './etcd-client.js';
import { createIfAbsent, orAbsent } from './kube.js';
import { ownerReference } from './member-pod.js';
import { expiresAt, issue, memberHosts, newCA, type CertPair } from './pki.js';

const caDays = 3650;
const leafDays = 365;

export interface TlsMode {
  enabled: boolean;
  /** Why the spec's tls is not applied (a switch that cannot be done safely), or undefined. */
  refused?: string;
  /** The mode spec.tls asks for while some member is not in it: a rolling switch to run (or to finish). */
  switchTo?: boolean;
}

/**
 * The mode a cluster runs in: TLS as soon as one member serves TLS (the others are then plain or bridge members of a
 * switch), else its CA's existence (all members gone: still TLS), else the spec's. A spec without tls never switches a
 * cluster; one that asks for the other mode of a running cluster (or a switch left half done) gives switchTo. A switch
 * restarts each member in place on its data: members without a claim refuse it.
 */
export function tlsModeOf(spec: EtcdClusterSpec | undefined, pods: V1Pod[], caExists: boolean): TlsMode {
  const wanted = spec?.tls?.enabled;
  const live = pods.filter((p) => !p.metadata?.deletionTimestamp);
  const modes = live.map(podTlsOf);
  const enabled = live.length ? modes.includes('tls') : caExists || !!wanted;
  if (wanted === undefined || modes.every((m) => m === (wanted ? 'tls' : 'plain'))) return { enabled };
  const claims = live.every((p) => p.spec?.volumes?.some((v) => v.name === 'etcd-data' && v.persistentVolumeClaim));
  if (claims) return { enabled, switchTo: wanted };
  const refused =
    `spec.tls.enabled is ${wanted} but the cluster runs ${enabled ? 'with' : 'without'} TLS: a switch restarts ` +
    'each member in place on its data, and these members have no claim (spec.pod.persistentVolumeClaimSpec); ' +
    'nothing was changed (set spec.tls back, or create a new cluster with spec.tls and restore a backup into it)';
  return { enabled, refused };
}

export interface ObservedTls extends TlsMode {
  caNotAfter?: string;
  /** The earliest expiry of the members' and the controller's certificates. */
  notAfter?: string;
}

const decode = (s: V1Secret | undefined, k: string) => Buffer.from(s?.data?.[k] ?? '', 'base64').toString('utf8');
const b64 = (s: string) => Buffer.from(s).toString('base64');

export function tlsActivities(core: CoreV1Api) {
  const read = (namespace: string, name: string) => core.readNamespacedSecret({ name, namespace }).catch(orAbsent);

  async function create(ref: ClusterRef, name: string, type: string, data: Record<string, string>): Promise<V1Secret> {
    await createIfAbsent(() =>
      core.createNamespacedSecret({
        namespace: ref.namespace,
        body: {
          metadata: {
            name,
            namespace: ref.namespace,
            labels: clusterLabels(ref.name),
            ownerReferences: [ownerReference(ref)],
          },
          type,
          data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
        },
      }),
    );
    // Whoever created it first wins: read back what is there.
    return (await read(ref.namespace, name))!;
  }

  async function ensureCA(ref: ClusterRef): Promise<CertPair> {
    let s = await read(ref.namespace, caSecretName(ref.name));
    if (!s) {
      const ca = await newCA(`etcd-ca ${ref.namespace}/${ref.name}`, caDays);
      s = await create(ref, caSecretName(ref.name), 'Opaque', { 'ca.crt': ca.cert, 'ca.key': ca.key });
    }
    return { cert: decode(s, 'ca.crt'), key: decode(s, 'ca.key') };
  }

  async function ensureLeaf(
    ref: ClusterRef,
    ca: CertPair,
    name: string,
    req: Parameters<typeof issue>[1],
  ): Promise<V1Secret> {
    const have = await read(ref.namespace, name);
    if (have) return have;
    const leaf = await issue(ca, req);
    return create(ref, name, 'kubernetes.io/tls', { 'ca.crt': ca.cert, 'tls.crt': leaf.cert, 'tls.key': leaf.key });
  }

  const api = {
    /** The cluster's mode (see tlsModeOf), looked up in Kubernetes. */
    async clusterTlsMode(ref: Pick<ClusterRef, 'namespace' | 'name'>, spec?: EtcdClusterSpec): Promise<TlsMode> {
      const pods = await core.listNamespacedPod({ namespace: ref.namespace, labelSelector: memberSelector(ref.name) });
      const ca = pods.items.length ? undefined : await read(ref.namespace, caSecretName(ref.name));
      return tlsModeOf(spec, pods.items, !!ca);
    },

    /** The CA, these members' serving + peer certificates, and the client certificates for users and the
     *  controller (and backup tool). Returns when the earliest of them expires. */
    async ensureTlsSecrets(ref: ClusterRef, members: string[]): Promise<{ caNotAfter: string; notAfter: string }> {
      const ca = await ensureCA(ref);
      const leaves = [
        ...(await Promise.all(
          members.map((m) =>
            ensureLeaf(ref, ca, memberTlsSecretName(m), {
              commonName: m,
              hosts: memberHosts(ref, m),
              usages: ['server', 'client'], // etcd dials its peers with the same certificate
              days: leafDays,
            }),
          ),
        )),
        await ensureLeaf(ref, ca, clientTlsSecretName(ref.name), {
          commonName: `${ref.name}-client`,
          usages: ['client'],
          days: leafDays,
        }),
        await ensureLeaf(ref, ca, controllerTlsSecretName(ref.name), {
          commonName: 'kube-etcd-controller',
          usages: ['client'],
          days: leafDays,
        }),
      ];
      const notAfter = Math.min(...leaves.map((s) => expiresAt(decode(s, 'tls.crt')).getTime()));
      return { caNotAfter: expiresAt(ca.cert).toISOString(), notAfter: new Date(notAfter).toISOString() };
    },

    /** For the observation: the mode, certificate expiry (TLS) and a refused switch (once as a Warning Event). */
    async observeTls(
      ref: Pick<ClusterRef, 'namespace' | 'name'>,
      spec: EtcdClusterSpec,
      pods: V1Pod[],
      refusedBefore: boolean,
      warn: (reason: string, message: string) => Promise<void>,
    ): Promise<ObservedTls | undefined> {
      // A plain cluster with members and no spec.tls: nothing to read.
      const live = pods.filter((p) => !p.metadata?.deletionTimestamp);
      if (live.length && !spec.tls && !live.some(isTlsPod)) return undefined;
      const ca = await read(ref.namespace, caSecretName(ref.name));
      const mode = tlsModeOf(spec, pods, !!ca);
      if (mode.refused && !refusedBefore) await warn('TLSSwitchRefused', mode.refused);
      if (!mode.enabled) return mode.refused || mode.switchTo !== undefined ? mode : undefined;
      const leaves = await Promise.all(
        [...pods.map((p) => memberTlsSecretName(p.metadata!.name!)), controllerTlsSecretName(ref.name)].map((n) =>
          read(ref.namespace, n),
        ),
      );
      const certs = leaves.map((s) => decode(s, 'tls.crt')).filter(Boolean);
      const at = certs.map((c) => expiresAt(c).getTime());
      return {
        ...mode,
        ...(ca ? { caNotAfter: expiresAt(decode(ca, 'ca.crt')).toISOString() } : {}),
        ...(at.length ? { notAfter: new Date(Math.min(...at)).toISOString() } : {}),
      };
    },

    /** Before member pods are created: the cluster's mode, and in TLS mode these members' certificates. */
    async memberTls(ref: ClusterRef, spec: EtcdClusterSpec, members: string[]): Promise<boolean> {
      const mode = await api.clusterTlsMode(ref, spec);
      if (mode.enabled) await api.ensureTlsSecrets(ref, members);
      return mode.enabled;
    },
  };
  return api;
}
