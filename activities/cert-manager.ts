// spec.tls.issuerRef (issue 18): the member and client certificates issued by cert-manager instead of the controller's
// own CA. The controller applies one cert-manager Certificate per certificate Secret (same names, SANs, usages and
// lifetimes as the own CA's, from tls.ts's certificateRequestFor) and waits until each Secret holds its files; renewal
// is cert-manager's (members read the files on each handshake). cert-manager is not required otherwise.
import { ApplicationFailure } from '@temporalio/common';
import { isIP } from 'node:net';
import { PatchStrategy, setHeaderOptions, type V1Secret } from '@kubernetes/client-node';
import {
  caSecretName,
  certificateNameOf,
  certManagerApi,
  clientTlsSecretName,
  controllerTlsSecretName,
  memberTlsSecretName,
} from '../api/names.js';
import { clusterLabels, type ClusterRef, type EtcdClusterSpec } from '../api/etcdcluster.js';
import type { Deps } from './deps.js';
import { codeOf, done, fieldManager, isNotFound, orAbsent, pollUntil, waiting, type Kube } from './kube.js';
import { ownerReference } from './member-pod.js';
import { recordEvent } from './cluster/status.js';
import { certificateRequestFor } from './tls.js';

type IssuerRef = NonNullable<NonNullable<EtcdClusterSpec['tls']>['issuerRef']>;
const { group, version, certificates: plural } = certManagerApi;

/** The issuer reference with cert-manager's defaults filled in (kind Issuer, group cert-manager.io). */
export const fullIssuerRef = (r: IssuerRef) => ({ name: r.name, kind: r.kind ?? 'Issuer', group: r.group ?? group });

/** The Secrets cert-manager fills for a cluster with these members: the members', the users', the controller's. */
export const issuedSecrets = (ref: Pick<ClusterRef, 'name'>, members: string[]) => [
  ...members.map(memberTlsSecretName),
  clientTlsSecretName(ref.name),
  controllerTlsSecretName(ref.name),
];

/** The Certificate for one certificate Secret (pure, unit-tested): what the own CA would issue for it. Renewed when a
 *  third of the lifetime remains, as the own CA's are; ECDSA P-256 in PKCS#8, a new key on each renewal. */
export function certificateFor(ref: ClusterRef, secret: string, spec: EtcdClusterSpec) {
  const req = certificateRequestFor(ref, secret, spec);
  const hosts = req.hosts ?? [];
  return {
    apiVersion: `${group}/${version}`,
    kind: 'Certificate',
    metadata: {
      name: certificateNameOf(secret),
      namespace: ref.namespace,
      labels: clusterLabels(ref.name),
      ownerReferences: [ownerReference(ref)],
    },
    spec: {
      secretName: secret,
      secretTemplate: { labels: clusterLabels(ref.name) },
      commonName: req.commonName,
      ...(hosts.some((h) => !isIP(h)) ? { dnsNames: hosts.filter((h) => !isIP(h)) } : {}),
      ...(hosts.some((h) => isIP(h)) ? { ipAddresses: hosts.filter((h) => isIP(h)) } : {}),
      usages: [
        'digital signature',
        'key encipherment',
        ...(req.usages.includes('server') ? ['server auth'] : []),
        ...(req.usages.includes('client') ? ['client auth'] : []),
      ],
      duration: `${req.days * 24}h`,
      renewBefore: `${req.days * 8}h`,
      privateKey: { algorithm: 'ECDSA', size: 256, encoding: 'PKCS8', rotationPolicy: 'Always' },
      issuerRef: fullIssuerRef(spec.tls!.issuerRef!),
    },
  };
}

/** Who issued a certificate Secret, from the annotations cert-manager puts on it (undefined: not cert-manager). */
export function issuerOfSecret(s: V1Secret | undefined): ReturnType<typeof fullIssuerRef> | undefined {
  const a = s?.metadata?.annotations ?? {};
  const name = a['cert-manager.io/issuer-name'];
  if (!name) return undefined;
  return fullIssuerRef({ name, kind: a['cert-manager.io/issuer-kind'], group: a['cert-manager.io/issuer-group'] });
}

/** Why the issuer of a running TLS cluster's certificates cannot change to what the spec asks (pure, unit-tested):
 *  members trust only the CA they were started with, so new certificates from another CA would cut them apart.
 *  Refused, not rolled: the safe choice (undefined: no change asked). */
export function issuerChangeRefused(
  spec: EtcdClusterSpec,
  ownCa: boolean,
  issuedBy: ReturnType<typeof fullIssuerRef> | undefined,
): string | undefined {
  const wanted = spec.tls?.enabled && spec.tls.issuerRef ? fullIssuerRef(spec.tls.issuerRef) : undefined;
  const say = (r: ReturnType<typeof fullIssuerRef>) => `${r.kind} ${r.name} (${r.group})`;
  const tail =
    ': changing the issuer of a running TLS cluster is refused (its members trust only the CA they started with); ' +
    'nothing was changed — set spec.tls.issuerRef back, or create a new cluster with the issuer and restore a backup into it';
  if (wanted && ownCa)
    return `spec.tls.issuerRef names ${say(wanted)} but the cluster's certificates come from its own CA${tail}`;
  if (wanted && issuedBy && say(wanted) !== say(issuedBy))
    return `spec.tls.issuerRef names ${say(wanted)} but the cluster's certificates come from ${say(issuedBy)}${tail}`;
  if (!wanted && spec.tls?.enabled && issuedBy && !ownCa)
    return `spec.tls.issuerRef was removed but the cluster's certificates come from cert-manager's ${say(issuedBy)}${tail}`;
  return undefined;
}

/** What keeps cert-manager from issuing this cluster's certificates (undefined: nothing): its CRDs absent, the Issuer
 *  absent or not Ready, or a change of issuer on a running cluster. Said in an Event and a condition. */
export async function certManagerProblem(
  kube: Kube,
  ref: Pick<ClusterRef, 'namespace' | 'name'>,
  spec: EtcdClusterSpec,
): Promise<string | undefined> {
  if (!spec.tls?.enabled) return undefined;
  const read = (name: string) => kube.core.readNamespacedSecret({ name, namespace: ref.namespace }).catch(orAbsent);
  const [ca, client] = await Promise.all([read(caSecretName(ref.name)), read(clientTlsSecretName(ref.name))]);
  const refused = issuerChangeRefused(spec, !!ca, issuerOfSecret(client));
  if (refused || !spec.tls.issuerRef) return refused;
  const issuer = fullIssuerRef(spec.tls.issuerRef);
  try {
    await kube.custom.listNamespacedCustomObject({ group, version, plural, namespace: ref.namespace, limit: 1 });
  } catch (e) {
    if (!isNotFound(e)) throw e;
    return (
      `spec.tls.issuerRef is set but cert-manager's CRDs (certificates.${group}/${version}) are not installed: ` +
      'install cert-manager (https://cert-manager.io/docs/installation/), or remove spec.tls.issuerRef to use the ' +
      "controller's own CA; nothing was changed"
    );
  }
  if (issuer.group !== group) return undefined; // an external issuer: its readiness is its controller's business
  const kinds = { Issuer: 'issuers', ClusterIssuer: 'clusterissuers' } as Record<string, string>;
  const issuerPlural = kinds[issuer.kind];
  if (!issuerPlural) return `spec.tls.issuerRef.kind ${issuer.kind} is not Issuer or ClusterIssuer`;
  const obj = (await (
    issuer.kind === 'Issuer'
      ? kube.custom.getNamespacedCustomObject({
          group,
          version,
          plural: issuerPlural,
          namespace: ref.namespace,
          name: issuer.name,
        })
      : kube.custom.getClusterCustomObject({ group, version, plural: issuerPlural, name: issuer.name })
  ).catch(orAbsent)) as { status?: { conditions?: { type: string; status: string; message?: string }[] } } | undefined;
  const where = issuer.kind === 'Issuer' ? ` in namespace ${ref.namespace}` : '';
  if (!obj) return `cert-manager ${issuer.kind} ${issuer.name}${where} does not exist: create it; nothing was changed`;
  const ready = obj.status?.conditions?.find((c) => c.type === 'Ready');
  if (ready?.status !== 'True')
    return (
      `cert-manager ${issuer.kind} ${issuer.name}${where} is not Ready` +
      `${ready?.message ? ` (${ready.message})` : ''}: fix it (is cert-manager running?); nothing was changed`
    );
  return undefined;
}

/** Server-side apply of a Certificate through the custom objects API (our field manager). */
async function applyCertificate(kube: Kube, cert: ReturnType<typeof certificateFor>): Promise<void> {
  await kube.custom.patchNamespacedCustomObject(
    {
      group,
      version,
      plural,
      namespace: cert.metadata.namespace,
      name: cert.metadata.name,
      body: cert,
      fieldManager,
      force: true,
    },
    setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
  );
}

const hasFiles = (s: V1Secret | undefined) => ['tls.crt', 'tls.key', 'ca.crt'].every((k) => !!s?.data?.[k]);

/** Before members start with cert-manager's certificates: applies the Certificates of these members and of the
 *  client certificates, and waits until each is Ready and its Secret holds tls.crt, tls.key and ca.crt. Refuses at once
 *  (non-retryable, with an Event) when cert-manager cannot issue them: nothing is created then. */
export async function waitCertificatesIssued(
  d: Deps,
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  members: string[],
): Promise<string> {
  const problem = await certManagerProblem(d.kube, ref, spec);
  if (problem) {
    await recordEvent(d, ref, 'Warning', 'CertManagerNotReady', problem);
    throw ApplicationFailure.nonRetryable(problem, 'CertManagerNotReady');
  }
  const secrets = issuedSecrets(ref, members);
  for (const s of secrets) await applyCertificate(d.kube, certificateFor(ref, s, spec));
  return pollUntil(1000, async () => {
    for (const s of secrets) {
      const cert = (await d.kube.custom
        .getNamespacedCustomObject({ group, version, plural, namespace: ref.namespace, name: certificateNameOf(s) })
        .catch((e: unknown) => (codeOf(e) === 404 ? undefined : Promise.reject(e)))) as
        { status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] } } | undefined;
      const ready = cert?.status?.conditions?.find((c) => c.type === 'Ready');
      if (ready?.status !== 'True')
        return waiting(`Certificate ${certificateNameOf(s)} not Ready${ready?.message ? `: ${ready.message}` : ''}`);
      const secret = await d.kube.core.readNamespacedSecret({ name: s, namespace: ref.namespace }).catch(orAbsent);
      if (!hasFiles(secret)) return waiting(`Secret ${s} does not hold tls.crt, tls.key and ca.crt yet`);
    }
    return done(`${secrets.length} certificate(s) issued by cert-manager`);
  });
}
