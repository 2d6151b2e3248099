// Certificate rotation steps (issue 18), one activity each; the Secrets' side is in tls.ts.
import type { ClusterRef, EtcdClusterSpec } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import { tlsActivities } from '../tls.js';

const tls = (d: Deps) => tlsActivities(d.kube.core);

export const startCaRotation = (d: Deps, ref: ClusterRef, spec: EtcdClusterSpec, n: number) =>
  tls(d).startCaRotation(ref, spec, n);
export async function renewCertificate(
  d: Deps,
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  secret: string,
  n: number,
): Promise<string> {
  const serial = await tls(d).renewCertificate(ref, spec, secret, n);
  d.log.info({ cluster: `${ref.namespace}/${ref.name}`, secret, serial, rotation: n }, 'certificate renewed');
  return serial;
}
export const waitMemberServes = (d: Deps, ref: ClusterRef, member: string, serial: string) =>
  tls(d).waitMemberServes(ref, member, serial);
export const finishCaRotation = (d: Deps, ref: ClusterRef, secrets: string[]) => tls(d).finishCaRotation(ref, secrets);
export const recordRotation = (d: Deps, ref: ClusterRef, n: number, request?: string) =>
  tls(d).recordRotation(ref, n, request);
