// Certificate rotation steps (issue 18), one activity each; the Secrets' side is in tls.ts.
import type { ClusterRef, EtcdClusterSpec } from '../../api/etcdcluster.js';
import type { Deps } from '../deps.js';
import * as tls from '../tls.js';

export const startCaRotation = (d: Deps, ref: ClusterRef, spec: EtcdClusterSpec, n: number) =>
  tls.startCaRotation(d.kube.core, ref, spec, n);
export async function renewCertificate(
  d: Deps,
  ref: ClusterRef,
  spec: EtcdClusterSpec,
  secret: string,
  n: number,
): Promise<string> {
  const serial = await tls.renewCertificate(d.kube.core, ref, spec, secret, n);
  d.log.info({ cluster: `${ref.namespace}/${ref.name}`, secret, serial, rotation: n }, 'certificate renewed');
  return serial;
}
export const waitMemberServes = (d: Deps, ref: ClusterRef, member: string, serial: string) =>
  tls.waitMemberServes(d.kube.core, ref, member, serial);
export const finishCaRotation = (d: Deps, ref: ClusterRef, secrets: string[]) =>
  tls.finishCaRotation(d.kube.core, ref, secrets);
export const recordRotation = (d: Deps, ref: ClusterRef, n: number, request?: string) =>
  tls.recordRotation(d.kube.core, ref, n, request);
