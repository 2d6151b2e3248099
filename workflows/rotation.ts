// Certificate rotation (issue 18): rotate-certs-<n>. etcd reads its certificate and key files on every TLS
// handshake (client/pkg/transport/listener.go baseConfig), so a member's new certificate takes effect without a
// restart once its mounted Secret is refreshed: no member stops, no client request fails, no leader moves. One
// member at a time, each behind the health gate and proven by the certificate it serves. A CA rotation: a new CA
// certified by the old one; every Secret trusts both during the roll, the new one only after it.
import { act, gate, waitFor } from './activities.js';
import { clientTlsSecretName, controllerTlsSecretName, memberTlsSecretName } from '../api/names.js';
import { leaderLast } from './placement.js';
import { tracker } from './operations.js';
import type { OperationInput, OperationResult } from './types.js';

export async function rotateCertificates(input: OperationInput): Promise<OperationResult> {
  const { ref, spec, op } = input;
  if (op.type !== 'rotate-certs') throw new Error('rotateCertificates needs a rotate-certs operation');
  const step = tracker();
  const what = op.ca ? 'the CA and every certificate' : 'every certificate';
  await act.recordEvent(ref, 'Normal', 'CertificatesRotating', `rotation ${op.n} of ${what}: ${op.reason}`);
  if (op.ca) {
    step('new CA, certified by the old one: both trusted during the roll');
    await act.startCaRotation(ref, spec, op.n);
  }
  const obs = await act.observeCluster(ref);
  const members = leaderLast(
    ref.name,
    (obs.etcd?.members ?? []).filter((m) => m.podName),
  ).map((m) => m.podName);
  let done = 0;
  for (const m of members) {
    step(`renewed ${done}/${members.length}: health gate before ${m}`);
    await gate.checkClusterHealthy(ref);
    step(`renewed ${done}/${members.length}: new certificate for ${m}`);
    const serial = await act.renewCertificate(ref, spec, memberTlsSecretName(m), op.n);
    step(`renewed ${done}/${members.length}: wait for ${m} to serve certificate ${serial}`);
    await waitFor.waitMemberServes(ref, m, serial);
    done++;
  }
  step(`renewed ${done}/${members.length}: new client certificates (users', controller's)`);
  const clients = [clientTlsSecretName(ref.name), controllerTlsSecretName(ref.name)];
  for (const s of clients) await act.renewCertificate(ref, spec, s, op.n);
  if (op.ca) {
    step('trust the new CA only');
    await act.finishCaRotation(ref, [...members.map(memberTlsSecretName), ...clients]);
  }
  await act.recordRotation(ref, op.n, op.request);
  step('done');
  const message = `rotation ${op.n}: renewed ${what} (${members.length} member(s), none restarted)`;
  await act.recordEvent(ref, 'Normal', 'CertificatesRotated', message);
  return { membersCreated: 0, message };
}
