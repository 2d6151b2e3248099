// A cluster's TLS mode and certificate Secrets (issue 18), Kubernetes side; the certificates come from pki.ts.
// Look before acting: an existing Secret is never reissued (a new CA would cut a running cluster apart).
import type { CoreV1Api, V1Pod, V1Secret } from '@kubernetes/client-node';
import { connect } from 'node:tls';
import {
  caSecretName,
  clientTlsSecretName,
  clientURLOf,
  controllerTlsSecretName,
  memberTlsSecretName,
} from '../api/names.js';
import {
  certsRotationAnnotation,
  clusterLabels,
  effectiveTls,
  type StatusOfTls,
  memberSelector,
  rotateCertsHandledAnnotation,
  type ClusterRef,
  type EtcdClusterSpec,
} from '../api/etcdcluster.js';
import { isTlsPod, podTlsOf, readTlsSecret } from './etcd-client.js';
import { createIfAbsent, done, orAbsent, pollUntil, readPod, waiting } from './kube.js';
import { ownerReference } from './member-pod.js';
import { ApplicationFailure } from '@temporalio/common';
import {
  crossSign,
  expiresAt,
  issue,
  lifetimeOf,
  memberHosts,
  newCA,
  pathLengthOf,
  serialOf,
  type CertPair,
  type CertRequest,
} from './pki.js';

const caDays = (spec?: EtcdClusterSpec) => spec?.tls?.caDays ?? 3650;
const leafDays = (spec?: EtcdClusterSpec) => spec?.tls?.certificateDays ?? 365;

/** What each certificate Secret is issued for, by the controller's CA or by cert-manager (cert-manager.ts). */
export const certificateRequestFor = (
  ref: Pick<ClusterRef, 'namespace' | 'name'>,
  name: string,
  spec?: EtcdClusterSpec,
): CertRequest =>
  name === clientTlsSecretName(ref.name)
    ? { commonName: `${ref.name}-client`, usages: ['client'], days: leafDays(spec) }
    : name === controllerTlsSecretName(ref.name)
      ? { commonName: 'kube-etcd-controller', usages: ['client'], days: leafDays(spec) }
      : {
          commonName: name.replace(/-tls$/, ''),
          hosts: memberHosts(ref, name.replace(/-tls$/, '')),
          usages: ['server', 'client'], // etcd dials its peers with the same certificate
          days: leafDays(spec),
        };

/** A certificate is renewed when less than this part of its lifetime remains. */
export const renewAtRemaining = 1 / 3;

/** What needs renewing (pure, unit-tested): the CA (then every certificate, with it) or these certificates. */
export function renewalDue(
  now: number,
  ca: { notBefore: Date; notAfter: Date } | undefined,
  certs: { secret: string; notBefore: Date; notAfter: Date }[],
): { ca: boolean; reason: string } | undefined {
  const low = (c: { notBefore: Date; notAfter: Date }) =>
    c.notAfter.getTime() - now < (c.notAfter.getTime() - c.notBefore.getTime()) * renewAtRemaining;
  if (ca && low(ca)) return { ca: true, reason: `the CA expires at ${ca.notAfter.toISOString()}` };
  const due = certs.filter(low);
  if (!due.length) return undefined;
  const first = new Date(Math.min(...due.map((c) => c.notAfter.getTime())));
  return { ca: false, reason: `${due.map((c) => c.secret).join(', ')} expire(s) from ${first.toISOString()}` };
}

/** The CA Secret's parts: the CA, while a CA rotation runs the previous CA (still trusted), and the new CA
 *  certified by the previous one (served after each leaf, so members still trusting only the previous CA,
 *  in memory, accept the new certificates). */
interface CaState {
  ca: CertPair;
  previous?: string;
  cross?: string;
  rotations: number;
  handled?: string;
  caRotation?: string;
}

export interface TlsMode {
  enabled: boolean;
  /** Why the spec's tls is not applied (a switch that cannot be done safely), or undefined. */
  refused?: string;
  /** The mode spec.tls asks for while some member is not in it: a rolling switch to run (or to finish). */
  switchTo?: boolean;
}

/**
 * The mode a cluster runs in: TLS as soon as one member serves TLS (the others are then plain or bridge members of a
 * switch), else its CA's existence (all members gone: still TLS), else effectiveTls (the spec's, else status's, else
 * TLS for a new cluster). A spec without tls never switches a cluster; one that asks for the other mode of a running
 * cluster (or a switch left half done) gives switchTo. A switch restarts each member in place on its data: members
 * without a claim refuse it.
 */
export function tlsModeOf(
  spec: EtcdClusterSpec | undefined,
  pods: V1Pod[],
  caExists: boolean,
  status: StatusOfTls | undefined,
): TlsMode {
  const wanted = spec?.tls?.enabled;
  const live = pods.filter((p) => !p.metadata?.deletionTimestamp);
  const modes = live.map(podTlsOf);
  const enabled = live.length ? modes.includes('tls') : caExists || effectiveTls(spec, status);
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
  certificates?: { secret: string; notAfter: string }[];
  rotations?: number;
  /** Certificates to renew now: due (a third of their lifetime left) or requested (rotate-certs annotation). */
  renew?: { ca: boolean; reason: string; request?: string };
}

/** The certificate Secrets of a cluster with these member pods: the members', the users', the controller's. */
export const certificateSecrets = (ref: Pick<ClusterRef, 'name'>, pods: V1Pod[]) => [
  ...pods.map((p) => memberTlsSecretName(p.metadata!.name!)),
  clientTlsSecretName(ref.name),
  controllerTlsSecretName(ref.name),
];

/** PEM blocks as one file (a chain, a trust bundle): each on its own lines. */
export const pemJoin = (...pems: string[]) => pems.map((p) => `${p.trim()}\n`).join('');

/** Serials as hex, whatever the case and leading zeros (OpenSSL drops a leading zero byte). */
export const sameSerial = (a: string, b: string) =>
  a.replace(/^0+/, '').toLowerCase() === b.replace(/^0+/, '').toLowerCase();

/** The certificate a member serves (serial, expiry, issuer), from a TLS handshake with these credentials. */
export function servedCertificate(
  ip: string,
  creds: Awaited<ReturnType<typeof readTlsSecret>>,
): Promise<{ serial: string; notAfter: string; issuer: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(clientURLOf(ip, true));
    const sock = connect({
      host: url.hostname,
      port: Number(url.port),
      servername: creds.serverName,
      ca: creds.ca,
      cert: creds.cert,
      key: creds.key,
      ALPNProtocols: ['h2'],
      timeout: 3000,
    });
    sock.once('secureConnect', () => {
      const c = sock.getPeerCertificate();
      sock.end();
      resolve({ serial: c.serialNumber, notAfter: new Date(c.valid_to).toISOString(), issuer: String(c.issuer.CN) });
    });
    sock.once('timeout', () => sock.destroy(new Error('TLS handshake timed out')));
    sock.once('error', reject);
  });
}

const decode = (s: V1Secret | undefined, k: string) => Buffer.from(s?.data?.[k] ?? '', 'base64').toString('utf8');
const b64 = (s: string) => Buffer.from(s).toString('base64');

const read = (core: CoreV1Api, namespace: string, name: string) =>
  core.readNamespacedSecret({ name, namespace }).catch(orAbsent);

async function create(
  core: CoreV1Api,
  ref: ClusterRef,
  name: string,
  type: string,
  data: Record<string, string>,
): Promise<V1Secret> {
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
  return (await read(core, ref.namespace, name))!;
}

const caState = (s: V1Secret): CaState => ({
  ca: { cert: decode(s, 'ca.crt'), key: decode(s, 'ca.key') },
  ...(s.data?.['previous.crt'] ? { previous: decode(s, 'previous.crt') } : {}),
  ...(s.data?.['cross.crt'] ? { cross: decode(s, 'cross.crt') } : {}),
  rotations: Number(s.metadata?.annotations?.[certsRotationAnnotation] ?? 0),
  handled: s.metadata?.annotations?.[rotateCertsHandledAnnotation],
  caRotation: s.metadata?.annotations?.['etcd.coreos.com/ca-rotation'],
});
/** What a certificate Secret holds as ca.crt (the trust: both CAs during a CA rotation) and tls.crt (its chain). */
const trustOf = (st: CaState) => (st.previous ? pemJoin(st.ca.cert, st.previous) : st.ca.cert);
const leafData = (st: CaState, leaf: CertPair) => ({
  'ca.crt': trustOf(st),
  'tls.crt': st.cross && expiresAt(st.cross).getTime() > Date.now() ? pemJoin(leaf.cert, st.cross) : leaf.cert,
  'tls.key': leaf.key,
});

async function ensureCA(core: CoreV1Api, ref: ClusterRef, spec?: EtcdClusterSpec): Promise<CaState> {
  let s = await read(core, ref.namespace, caSecretName(ref.name));
  if (!s) {
    // A new CA beside cert-manager's certificates would cut the members apart (spec.tls.issuerRef removed).
    const client = await read(core, ref.namespace, clientTlsSecretName(ref.name));
    if (client?.metadata?.annotations?.['cert-manager.io/issuer-name'])
      throw ApplicationFailure.nonRetryable(
        `the certificates of ${ref.namespace}/${ref.name} come from cert-manager: the controller's own CA does not ` +
          'take over a running cluster (set spec.tls.issuerRef back)',
        'CertManagerNotReady',
      );
    const ca = await newCA(`etcd-ca ${ref.namespace}/${ref.name}`, caDays(spec));
    s = await create(core, ref, caSecretName(ref.name), 'Opaque', { 'ca.crt': ca.cert, 'ca.key': ca.key });
  }
  return caState(s);
}

async function ensureLeaf(
  core: CoreV1Api,
  ref: ClusterRef,
  st: CaState,
  name: string,
  spec?: EtcdClusterSpec,
): Promise<V1Secret> {
  const have = await read(core, ref.namespace, name);
  if (have) return have;
  const leaf = await issue(st.ca, certificateRequestFor(ref, name, spec));
  return create(core, ref, name, 'kubernetes.io/tls', leafData(st, leaf));
}

/** Replaces a Secret's data (and annotations) if it still is the version read: a concurrent change wins. */
async function update(core: CoreV1Api, s: V1Secret, data: Record<string, string>, annotations: Record<string, string>) {
  await core.replaceNamespacedSecret({
    name: s.metadata!.name!,
    namespace: s.metadata!.namespace!,
    body: {
      ...s,
      metadata: { ...s.metadata, annotations: { ...s.metadata?.annotations, ...annotations } },
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
    },
  });
}
const mustRead = async (core: CoreV1Api, ref: Pick<ClusterRef, 'namespace'>, name: string) => {
  const s = await read(core, ref.namespace, name);
  if (!s) throw new Error(`Secret ${ref.namespace}/${name} is missing`);
  return s;
};

/** With spec.tls.issuerRef: the Secrets cert-manager filled (the workflow waited for them: waitCertificatesIssued). */
async function issuedByCertManager(core: CoreV1Api, ref: ClusterRef, members: string[]) {
  const names = [...members.map(memberTlsSecretName), clientTlsSecretName(ref.name), controllerTlsSecretName(ref.name)];
  const leaves = await Promise.all(names.map((n) => read(core, ref.namespace, n)));
  const missing = names.filter((_, i) => !decode(leaves[i], 'tls.crt') || !decode(leaves[i], 'ca.crt'));
  if (missing.length) throw new Error(`waiting for cert-manager to issue ${missing.join(', ')}`);
  const notAfter = Math.min(...leaves.map((s) => expiresAt(decode(s, 'tls.crt')).getTime()));
  return {
    caNotAfter: expiresAt(decode(leaves[0], 'ca.crt')).toISOString(),
    notAfter: new Date(notAfter).toISOString(),
  };
}

/** The cluster's mode (see tlsModeOf), looked up in Kubernetes; `cluster` is the EtcdCluster's spec and status
 *  (needed only when no member runs: a new cluster's default). */
export async function clusterTlsMode(
  core: CoreV1Api,
  ref: Pick<ClusterRef, 'namespace' | 'name'>,
  cluster?: { spec?: EtcdClusterSpec; status?: StatusOfTls | undefined },
): Promise<TlsMode> {
  const pods = await core.listNamespacedPod({ namespace: ref.namespace, labelSelector: memberSelector(ref.name) });
  const ca = pods.items.length ? undefined : await read(core, ref.namespace, caSecretName(ref.name));
  return tlsModeOf(cluster?.spec, pods.items, !!ca, cluster?.status);
}

/** The CA, these members' serving + peer certificates, and the client certificates for users and the
 *  controller (and backup tool). Returns when the earliest of them expires. */
export async function ensureTlsSecrets(
  core: CoreV1Api,
  ref: ClusterRef,
  members: string[],
  spec?: EtcdClusterSpec,
): Promise<{ caNotAfter: string; notAfter: string }> {
  if (spec?.tls?.issuerRef) return issuedByCertManager(core, ref, members);
  const st = await ensureCA(core, ref, spec);
  const leaves = [
    ...(await Promise.all(members.map((m) => ensureLeaf(core, ref, st, memberTlsSecretName(m), spec)))),
    await ensureLeaf(core, ref, st, clientTlsSecretName(ref.name), spec),
    await ensureLeaf(core, ref, st, controllerTlsSecretName(ref.name), spec),
  ];
  const notAfter = Math.min(...leaves.map((s) => expiresAt(decode(s, 'tls.crt')).getTime()));
  return { caNotAfter: expiresAt(st.ca.cert).toISOString(), notAfter: new Date(notAfter).toISOString() };
}

/** CA rotation, first step of rotation `n`: a new CA, certified by the old one; every Secret trusts both
 *  from now until finishCaRotation. Done once per rotation (the CA Secret records it). */
export async function startCaRotation(
  core: CoreV1Api,
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  n: number,
): Promise<string> {
  const s = await mustRead(core, ref, caSecretName(ref.name));
  const st = caState(s);
  if (st.caRotation === String(n)) return expiresAt(st.ca.cert).toISOString();
  if (pathLengthOf(st.ca.cert) === 0)
    throw ApplicationFailure.nonRetryable(
      `the CA of ${ref.namespace}/${ref.name} was made with path length 0 (before rotation existed): it cannot ` +
        'certify a successor; renew the certificates without --ca, or restore a backup into a new cluster',
      'CARotationRefused',
    );
  const next = await newCA(`etcd-ca ${ref.namespace}/${ref.name} #${n}`, caDays(spec));
  // Every earlier cross-certificate stays in the chain: a member not restarted since trusts an older CA.
  const cross = pemJoin(await crossSign(st.ca, next), ...(st.cross ? [st.cross] : []));
  await update(
    core,
    s,
    { 'ca.crt': next.cert, 'ca.key': next.key, 'previous.crt': st.ca.cert, 'cross.crt': cross },
    { 'etcd.coreos.com/ca-rotation': String(n) },
  );
  return expiresAt(next.cert).toISOString();
}

/** Reissues one certificate Secret for rotation `n` (once: the Secret records the rotation that issued it).
 *  Returns the new certificate's serial. A member reads the new files on its next TLS handshake. */
export async function renewCertificate(
  core: CoreV1Api,
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  secret: string,
  n: number,
): Promise<string> {
  const s = await mustRead(core, ref, secret);
  if (s.metadata?.annotations?.[certsRotationAnnotation] === String(n)) return serialOf(decode(s, 'tls.crt'));
  const st = caState(await mustRead(core, ref, caSecretName(ref.name)));
  const leaf = await issue(st.ca, certificateRequestFor(ref, secret, spec));
  await update(core, s, leafData(st, leaf), { [certsRotationAnnotation]: String(n) });
  return serialOf(leaf.cert);
}

/** Waits until the member serves the certificate with this serial (its mounted files were refreshed and
 *  etcd read them on a new handshake). */
export async function waitMemberServes(
  core: CoreV1Api,
  ref: ClusterRef,
  member: string,
  serial: string,
): Promise<string> {
  const creds = await readTlsSecret(core, ref, controllerTlsSecretName(ref.name));
  return pollUntil(1000, async () => {
    const ip = (await readPod(core, ref.namespace, member))?.status?.podIP;
    if (!ip) return waiting(`pod ${member} has no address`);
    const served = await servedCertificate(ip, creds).then(
      (c) => c.serial,
      (e: Error) => `unreachable (${e.message})`,
    );
    return sameSerial(served, serial) ? done(served) : waiting(`${member} still serves ${served}, not ${serial}`);
  });
}

/** CA rotation, last step: every Secret trusts the new CA only. The certificates keep the cross-certificate
 *  after theirs while it is valid: a running member trusts the CAs it started with until it restarts. */
export async function finishCaRotation(core: CoreV1Api, ref: ClusterRef, secrets: string[]): Promise<void> {
  const s = await mustRead(core, ref, caSecretName(ref.name));
  const st = caState(s);
  if (st.previous) {
    const { 'previous.crt': _, ...rest } = Object.fromEntries(Object.keys(s.data ?? {}).map((k) => [k, decode(s, k)]));
    await update(core, s, rest, {});
  }
  for (const name of secrets) {
    const leaf = await read(core, ref.namespace, name);
    if (!leaf || decode(leaf, 'ca.crt') === st.ca.cert) continue;
    await update(
      core,
      leaf,
      {
        ...Object.fromEntries(Object.keys(leaf.data ?? {}).map((k) => [k, decode(leaf, k)])),
        'ca.crt': st.ca.cert,
      },
      {},
    );
  }
}

/** Records rotation `n` as done, and the on-demand request it answered. */
export async function recordRotation(core: CoreV1Api, ref: ClusterRef, n: number, request?: string): Promise<void> {
  const s = await mustRead(core, ref, caSecretName(ref.name));
  if (caState(s).rotations >= n && (!request || caState(s).handled === request)) return;
  const data = Object.fromEntries(Object.keys(s.data ?? {}).map((k) => [k, decode(s, k)]));
  await update(core, s, data, {
    [certsRotationAnnotation]: String(n),
    ...(request ? { [rotateCertsHandledAnnotation]: request } : {}),
  });
}

/** For the observation: the mode, certificate expiry (TLS) and a refused switch (once as a Warning Event). */
export async function observeTls(
  core: CoreV1Api,
  ref: Pick<ClusterRef, 'namespace' | 'name'>,
  spec: EtcdClusterSpec,
  pods: V1Pod[],
  refusedBefore: boolean,
  warn: (reason: string, message: string) => Promise<void>,
  request: string | undefined,
  status: StatusOfTls | undefined,
): Promise<ObservedTls | undefined> {
  // A plain cluster with members and no spec.tls: nothing to read.
  const live = pods.filter((p) => !p.metadata?.deletionTimestamp);
  if (live.length && !spec.tls && !live.some(isTlsPod)) return undefined;
  const ca = await read(core, ref.namespace, caSecretName(ref.name));
  const mode = tlsModeOf(spec, pods, !!ca, status);
  if (mode.refused && !refusedBefore) await warn('TLSSwitchRefused', mode.refused);
  if (!mode.enabled) return mode.refused || mode.switchTo !== undefined ? mode : undefined;
  const names = certificateSecrets(ref, pods);
  const leaves = await Promise.all(names.map((n) => read(core, ref.namespace, n)));
  const certs = leaves.flatMap((s, i) => {
    const pem = decode(s, 'tls.crt');
    return pem ? [{ secret: names[i], ...lifetimeOf(pem) }] : [];
  });
  const at = certs.map((c) => c.notAfter.getTime());
  const st = ca ? caState(ca) : undefined;
  const due = st ? renewalDue(Date.now(), lifetimeOf(st.ca.cert), certs) : undefined;
  const asked = request && request !== st?.handled ? request : undefined;
  // With spec.tls.issuerRef, renewal is cert-manager's: the controller only observes expiry.
  const renew = spec.tls?.issuerRef
    ? undefined
    : asked
      ? { ca: asked.startsWith('ca'), reason: `requested (${asked})`, request: asked }
      : due;
  return {
    ...mode,
    ...(st ? { caNotAfter: expiresAt(st.ca.cert).toISOString(), rotations: st.rotations } : {}),
    ...(at.length ? { notAfter: new Date(Math.min(...at)).toISOString() } : {}),
    certificates: certs.map((c) => ({ secret: c.secret, notAfter: c.notAfter.toISOString() })),
    ...(renew && live.length ? { renew } : {}),
  };
}

/** Before member pods are created: the cluster's mode, and in TLS mode these members' certificates. */
export async function memberTls(
  core: CoreV1Api,
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  members: string[],
  status: StatusOfTls | undefined,
): Promise<boolean> {
  const mode = await clusterTlsMode(core, ref, { spec, status });
  if (mode.enabled) await ensureTlsSecrets(core, ref, members, spec);
  return mode.enabled;
}
