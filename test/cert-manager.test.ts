// spec.tls.issuerRef's pure parts (issue 18): the cert-manager Certificates asked for each certificate Secret (what
// the own CA would issue for it), and the refusal of an issuer change on a running TLS cluster.
import { certificateFor, fullIssuerRef, issuedSecrets, issuerChangeRefused } from '../activities/cert-manager.js';
import { certificateRequestFor } from '../activities/tls.js';
import { memberHosts } from '../activities/pki.js';
import type { EtcdClusterSpec } from '../api/etcdcluster.js';

const ref = { namespace: 'ns', name: 'c', uid: 'uid-1' };
const spec: EtcdClusterSpec = {
  size: 3,
  tls: { enabled: true, issuerRef: { name: 'ca-issuer' }, certificateDays: 90 },
} as EtcdClusterSpec;

test('a member Certificate: its Secret, SANs (DNS and IP apart), server + client auth, the own CA lifetime and renewal', () => {
  const cert = certificateFor(ref, 'c-0001-tls', spec);
  expect(cert).toMatchObject({
    apiVersion: 'cert-manager.io/v1',
    kind: 'Certificate',
    metadata: { name: 'c-0001-tls', namespace: 'ns', ownerReferences: [{ uid: 'uid-1' }] },
    spec: {
      secretName: 'c-0001-tls',
      commonName: 'c-0001',
      dnsNames: memberHosts(ref, 'c-0001').filter((h) => h !== '127.0.0.1'),
      ipAddresses: ['127.0.0.1'],
      usages: ['digital signature', 'key encipherment', 'server auth', 'client auth'],
      duration: '2160h',
      renewBefore: '720h', // a third of the lifetime left, as the own CA renews
      privateKey: { algorithm: 'ECDSA', size: 256, encoding: 'PKCS8' },
      issuerRef: { name: 'ca-issuer', kind: 'Issuer', group: 'cert-manager.io' },
    },
  });
  expect(cert.metadata.labels).toEqual(cert.spec.secretTemplate.labels);
  // The same request the own CA issues from: one builder.
  expect(certificateRequestFor(ref, 'c-0001-tls', spec)).toMatchObject({ commonName: 'c-0001', days: 90 });
});

test('client Certificates: the users’ and the controller’s, client auth only, no SANs', () => {
  const users = certificateFor(ref, 'c-client-tls', spec);
  expect(users.spec).toMatchObject({ secretName: 'c-client-tls', commonName: 'c-client' });
  expect(users.spec.usages).toEqual(['digital signature', 'key encipherment', 'client auth']);
  expect(users.spec).not.toHaveProperty('dnsNames');
  expect(users.spec).not.toHaveProperty('ipAddresses');
  expect(certificateFor(ref, 'c-controller-tls', spec).spec.commonName).toBe('kube-etcd-controller');
  expect(issuedSecrets(ref, ['c-0001', 'c-0002'])).toEqual([
    'c-0001-tls',
    'c-0002-tls',
    'c-client-tls',
    'c-controller-tls',
  ]);
  const cluster = { ...spec, tls: { enabled: true, issuerRef: { name: 'x', kind: 'ClusterIssuer' } } };
  expect(certificateFor(ref, 'c-client-tls', cluster).spec.issuerRef).toEqual({
    name: 'x',
    kind: 'ClusterIssuer',
    group: 'cert-manager.io',
  });
});

test('an issuer change on a running TLS cluster is refused, in either direction; a new or unchanged one is not', () => {
  const issuer = fullIssuerRef({ name: 'ca-issuer' });
  const own: EtcdClusterSpec = { size: 3, tls: { enabled: true } } as EtcdClusterSpec;
  expect(issuerChangeRefused(spec, false, undefined)).toBeUndefined(); // new cluster
  expect(issuerChangeRefused(spec, false, issuer)).toBeUndefined(); // unchanged
  expect(issuerChangeRefused(own, true, undefined)).toBeUndefined(); // the own CA, unchanged
  expect(issuerChangeRefused(spec, true, undefined)).toMatch(/come from its own CA: changing the issuer .* refused/);
  expect(issuerChangeRefused(spec, false, fullIssuerRef({ name: 'other' }))).toMatch(
    /names Issuer ca-issuer \(cert-manager.io\) but the cluster's certificates come from Issuer other/,
  );
  expect(issuerChangeRefused(own, false, issuer)).toMatch(/issuerRef was removed/);
  // A plain cluster: nothing to refuse.
  expect(issuerChangeRefused({ ...spec, tls: { enabled: false } } as EtcdClusterSpec, true, issuer)).toBeUndefined();
});
